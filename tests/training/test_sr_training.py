"""Super-resolution training: noise conditioning augmentation, low-res sources, random crops,
the joint cascade objective, and config errors raised before any compute."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imagegen.config import RunConfig, load_config, stage_run_config, validate
from imagegen.data.shapes import ShapesDataset, render_scene
from imagegen.diffusion import GaussianDiffusion
from imagegen.diffusion.noise_aug import aug_timestep, noise_augment, random_aug_levels
from imagegen.text import TextEncoding
from imagegen.training.build import build_objective
from imagegen.training.objectives import SuperResObjective
from imagegen.training.objectives.cascade import CascadeObjective
from imagegen.training.objectives.diffusion import downsample

REPO = Path(__file__).resolve().parents[2]
TINY_CASCADE = REPO / "configs" / "tiny-cascade-test.yaml"


def joint_config(tmp_path: Path, cache: Path, *overrides: str) -> RunConfig:
    return load_config(
        TINY_CASCADE, [f"train.output_dir={tmp_path / 'runs'}", f"text.cache_dir={cache}", *overrides]
    )


def sr_config(tmp_path: Path, cache: Path, *overrides: str) -> RunConfig:
    """The tiny cascade's sr32 stage (16 -> 32 px) as a single-stage run."""
    joint = joint_config(tmp_path, cache, *overrides)
    return stage_run_config(joint, joint.cascade.stages[1])


def fake_text(batch: int, dim: int = 384, length: int = 16, seed: int = 0) -> TextEncoding:
    gen = torch.Generator().manual_seed(seed)
    return TextEncoding(
        tokens=torch.randn(batch, length, dim, generator=gen),
        mask=torch.ones(batch, length, dtype=torch.bool),
        pooled=torch.randn(batch, dim, generator=gen),
    )


def shapes_batch(resolution: int, count: int = 6) -> dict:
    dataset = ShapesDataset(resolution=resolution, seed=3, length=count)
    items = [dataset[i] for i in range(count)]
    return {"image": torch.stack([item["image"] for item in items]), "spec": [item["spec"] for item in items]}


class Spy(torch.nn.Module):
    """Wraps a denoiser and records the keyword arguments of every call."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x_t, t, **cond):
        self.calls.append({"x_t": x_t.detach().clone(), **{k: v.detach().clone() for k, v in cond.items()}})
        return self.model(x_t, t, **cond)


def spied_objective(cfg: RunConfig) -> tuple[SuperResObjective, Spy]:
    objective = build_objective(cfg, 384)
    assert isinstance(objective, SuperResObjective)
    spy = Spy(objective.networks["model"])
    objective.networks["model"] = spy
    return objective, spy


# ------------------------------------------------------------------------------------------------
# Noise conditioning augmentation
# ------------------------------------------------------------------------------------------------


def test_aug_levels_are_fractions_of_the_schedule_in_timesteps():
    assert aug_timestep(0.2, 1000) == 200 and aug_timestep(0.25, 1000) == 250
    assert aug_timestep(1.0, 1000) == 999 and aug_timestep(0.0, 1000) == 0
    with pytest.raises(ValueError, match="aug_level"):
        aug_timestep(1.5, 1000)
    diffusion = GaussianDiffusion("cosine", 1000, "v")
    levels = random_aug_levels(20_000, 0.5, diffusion, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert levels.dtype == torch.long and levels.min() == 0 and levels.max() == 500
    assert abs(levels.float().mean().item() - 250) < 5  # uniform over {0, ..., 500}


def test_noise_augment_is_q_sample_at_the_level_and_level_zero_is_clean():
    diffusion = GaussianDiffusion("cosine", 1000, "v")
    lowres = torch.rand(4, 3, 8, 8) * 2 - 1
    level = torch.tensor([0, 1, 200, 999])
    out = noise_augment(lowres, level, diffusion, torch.Generator().manual_seed(7))
    eps = torch.randn(lowres.shape, generator=torch.Generator().manual_seed(7))
    expected = diffusion.q_sample(lowres, level, eps)
    assert torch.equal(out[0], lowres[0])  # level 0: the clean input, not even t = 0's tiny noise
    torch.testing.assert_close(out[1:], expected[1:])
    assert (out[3] - lowres[3]).abs().mean() > 0.5  # the top of the schedule is almost pure noise


# ------------------------------------------------------------------------------------------------
# The super-resolution objective
# ------------------------------------------------------------------------------------------------


def test_model_gets_the_low_res_image_noised_at_a_random_level_and_that_level(tmp_path):
    cfg = sr_config(tmp_path, tmp_path / "cache")
    objective, spy = spied_objective(cfg)
    batch = shapes_batch(32, count=32)
    objective.loss("denoiser", batch, fake_text(32), fake_text(1, seed=1), torch.Generator().manual_seed(0))
    (call,) = spy.calls
    clean = downsample(batch["image"], 16, "area")  # [B, 3, 16, 16]
    level = call["aug_level"]
    assert call["lowres"].shape == (32, 3, 16, 16) and call["x_t"].shape == (32, 3, 32, 32)
    assert (
        level.dtype == torch.long and 0 <= level.min() and level.max() <= 500 and level.unique().numel() > 20
    )
    # the residual of q_sample at the recorded level is standard normal noise
    alpha_bar = objective.diffusion.alpha_bar[level].view(-1, 1, 1, 1)
    eps = (call["lowres"] - alpha_bar.sqrt() * clean) / (1 - alpha_bar).sqrt()
    noisy = level > 20
    assert 0.9 < eps[noisy].std().item() < 1.1 and abs(eps[noisy].mean().item()) < 0.05


def test_without_noise_augmentation_the_low_res_input_is_clean_at_level_zero(tmp_path):
    cfg = sr_config(tmp_path, tmp_path / "cache")
    cfg.noise_aug.enabled = False
    objective, spy = spied_objective(cfg)
    batch = shapes_batch(32)
    objective.loss("denoiser", batch, fake_text(6), fake_text(1, seed=1), torch.Generator().manual_seed(0))
    (call,) = spy.calls
    assert torch.equal(call["lowres"], downsample(batch["image"], 16, "area"))
    assert torch.equal(call["aug_level"], torch.zeros(6, dtype=torch.long))


def test_condition_dropout_drops_the_text_and_never_the_low_res_input(tmp_path):
    calls = {}
    for drop in (0.0, 1.0):
        cfg = sr_config(tmp_path, tmp_path / "cache", f"diffusion.cond_drop_prob={drop}")
        objective, spy = spied_objective(cfg)
        text, null = fake_text(6), fake_text(1, seed=1)
        objective.loss("denoiser", shapes_batch(32), text, null, torch.Generator().manual_seed(0))
        calls[drop] = spy.calls[0]
    assert torch.equal(calls[1.0]["text_pooled"], null.pooled.expand(6, -1))  # every caption dropped
    assert torch.equal(calls[0.0]["text_pooled"], text.pooled)
    assert torch.equal(calls[0.0]["lowres"], calls[1.0]["lowres"])
    assert torch.equal(calls[0.0]["aug_level"], calls[1.0]["aug_level"])


def test_low_res_input_is_the_downsampled_image_or_the_scene_rendered_small(tmp_path):
    batch = shapes_batch(32)
    made = {}
    for source, mode in (("downsample", "area"), ("downsample", "bicubic"), ("render", "area")):
        cfg = sr_config(tmp_path, tmp_path / "cache")
        cfg.superres.lowres_source, cfg.superres.downsample = source, mode
        made[source, mode] = build_objective(cfg, 384).lowres_input(batch)  # [B, 3, 16, 16]
    rendered = np.stack([render_scene(spec, 16) for spec in batch["spec"]])  # [B, 16, 16, 3] uint8
    expected = torch.from_numpy(rendered).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(made["render", "area"], expected)
    torch.testing.assert_close(made["downsample", "area"], F.avg_pool2d(batch["image"], 2))  # box average
    # three ways to the same scene: close (render_scene is box-consistent), never identical
    area, bicubic, render = made["downsample", "area"], made["downsample", "bicubic"], made["render", "area"]
    assert 0 < (area - render).abs().mean() < 0.03 and 0 < (area - bicubic).abs().mean() < 0.1


def test_random_crop_takes_the_same_window_of_the_image_and_the_upsampled_low_res(tmp_path):
    cfg = sr_config(tmp_path, tmp_path / "cache")
    cfg.superres.random_crop, cfg.noise_aug.enabled = 16, False
    objective, spy = spied_objective(cfg)
    image = torch.rand(8, 3, 32, 32) * 2 - 1  # noise: every 16 x 16 window is unique
    x0, lowres, _ = objective.training_inputs({"image": image}, torch.Generator().manual_seed(0))
    assert x0.shape == lowres.shape == (8, 3, 16, 16)
    upsampled = F.interpolate(F.avg_pool2d(image, 2), size=(32, 32), mode="bilinear", align_corners=False)
    offsets = set()
    for i in range(8):
        (y, x), *others = [
            (y, x)
            for y in range(17)
            for x in range(17)
            if torch.equal(image[i, :, y : y + 16, x : x + 16], x0[i])
        ]
        assert not others
        torch.testing.assert_close(lowres[i], upsampled[i, :, y : y + 16, x : x + 16])
        offsets.add((y, x))
    assert len(offsets) > 1  # random windows, not a fixed one
    objective.loss("denoiser", {"image": image}, fake_text(8), fake_text(1), torch.Generator().manual_seed(1))
    assert spy.calls[0]["x_t"].shape == spy.calls[0]["lowres"].shape == (8, 3, 16, 16)


def test_a_stage_trained_on_crops_samples_at_full_size(tmp_path, text_cache_dir, monkeypatch):
    from imagegen.models import EfficientUNet
    from imagegen.training.trainer import Trainer

    cfg = sr_config(
        tmp_path, text_cache_dir, "train.max_steps=2", "train.sample_every=2", "train.run_name=crop"
    )
    cfg.superres.random_crop = 16
    seen = []
    forward = EfficientUNet.forward

    def recording_forward(self, x_t, t, *args, **kwargs):
        seen.append(tuple(x_t.shape[-2:]))
        return forward(self, x_t, t, *args, **kwargs)

    monkeypatch.setattr(EfficientUNet, "forward", recording_forward)
    trainer = Trainer(cfg)
    summary = trainer.fit()
    training, sampling = seen[:2], seen[2:]
    assert training == [(16, 16), (16, 16)]  # two steps on 16 px crops
    assert sampling and set(sampling) == {(32, 32)}  # the sample grid: full 32 px images
    averaged = trainer.emas["model"].refresh()
    images = trainer.objective.sample({"model": averaged}, fake_text(2), fake_text(1), torch.Generator())
    assert images.shape == (2, 3, 32, 32) and images.abs().max() <= 1
    assert (summary.run_dir / "samples").is_dir()


# ------------------------------------------------------------------------------------------------
# The joint cascade objective
# ------------------------------------------------------------------------------------------------


def test_joint_objective_has_one_phase_network_and_ema_per_stage_each_at_its_resolution(tmp_path):
    cfg = joint_config(tmp_path, tmp_path / "cache", "train.lr=3e-4")
    cfg.cascade.stages[1].lr = 1e-4
    objective = build_objective(cfg, 384)
    assert isinstance(objective, CascadeObjective)
    assert objective.phases == ("base16", "sr32") and set(objective.ema_networks) == {"base16", "sr32"}
    assert [objective.phase_spec(p).module for p in objective.phases] == ["base16", "sr32"]
    assert [objective.phase_spec(p).lr for p in objective.phases] == [3e-4, 1e-4]
    spies = {name: Spy(net) for name, net in objective.networks.items()}
    objective.networks.update(spies)
    batch = shapes_batch(32)
    for phase in objective.phases:
        loss, logs = objective.loss(
            phase, batch, fake_text(6), fake_text(1), torch.Generator().manual_seed(0)
        )
        assert loss.ndim == 0 and torch.isfinite(loss)
    (base,), (sr,) = spies["base16"].calls, spies["sr32"].calls
    assert base["x_t"].shape[-1] == 16 and "lowres" not in base
    assert sr["x_t"].shape[-1] == 32 and sr["lowres"].shape[-1] == 16


# ------------------------------------------------------------------------------------------------
# Config errors, before any data, text or network is built
# ------------------------------------------------------------------------------------------------


def _set(cfg: RunConfig, path: str, value) -> RunConfig:
    node = cfg
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    setattr(node, last, value)
    return cfg


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("superres.lowres_size", 32, "stage resolutions must increase"),
        ("superres.lowres_size", 0, "superres.lowres_size is 0 but model.lowres_cond is True"),
        ("superres.lowres_source", "pixels", "lowres_source.*allowed: downsample, render"),
        ("superres.downsample", "nearest", "superres.downsample.*allowed: area, bicubic"),
        ("superres.random_crop", 7, "random_crop 7.*multiple of 2"),
        ("superres.random_crop", 64, "random_crop 64.*at most 32"),
        ("noise_aug.max_level", 1.5, "noise_aug.max_level"),
        ("sample.aug_level", -0.1, "sample.aug_level"),
        ("model.image_size", 16, "model.image_size 16 must equal the stage's resolution 32"),
    ],
)
def test_bad_super_resolution_settings_name_the_key(tmp_path, path, value, message):
    cfg = _set(sr_config(tmp_path, tmp_path / "cache"), path, value)
    with pytest.raises(ValueError, match=message):
        validate(cfg)


def test_render_source_needs_shapes_data(tmp_path):
    cfg = sr_config(tmp_path, tmp_path / "cache")
    cfg.superres.lowres_source = "render"
    cfg.data = dataclasses.replace(cfg.data, kind="folder", path=str(tmp_path))
    with pytest.raises(ValueError, match="render re-renders Shapes scenes"):
        validate(cfg)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("cascade.stages.1.superres.lowres_size", 8, "'sr32' takes 8 px low-res input but 'base16' makes 16"),
        ("cascade.stages.1.stage", "base16", "repeated: \\['base16'\\]"),
        ("data.resolution", 64, "data.resolution 64 must be the last stage's resolution"),
        ("cascade.stages.1.superres.lowres_source", "render", "must agree on superres.lowres_source"),
        ("train.objective", "diffusion", "train it with train.objective=cascade"),
    ],
)
def test_bad_joint_cascades_name_the_problem(tmp_path, path, value, message):
    cfg = _set(joint_config(tmp_path, tmp_path / "cache"), path, value)
    with pytest.raises(ValueError, match=message):
        validate(cfg)


def test_joint_stages_out_of_order_fail_in_the_trainer_before_the_text_cache(tmp_path):
    from imagegen.training.trainer import Trainer

    cfg = joint_config(tmp_path, tmp_path / "cache")
    cfg.cascade.stages.reverse()
    with pytest.raises(ValueError, match="the first stage 'sr32' is a super-resolution stage"):
        Trainer(cfg).fit()
    assert not (tmp_path / "cache").exists()  # failed before the text encoder ran

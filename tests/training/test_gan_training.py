"""The GAN objective through the real trainer: one step per loss, exact resume, NaN guard, text use."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imagegen import factory
from imagegen.config import load_config
from imagegen.training import checkpoint as ckpt
from imagegen.training.objectives.gan import GANObjective
from imagegen.training.trainer import Trainer

TINY_GAN = Path(__file__).resolve().parents[2] / "configs" / "tiny-gan-test.yaml"


@pytest.fixture
def gan_config(tmp_path, text_cache_dir):
    """A factory of tiny GAN run configs (16 px, gan-tiny16) writing under this test's tmp_path."""

    def make(*overrides: str):
        return load_config(
            TINY_GAN,
            [f"train.output_dir={tmp_path / 'runs'}", f"text.cache_dir={text_cache_dir}", *overrides],
        )

    return make


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """G and D as trained (accelerate's state), and the EMA of G, of one checkpoint."""
    state = checkpoint / "state"
    tensors = {f"G.{k}": v for k, v in load_file(str(state / "model.safetensors")).items()}
    tensors |= {f"D.{k}": v for k, v in load_file(str(state / "model_1.safetensors")).items()}
    shadow = load_file(str(checkpoint / "ema" / "G" / "ema_shadow.safetensors"))
    return tensors | {f"ema.{k}": v for k, v in shadow.items()}


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("loss", "extra"),
    [
        ("hinge", ()),
        ("nonsaturating", ()),
        ("hinge", ("gan.disc_head=projection", "gan.contrastive_weight=1.0")),  # the Shapes CPU recipe
    ],
)
def test_one_step_of_each_loss_updates_both_networks(gan_config, loss, extra):
    cfg = gan_config(f"gan.loss={loss}", "train.max_steps=1", "train.checkpoint_every=0", *extra)
    torch.manual_seed(cfg.train.seed)
    initial_g, initial_d = factory.build_gan(cfg.gan, 384, cfg.gan.image_size)
    summary = Trainer(cfg).fit()
    assert summary.step == 1 and summary.bad_steps == 0
    trained = _weights(summary.checkpoint)
    for prefix, initial in (("G", initial_g), ("D", initial_d)):
        moved = [not torch.equal(trained[f"{prefix}.{k}"], v) for k, v in initial.state_dict().items()]
        assert any(moved), f"{prefix} did not learn"
    (logged,) = _metrics(summary.run_dir)
    assert math.isfinite(logged["D/loss"]) and math.isfinite(logged["G/loss"])
    if cfg.gan.contrastive_weight > 0:  # the term is in both phases, and V (zero at init) learnt
        assert math.isfinite(logged["D/contrastive"]) and math.isfinite(logged["G/contrastive"])
        assert trained["D.text_projection.weight"].abs().max() > 0
    if loss == "nonsaturating":  # logits start near 0: each term costs about log 2
        assert logged["G/loss"] == pytest.approx(math.log(2), abs=0.2)
    # the checkpoint's EMA of G is a self-describing network folder (no pickle)
    generator = factory.load_network(summary.checkpoint / "ema" / "G")
    assert type(generator).__name__ == "Generator" and generator.z_dim == cfg.gan.z_dim


def test_the_g_phase_reuses_the_d_phase_noise(gan_config):
    cfg = gan_config()
    objective = GANObjective(cfg, *factory.build_gan(cfg.gan, 8, cfg.gan.image_size))
    batch = {"image": torch.zeros(4, 3, 16, 16)}
    first = objective.step_noise(batch, torch.Generator().manual_seed(0))
    again = objective.step_noise(batch, torch.Generator().manual_seed(1))
    fresh = objective.step_noise({"image": batch["image"]}, torch.Generator().manual_seed(1))
    assert first.shape == (4, cfg.gan.z_dim) and torch.equal(first, again)
    assert not torch.equal(first, fresh)


def test_resume_continues_exactly_and_the_run_learns_to_read_the_text(gan_config):
    straight = Trainer(gan_config("train.run_name=straight")).fit()
    Trainer(gan_config("train.run_name=halves")).fit(stop_at=3)
    resumed = Trainer(gan_config("train.run_name=halves"), resume="latest").fit()
    assert straight.step == resumed.step == 6
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    # both losses stayed finite at every logged step
    logged = _metrics(straight.run_dir)
    assert len(logged) == 6
    assert all(math.isfinite(entry["D/loss"]) and math.isfinite(entry["G/loss"]) for entry in logged)
    # G ignores the caption at initialisation (identity fusion); after training it does not
    generator = factory.load_network(straight.checkpoint / "ema" / "G")
    z = torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(0))
    red, blue = torch.randn(2, 1, 384, generator=torch.Generator().manual_seed(1)).expand(2, 4, 384)
    with torch.no_grad():
        assert (generator(z, red) - generator(z, blue)).abs().max() > 1e-4
        initial = type(generator)(**generator.config)
        assert torch.equal(initial(z, red), initial(z, blue))


def test_a_nan_in_the_g_phase_skips_the_step(gan_config, monkeypatch):
    original, calls = GANObjective.loss, {"G": 0}

    def loss(self, phase, *args, **kwargs):
        value, logs = original(self, phase, *args, **kwargs)
        if phase == "G":
            calls["G"] += 1
            if calls["G"] == 2:
                value = value * float("nan")
        return value, logs

    monkeypatch.setattr(GANObjective, "loss", loss)
    summary = Trainer(gan_config("train.max_steps=3", "train.checkpoint_every=0")).fit()
    assert summary.step == 3 and summary.bad_steps == 1
    assert ckpt.read_trainer_state(summary.checkpoint)["bad_steps"] == 1
    assert all(math.isfinite(entry["G/loss"]) for entry in _metrics(summary.run_dir) if "G/loss" in entry)


def test_gan_size_must_match_the_data(gan_config):
    with pytest.raises(ValueError, match="gan.image_size is 32 but data.resolution is 16"):
        Trainer(gan_config("gan.preset=gan-tiny32", "train.max_steps=1")).setup()

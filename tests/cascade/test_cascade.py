"""Cascades: assembling trained stages into a folder, running it, and the errors of bad cascades.

The tiny 16 -> 32 cascade is trained here for a few steps twice: jointly in one run
(configs/tiny-cascade-test.yaml) and as two separate runs (base16, and sr32 on 16 px crops).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import imagegen
from imagegen.cascade.assemble import assemble
from imagegen.cascade.manifest import read_manifest
from imagegen.config import load_config, stage_run_config, validate
from imagegen.config.stages import check_stage_chain
from imagegen.pipelines.cascade import CascadePipeline

REPO = Path(__file__).resolve().parents[2]
TINY_CASCADE = REPO / "configs" / "tiny-cascade-test.yaml"
TINY_BASE = REPO / "configs" / "tiny-test.yaml"
PROMPT = "a red circle"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cascade")


def _sets(root: Path, name: str, steps: int) -> list[str]:
    return [
        f"train.output_dir={root / 'runs'}",
        f"text.cache_dir={root / 'text-cache'}",
        f"train.run_name={name}",
        f"train.max_steps={steps}",
    ]


@pytest.fixture(scope="module")
def joint_run(root) -> Path:
    from imagegen.training.trainer import train

    return train(load_config(TINY_CASCADE, _sets(root, "joint", 3))).run_dir


@pytest.fixture(scope="module")
def separate_runs(root) -> tuple[Path, Path]:
    """base16 (tiny-test.yaml) and sr32 trained on 16 px crops, as two runs."""
    from imagegen.training.trainer import train

    base = train(load_config(TINY_BASE, [*_sets(root, "base16", 2), "stage=base16"])).run_dir
    joint = load_config(TINY_CASCADE, _sets(root, "sr32", 2))
    sr = stage_run_config(joint, joint.cascade.stages[1])
    sr.superres.random_crop = 16
    return base, train(sr).run_dir


@pytest.fixture(scope="module")
def cascade_dir(root, joint_run) -> Path:
    return assemble([joint_run], root / "joint-cascade")


@pytest.fixture(scope="module")
def pipe(cascade_dir) -> CascadePipeline:
    return imagegen.load_pipeline(cascade_dir, device="cpu")


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


# ------------------------------------------------------------------------------------------------
# The folder
# ------------------------------------------------------------------------------------------------


def test_a_joint_run_assembles_into_a_manifest_and_one_folder_per_stage(cascade_dir, joint_run):
    manifest = json.loads((cascade_dir / "manifest.json").read_text())
    stages = manifest["stages"]
    assert [s["name"] for s in stages] == ["base16", "sr32"]
    assert [(s["resolution"], s["lowres_size"]) for s in stages] == [(16, 0), (32, 16)]
    assert [(s["num_steps"], s["guidance_scale"], s["aug_level"]) for s in stages] == [
        (3, 5.0, 0.0),
        (3, 3.0, 0.2),
    ]
    trainer_state = json.loads(
        next((joint_run / "checkpoints").glob("checkpoint-*/trainer.json")).read_text()
    )
    assert manifest["text_encoder"] == trainer_state["text_identity"]
    for stage in ("base16", "sr32"):
        assert (cascade_dir / stage / "model" / "config.json").is_file()
        assert list((cascade_dir / stage / "model").glob("*.safetensors"))
        assert not list((cascade_dir / stage / "model").glob("ema_shadow*"))  # resume-only state stays behind
    sr_config = load_config(cascade_dir / "sr32" / "config.yaml")  # a single-stage config, trainable as is
    assert sr_config.train.objective == "diffusion" and sr_config.data.resolution == 32
    assert (
        sr_config.model.lowres_cond and sr_config.superres.lowres_size == 16 and not sr_config.cascade.stages
    )


def test_the_cli_assembles_separate_runs_and_refuses_to_overwrite(root, separate_runs, capsys):
    from imagegen.cascade.__main__ import main

    out = root / "cli-cascade"
    assert main(["assemble", *map(str, separate_runs), "--out", str(out)]) == 0
    assert "base16 -> sr32" in capsys.readouterr().out
    assert read_manifest(out).stage_names() == ["base16", "sr32"]
    assert main(["assemble", *map(str, separate_runs), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["assemble", *map(str, separate_runs), "--out", str(out), "--overwrite"]) == 0


def test_separately_trained_stages_generate_at_full_size_though_sr32_trained_on_crops(root, separate_runs):
    folder = assemble(list(separate_runs), root / "separate-cascade")
    images = imagegen.generate([PROMPT, "a blue square"], model=folder, device="cpu", seed=0)
    assert [im.size for im in images] == [(32, 32), (32, 32)]


# ------------------------------------------------------------------------------------------------
# Running it
# ------------------------------------------------------------------------------------------------


def test_all_stages_run_and_any_stage_can_be_the_last(pipe):
    assert isinstance(pipe, CascadePipeline)
    images = pipe([PROMPT, ""], num_images_per_prompt=2, seed=1)
    assert len(images) == 4 and {im.size for im in images} == {(32, 32)}
    base = pipe(PROMPT, seed=1, stop_after="base16")
    assert base[0].size == (16, 16)


def test_a_full_run_is_its_base_output_super_resolved(pipe):
    full = pipe(PROMPT, seed=4, output_type="pt")
    base = pipe(PROMPT, seed=4, stop_after="base16", output_type="pt")  # [1, 3, 16, 16]
    resumed = pipe(PROMPT, seed=4, lowres_image=base[0], output_type="pt")
    assert full.shape == (1, 3, 32, 32) and torch.equal(full, resumed)
    assert not torch.equal(full, pipe(PROMPT, seed=5, output_type="pt"))


def test_stage_overrides_change_only_their_stage_and_beat_call_wide_settings(pipe):
    def run(**kwargs):
        return pipe(PROMPT, seed=2, output_type="pt", **kwargs)

    base, full = run(stop_after="base16"), run()
    assert torch.equal(run(stop_after="base16", stage_overrides={"sr32": {"num_steps": 2}}), base)
    assert not torch.equal(run(stage_overrides={"sr32": {"num_steps": 2}}), full)
    assert not torch.equal(run(stage_overrides={"sr32": {"aug_level": 0.6}}), full)
    assert not torch.equal(run(num_steps=2, stop_after="base16"), base)  # call-wide: every stage
    assert torch.equal(
        run(num_steps=2, stop_after="base16", stage_overrides={"base16": {"num_steps": 3}}), base
    )
    assert torch.equal(run(stage_overrides={"sr32": {"guidance_scale": 3.0}}), full)  # the manifest default


def test_a_users_low_res_image_is_super_resolved(pipe):
    rng = np.random.default_rng(0)
    small = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(2)]
    images = pipe([PROMPT, "a blue square"], lowres_image=small, seed=0)
    assert [im.size for im in images] == [(32, 32), (32, 32)]
    one = pipe([PROMPT, "a blue square"], lowres_image=small[0], seed=0)  # one image for every prompt
    assert np.array_equal(np.asarray(one[0]), np.asarray(images[0]))
    assert not np.array_equal(np.asarray(one[1]), np.asarray(images[1]))


def test_generate_and_load_pipeline_dispatch_on_the_manifest(cascade_dir):
    images = imagegen.generate(
        PROMPT,
        model=cascade_dir,
        device="cpu",
        stop_after="base16",
        stage_overrides={"base16": {"num_steps": 2}},
    )
    assert images[0].size == (16, 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lowres_image": torch.zeros(3, 20, 20)}, "lowres_image is 20x20 px.*take 16 px \\(sr32\\)"),
        ({"lowres_image": Image.new("RGB", (16, 12))}, "lowres_image: must be square"),
        (
            {"lowres_image": torch.full((3, 16, 16), 200.0)},
            "lowres_image: tensor values must be in \\[-1, 1\\]",
        ),
        ({"lowres_image": torch.zeros(3, 3, 16, 16)}, "lowres_image: give one image or one per prompt"),
        (
            {"lowres_image": torch.zeros(3, 16, 16), "stop_after": "base16"},
            "stop_after='base16' comes before",
        ),
        ({"stop_after": "sr64"}, "stop_after: unknown stage 'sr64'; stages: \\['base16', 'sr32'\\]"),
        (
            {"stage_overrides": {"sr64": {"num_steps": 2}}},
            "stage_overrides: unknown stage\\(s\\) \\['sr64'\\]",
        ),
        (
            {"stage_overrides": {"sr32": {"steps": 2}}},
            "stage_overrides\\['sr32'\\]: unknown setting.*num_steps",
        ),
        ({"stage_overrides": {"sr32": {"num_steps": 0}}}, "stage_overrides\\['sr32'\\].num_steps"),
        ({"stage_overrides": {"sr32": {"aug_level": 2}}}, "stage_overrides\\['sr32'\\].aug_level"),
        ({"stage_overrides": {"sr32": {"sampler": "euler"}}}, "unknown sampler 'euler'"),
        ({"stage_overrides": {"sr32": {"thresholding": "soft"}}}, "stage_overrides\\[.sr32.\\].thresholding"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"output_type": "np"}, "output_type"),
    ],
)
def test_bad_arguments_fail_before_any_network_runs(pipe, monkeypatch, kwargs, message):
    import imagegen.pipelines.cascade as module

    def no_compute(*args, **kwargs):
        raise AssertionError("a stage ran before the arguments were checked")

    monkeypatch.setattr(module, "sample_stage", no_compute)
    with pytest.raises(ValueError, match=message):
        pipe(PROMPT, **kwargs)


# ------------------------------------------------------------------------------------------------
# Bad cascades: clear errors naming the stage, before any compute
# ------------------------------------------------------------------------------------------------


def test_stage_resolutions_must_increase_and_chain():
    check_stage_chain([("base64", 64, 0), ("sr256", 256, 64), ("sr1024", 1024, 256)])
    with pytest.raises(
        ValueError, match="resolutions must increase: 'sr256' makes 256 px.*'sr128' makes 128"
    ):
        check_stage_chain([("base64", 64, 0), ("sr256", 256, 64), ("sr128", 128, 256)])
    with pytest.raises(ValueError, match="'sr256' takes 32 px low-res input but 'base64' makes 64"):
        check_stage_chain([("base64", 64, 0), ("sr256", 256, 32)])
    with pytest.raises(ValueError, match="'base128' follows 'base64' but is not a super-resolution stage"):
        check_stage_chain([("base64", 64, 0), ("base128", 128, 0)])


def test_runs_in_the_wrong_order_or_twice_are_refused(root, separate_runs, joint_run):
    base, sr = separate_runs
    with pytest.raises(ValueError, match="the first stage 'sr32' is a super-resolution stage"):
        assemble([sr, base], root / "never")
    with pytest.raises(ValueError, match="repeated: \\['sr32'\\]"):
        assemble([joint_run, sr], root / "never")
    assert not (root / "never").exists()


def test_stages_trained_with_different_text_encoders_are_refused(root, separate_runs):
    base, sr = separate_runs
    other = _copy(sr, root / "sr32-other-encoder")
    state_file = next((other / "checkpoints").glob("checkpoint-*/trainer.json"))
    state = json.loads(state_file.read_text())
    state["text_identity"]["max_length"] = 77
    state_file.write_text(json.dumps(state))
    with pytest.raises(
        ValueError, match="different text encoders: 'base16' used .* 'sr32' used .*max_length"
    ):
        assemble([base, other], root / "never")


def test_a_missing_stage_folder_or_manifest_entry_is_named(root, cascade_dir, monkeypatch):
    no_folder = _copy(cascade_dir, root / "no-sr32")
    shutil.rmtree(no_folder / "sr32")
    with pytest.raises(
        FileNotFoundError, match="stage 'sr32' is listed in manifest.json but .*sr32 is missing"
    ):
        imagegen.load_pipeline(no_folder, device="cpu")
    no_key = _copy(cascade_dir, root / "no-aug-level")
    manifest = json.loads((no_key / "manifest.json").read_text())
    del manifest["stages"][1]["aug_level"]
    (no_key / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="stages\\[1\\] \\(sr32\\): missing keys \\['aug_level'\\]"):
        imagegen.load_pipeline(no_key, device="cpu")
    unordered = _copy(cascade_dir, root / "unordered")
    manifest = json.loads((unordered / "manifest.json").read_text())
    manifest["stages"][1]["resolution"] = 16
    (unordered / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="resolutions must increase"):
        imagegen.load_pipeline(unordered, device="cpu")
    with pytest.raises(FileNotFoundError, match="not a cascade: no manifest.json"):
        read_manifest(root)


# ------------------------------------------------------------------------------------------------
# Imagen's 64 -> 256 -> 1024 layout and the GPU Shapes cascade, on the meta device (no training)
# ------------------------------------------------------------------------------------------------

IMAGEN = ["imagen-base64.yaml", "imagen-sr256.yaml", "imagen-sr1024.yaml"]
IMAGEN_PARAMS = {"base64": 309e6, "sr256": 135e6, "sr1024": 105e6}  # with T5-XXL's 4096-d text
SHAPES_GPU_PARAMS = {"base32": 42.7e6, "sr64": 17.4e6, "sr128": 26.4e6}


def _meta_unet(model_cfg):
    from imagegen.models import EfficientUNet

    with torch.device("meta"):
        return EfficientUNet.from_config_dataclass(model_cfg)


def _meta_forward(model, size: int, lowres_size: int | None) -> tuple[int, ...]:
    dim = model.config.text_dim
    with torch.device("meta"):
        cond = dict(
            text_tokens=torch.empty(2, 8, dim),
            text_mask=torch.ones(2, 8, dtype=torch.bool),
            text_pooled=torch.empty(2, dim),
        )
        if lowres_size:
            cond.update(lowres=torch.empty(2, 3, lowres_size, lowres_size), aug_level=torch.zeros(2))
        return tuple(model(torch.empty(2, 3, size, size), torch.zeros(2), **cond).shape)


def test_imagen_layout_chains_and_has_the_documented_sizes_and_shapes():
    configs = [load_config(REPO / "configs" / name) for name in IMAGEN]
    for cfg in configs:
        validate(cfg)
    check_stage_chain([(c.stage, c.model.image_size, c.superres.lowres_size) for c in configs])
    assert len({yaml.safe_dump(c.text.__dict__) for c in configs}) == 1  # one text encoder for all
    for cfg in configs:
        model = _meta_unet(cfg.model)
        params = sum(p.numel() for p in model.parameters())
        assert abs(params / IMAGEN_PARAMS[cfg.stage] - 1) < 0.05, f"{cfg.stage}: {params / 1e6:.1f}M"
        lowres = cfg.superres.lowres_size
        assert _meta_forward(model, cfg.model.image_size, lowres) == (
            2,
            3,
            cfg.model.image_size,
            cfg.model.image_size,
        )
    sr1024 = configs[2]
    assert sr1024.superres.random_crop == 256 and not any(sr1024.model.self_attn)
    crop = _meta_forward(_meta_unet(sr1024.model), 256, 256)  # training: a crop, its low-res upsampled
    assert crop == (2, 3, 256, 256)


def test_gpu_shapes_cascade_config_trains_jointly_with_the_documented_sizes():
    cfg = load_config(REPO / "configs" / "shapes-cascade.yaml")
    validate(cfg)
    assert [s.stage for s in cfg.cascade.stages] == ["base32", "sr64", "sr128"]
    for stage in cfg.cascade.stages:
        params = sum(p.numel() for p in _meta_unet(stage.model).parameters())
        assert abs(params / SHAPES_GPU_PARAMS[stage.stage] - 1) < 0.02, f"{stage.stage}: {params / 1e6:.1f}M"


def test_an_unassembled_joint_run_is_refused_with_the_assemble_command(joint_run):
    from imagegen.pipelines import load_pipeline

    with pytest.raises(ValueError, match="joint cascade run.*python -m imagegen.cascade assemble"):
        load_pipeline(joint_run, device="cpu")


def test_the_generate_cli_leaves_guidance_to_each_stage_unless_given(cascade_dir, tmp_path, monkeypatch):
    """--guidance-scale not given: the cascade's per-stage defaults apply (no call-wide 5.0)."""
    from imagegen.cli.generate import main
    from imagegen.pipelines.cascade import CascadePipeline

    calls = []
    original = CascadePipeline.__call__

    def spy(self, prompts, **kwargs):
        calls.append(kwargs)
        return original(self, prompts, **kwargs)

    monkeypatch.setattr(CascadePipeline, "__call__", spy)
    out = tmp_path / "x.png"
    assert main(["a red circle", "--model", str(cascade_dir), "--out", str(out), "--steps", "2"]) == 0
    assert "guidance_scale" not in calls[0] and calls[0]["num_steps"] == 2 and out.is_file()

"""The bundled default model (imagegen/assets/default) and its exporter (`python -m imagegen.bundle`)."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import imagegen
from imagegen.pipelines.bundle import MAX_BUNDLE_BYTES, export_bundle
from imagegen.utils import runs
from imagegen.utils.integrity import CorruptCheckpointError, verify_bundle

REPO = Path(__file__).resolve().parents[2]
BUNDLE = runs.BUNDLED_MODEL_DIR
WEIGHTS = "ema/model/diffusion_pytorch_model.safetensors"


@pytest.fixture
def fresh_log(monkeypatch):
    """Forget which model names were already announced in this process."""
    monkeypatch.setattr(runs, "_SAID", set())


@pytest.fixture
def bundle_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the bundle that "default" points at, free to damage."""
    copy = tmp_path / "default"
    shutil.copytree(BUNDLE, copy)
    monkeypatch.setattr(runs, "BUNDLED_MODEL_DIR", copy)
    return copy


def test_the_bundle_is_small_float16_and_ships_the_tuned_sampling_settings():
    files = [p for p in BUNDLE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= MAX_BUNDLE_BYTES
    with safe_open(BUNDLE / WEIGHTS, "pt") as weights:
        dtypes = {weights.get_slice(name).get_dtype() for name in weights.keys()}
    assert dtypes == {"F16"}
    state = verify_bundle(BUNDLE)
    assert set(state["files"]) == {p.relative_to(BUNDLE).as_posix() for p in files} - {"trainer.json"}
    pipe = imagegen.load_pipeline("default", device="cpu")
    sample = pipe.settings()
    assert (sample.sampler, sample.num_steps, sample.guidance_scale, sample.thresholding) == (
        "ddpm",
        100,
        3.0,
        "static",
    )
    assert pipe.cfg.model.image_size == 32 and not pipe.is_superres
    assert {p.dtype for p in pipe.model.parameters()} == {torch.float32}  # upcast on load


def test_no_model_means_the_bundled_model_and_says_so_once(fresh_log, caplog):
    first = imagegen.generate("a red circle", num_steps=2, device="cpu", seed=4)
    again = imagegen.generate("a red circle", num_steps=2, device="cpu", seed=4)
    named = imagegen.generate("a red circle", num_steps=2, device="cpu", seed=4, model="default")
    assert first[0].size == (32, 32)
    assert np.array_equal(np.asarray(first[0]), np.asarray(again[0]))
    assert np.array_equal(np.asarray(first[0]), np.asarray(named[0]))
    said = [r.getMessage() for r in caplog.records if "bundled default model" in r.getMessage()]
    assert len(said) == 2  # once for "no model", once for model="default"; not per call
    assert said[0].startswith("no model given") and "step 8660" in said[0] and str(BUNDLE) in said[0]
    assert imagegen.load_pipeline(device="cpu").checkpoint == BUNDLE


def test_a_path_is_still_a_path_and_a_bad_model_value_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        imagegen.load_pipeline(tmp_path / "default")
    with pytest.raises(ValueError, match="^model: expected a path"):
        imagegen.generate("a red circle", model=3)


@pytest.mark.parametrize("damage", ["flip a weight byte", "edit the config", "delete a file", "add a file"])
def test_a_damaged_bundle_is_refused_naming_the_file(bundle_copy, damage):
    if damage == "flip a weight byte":
        data = bytearray((bundle_copy / WEIGHTS).read_bytes())
        data[-10] ^= 0xFF
        (bundle_copy / WEIGHTS).write_bytes(bytes(data))
        expected = "diffusion_pytorch_model.safetensors: content hash differs"
    elif damage == "edit the config":
        path = bundle_copy / "config.yaml"
        path.write_text(path.read_text().replace("num_steps: 100", "num_steps: 10"))
        expected = "config.yaml: content hash differs"
    elif damage == "delete a file":
        (bundle_copy / "ema/model/config.json").unlink()
        expected = "config.json: missing"
    else:
        (bundle_copy / "ema/model/diffusion_pytorch_model.bin").write_bytes(b"pickle")
        expected = "diffusion_pytorch_model.bin: not part of the bundle"
    with pytest.raises(CorruptCheckpointError, match=expected):
        imagegen.load_pipeline(device="cpu")


def test_the_cli_uses_the_bundled_model_without_model_and_latest_fails_clearly(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from imagegen.cli.generate import main

    monkeypatch.chdir(tmp_path)  # no runs/ here
    assert main(["a red circle", "--steps", "2", "--out", "x.png", "--device", "cpu"]) == 0
    assert f"model: {BUNDLE}" in capsys.readouterr().out
    assert Image.open(tmp_path / "x.png").size == (32, 32)
    assert main(["a red circle", "--model", "latest", "--out", "y.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: model="latest": no trained run under runs/') and err.count("\n") == 1


def test_export_writes_float16_weights_that_sample_like_the_float32_source(
    tiny_diffusion_checkpoint, tiny_gan_checkpoint, tmp_path
):
    out = tmp_path / "bundle"
    record = export_bundle(
        tiny_diffusion_checkpoint,
        out,
        sample_from=REPO / "configs" / "shapes-cpu.yaml",
        overrides=["sample.num_steps=3"],
        check_prompts=("a red circle", "a blue square"),
    )
    source = load_file(tiny_diffusion_checkpoint / WEIGHTS)
    exported = load_file(out / WEIGHTS)
    assert set(exported) == set(source) and {t.dtype for t in exported.values()} == {torch.float16}
    assert all(torch.equal(exported[k], source[k].half()) for k in source)
    assert verify_bundle(out)["files"] == record["files"]
    assert record["bundle"]["sample"]["sampler"] == "ddpm" and record["bundle"]["sample"]["num_steps"] == 3
    assert json.loads((out / "ema/model/config.json").read_text())["prediction_type"] == "v"
    agreement = record["bundle"]["fp32_agreement"]
    assert agreement["mean_abs_levels"] < 0.5 and agreement["max_abs_levels"] < 16
    with pytest.raises(ValueError, match="only a diffusion run bundles"):
        export_bundle(tiny_gan_checkpoint, tmp_path / "gan", check_prompts=())
    assert not (tmp_path / "gan").exists() and not (tmp_path / "gan.tmp").exists()
    with pytest.raises(FileNotFoundError, match="^checkpoint: .* does not exist"):
        export_bundle(tmp_path / "nowhere", tmp_path / "none", check_prompts=())


def test_the_bundled_model_recorded_how_close_float16_samples_are_to_float32():
    """Measured by the exporter on the float32 source checkpoint (not shipped): 100 DDPM steps,
    the same seed; a float16 rounding that changed a sample visibly would show here."""
    agreement = json.loads((BUNDLE / "trainer.json").read_text())["bundle"]["fp32_agreement"]
    assert len(agreement["prompts"]) >= 4
    assert agreement["mean_abs_levels"] < 0.5 and agreement["max_abs_levels"] < 16


def test_pyproject_package_data_covers_every_bundle_file():
    tomllib = pytest.importorskip("tomllib")

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assets = patterns["imagegen.assets"]
    root = REPO / "imagegen" / "assets"
    for path in BUNDLE.rglob("*"):
        if path.is_file():
            relative = path.relative_to(root).as_posix()
            assert any(
                fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in assets
            ), f"{relative} is not in pyproject.toml's package-data for imagegen.assets"


def test_a_built_wheel_carries_the_bundle_intact(tmp_path):
    """pip wheel (no network, no build isolation) of a copy of the sources; the wheel's bundle
    passes the same hash check as the source tree's."""
    pytest.importorskip("setuptools")
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    shutil.copytree(REPO / "imagegen", source / "imagegen", ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*command, "-q", str(source), "-w", str(tmp_path / "wheel")], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("imagegen-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if n.startswith("imagegen/assets/default/")]
        archive.extractall(tmp_path / "installed", members)
    assert len(members) == len([p for p in BUNDLE.rglob("*") if p.is_file()])
    verify_bundle(tmp_path / "installed" / "imagegen" / "assets" / "default")

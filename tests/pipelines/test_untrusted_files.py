"""Checkpoint files are untrusted input: tampered architectures are bounded before anything is
allocated, a crafted pickle never runs whatever file of a checkpoint it replaces, and generation
reads weights from safetensors only (issue 15, items 5 and 9)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import imagegen
from imagegen.config import load_config
from imagegen.utils.integrity import HASHES_KEY, CorruptCheckpointError, hash_folder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tiny_diffusion_checkpoint, tiny_gan_checkpoint) -> dict[str, Path]:
    return {"diffusion": tiny_diffusion_checkpoint, "gan": tiny_gan_checkpoint}


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoint, tmp_path / "runs" / "copy" / "checkpoints" / checkpoint.name))


def _rehash(checkpoint: Path) -> None:
    """What an attacker who edits files also does: record the edited files' hashes."""
    state = json.loads((checkpoint / "trainer.json").read_text())
    state[HASHES_KEY] = hash_folder(checkpoint)
    (checkpoint / "trainer.json").write_text(json.dumps(state))


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_a_tampered_file_is_refused_by_its_content_hash(trained, tmp_path):
    checkpoint = _copy(trained["diffusion"], tmp_path)
    _edit_json(checkpoint / "ema/model/config.json", lambda c: c.update(channels=[30000] * 3))
    with pytest.raises(CorruptCheckpointError, match="config.json: content hash"):
        imagegen.load_pipeline(checkpoint, device="cpu")


def test_a_tampered_unet_config_is_bounded_before_anything_is_built(trained, tmp_path):
    """channels [30000]*3 in ema/model/config.json allocated about 7 GB before the fix."""
    checkpoint = _copy(trained["diffusion"], tmp_path)
    _edit_json(checkpoint / "ema/model/config.json", lambda c: c.update(channels=[30000] * 3))
    _rehash(checkpoint)
    with pytest.raises(ValueError, match=r"config.json: channels=\[30000, 30000, 30000\] is outside"):
        imagegen.load_pipeline(checkpoint, device="cpu")


def test_a_tampered_gan_network_json_is_bounded_before_anything_is_built(trained, tmp_path):
    checkpoint = _copy(trained["gan"], tmp_path)
    _edit_json(checkpoint / "ema/G/network.json", lambda c: c["config"].update(channels=[30000] * 3))
    _rehash(checkpoint)
    with pytest.raises(ValueError, match=r"network.json: channels=\[30000, 30000, 30000\] is outside"):
        imagegen.load_pipeline(checkpoint, device="cpu")


@pytest.mark.parametrize(
    ("objective", "edit", "message"),
    [
        ("diffusion", lambda c: c.update(channels=[16]), r"ema/model: config.json and the weights do not"),
        ("diffusion", lambda c: c.update(channels="wide"), r"ema/model: config.json and the weights do not"),
        ("gan", lambda c: c["config"].update(z_dim=7), r"ema/G: network.json and the weights do not"),
    ],
)
def test_a_saved_architecture_that_does_not_fit_its_weights_names_the_folder(
    trained, tmp_path, objective, edit, message
):
    """A config.json / network.json within bounds but not the one the weights were saved with
    (hashes re-recorded): a CorruptCheckpointError naming the folder, not diffusers' or torch's
    error that names neither (found by tests/pipelines/test_fuzz_inputs.py)."""
    checkpoint = _copy(trained[objective], tmp_path)
    _edit_json(
        checkpoint / ("ema/model/config.json" if objective == "diffusion" else "ema/G/network.json"), edit
    )
    _rehash(checkpoint)
    with pytest.raises(CorruptCheckpointError, match=message):
        imagegen.load_pipeline(checkpoint, device="cpu")


@pytest.mark.parametrize("content", ["train: 5\n", "nonsense_key: 1\n", "model: {channels: wide}\n"])
def test_a_checkpoint_config_that_is_not_a_run_config_names_the_file(trained, tmp_path, content):
    """config.yaml is a mapping but not a valid run config: a ConfigError naming the file (the
    first raised AttributeError, the others did not say which file)."""
    from imagegen.config import ConfigError

    checkpoint = _copy(trained["diffusion"], tmp_path)
    (checkpoint / "config.yaml").write_text(content)
    _rehash(checkpoint)
    with pytest.raises(ConfigError, match=re.escape(str(checkpoint / "config.yaml"))):
        imagegen.load_pipeline(checkpoint, device="cpu")


def test_a_cascade_manifest_that_is_not_utf8_names_the_file(tmp_path):
    (tmp_path / "manifest.json").write_bytes(b"\x80{}")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'manifest.json'}: not valid JSON")):
        imagegen.load_pipeline(tmp_path, device="cpu")


class _Payload:
    """Unpickling this runs `open(marker, "w")`: a marker file appears if any loader unpickles it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _files(checkpoint: Path) -> list[str]:
    return sorted(p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file())


def _try_everything(checkpoint: Path, tmp_path: Path, cache: Path) -> int:
    """Resume from the checkpoint and generate with it; any error is fine, a run payload is not.
    Returns how many of the two succeeded."""
    from imagegen.training.trainer import Trainer

    cfg = load_config(
        REPO / "configs" / "tiny-test.yaml",
        [f"train.output_dir={tmp_path / 'out'}", f"text.cache_dir={cache}"],
    )
    attempts = [
        lambda: Trainer(cfg, resume=str(checkpoint)).setup(),
        lambda: imagegen.generate("a red circle", model=checkpoint, device="cpu", num_steps=1),
    ]
    succeeded = 0
    for attempt in attempts:
        try:
            attempt()
            succeeded += 1
        except Exception:  # noqa: BLE001 - refusing is the point; only the marker matters
            pass
    return succeeded


def test_a_crafted_pickle_in_any_checkpoint_file_never_runs(trained, tmp_path, text_cache_dir):
    """Every file a diffusion checkpoint holds, plus the `.bin` diffusers would fall back to, is
    replaced in turn by a pickle whose __reduce__ writes a marker (hashes re-recorded, as an
    attacker would); resuming and generating must never create the marker."""
    names = _files(trained["diffusion"]) + ["ema/model/diffusion_pytorch_model.bin"]
    assert "state/optimizer.bin" in names and "state/random_states_0.pkl" in names
    clean = Path(shutil.copytree(trained["diffusion"], tmp_path / "clean/checkpoints/checkpoint-2"))
    assert _try_everything(clean, tmp_path / "try-clean", text_cache_dir) == 2, (
        "both loaders work on the clean copy"
    )
    for i, name in enumerate(names):
        target = tmp_path / f"run{i}/checkpoints/checkpoint-2"
        checkpoint = Path(shutil.copytree(trained["diffusion"], target))
        marker = tmp_path / f"marker-{i}"
        torch.save(_Payload(marker), checkpoint / name)
        if name != "trainer.json":
            _rehash(checkpoint)
        _try_everything(checkpoint, tmp_path / f"try{i}", text_cache_dir)
        assert not marker.exists(), f"a pickle in {name} was run"


def test_generation_refuses_the_pickled_bin_fallback(trained, tmp_path):
    """Without the safetensors file diffusers silently loaded diffusion_pytorch_model.bin."""
    checkpoint = _copy(trained["diffusion"], tmp_path)
    weights = checkpoint / "ema/model/diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(str(weights)), weights.with_suffix(".bin"))
    weights.unlink()
    _rehash(checkpoint)
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors: missing"):
        imagegen.load_pipeline(checkpoint, device="cpu")


def test_dependency_floors_are_versions_that_refuse_arbitrary_pickles():
    """torch >= 2.6 loads with weights_only=True by default; accelerate >= 1.1 passes
    weights_only=True for every file load_state reads (optimizer, scheduler, RNG states)."""
    text = (REPO / "pyproject.toml").read_text()  # no tomllib: Python 3.10 is supported
    pins = re.findall(r'"(\w+)>=([\d.]+)"', text)
    floors = {name: tuple(map(int, version.split("."))) for name, version in pins}
    assert floors["torch"] >= (2, 6) and floors["accelerate"] >= (1, 1)

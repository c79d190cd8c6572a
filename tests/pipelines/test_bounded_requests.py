"""Requests are bounded and sampled in chunks; a NaN/inf model output is an error naming the stage
and step, never an all-black PNG (issue 15, items 4 and 6)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import imagegen
from imagegen.utils.integrity import HASHES_KEY, hash_folder


@pytest.fixture(scope="module")
def checkpoint(tiny_diffusion_checkpoint) -> Path:
    return tiny_diffusion_checkpoint


@pytest.fixture(scope="module")
def pipe(checkpoint):
    return imagegen.load_pipeline(checkpoint, device="cpu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "x", "num_images_per_prompt": 10**7}, r"num_images_per_prompt: 10000000 .* 1024 images"),
        ({"prompt": ["x"] * 600, "num_images_per_prompt": 2}, r"num_images_per_prompt: .* 1024 images"),
        ({"prompt": ["x"] * 5000}, r"prompt: 5000 prompts, more than the 1024"),
        ({"prompt": "x" * 200_000}, r"prompt: a prompt of 200000 characters; at most 10000"),
        ({"prompt": "\ud800"}, r"prompt: .* is not valid text"),
        ({"prompt": "x", "guidance_scale": 1e308}, r"guidance_scale: expected a number in \[0, 100\]"),
        ({"prompt": "x", "guidance_scale": 10**400}, r"guidance_scale: expected a number in \[0, 100\]"),
        ({"prompt": "x", "sampler": "0"}, r"sampler: unknown sampler '0'; allowed: ddpm"),
        ({"prompt": "x", "sampler": ["ddim"]}, r"sampler: unknown sampler \['ddim'\]"),
        ({"prompt": "x", "num_steps": 10**9}, r"num_steps: 1000000000 is more than the 1000 allowed"),
    ],
)
def test_an_absurd_request_is_refused_up_front_naming_the_argument_and_limit(checkpoint, kwargs, message):
    with pytest.raises(ValueError, match=message):
        imagegen.generate(model=checkpoint, device="cpu", **kwargs)


def test_a_large_request_is_sampled_in_bounded_chunks(pipe, monkeypatch):
    """40 images go through the U-Net 16 (32 with guidance's doubled batch) at a time, and the
    chunked result equals the images drawn one chunk at a time."""
    from imagegen.pipelines.base import SAMPLE_BATCH

    batches: list[int] = []
    denoiser = pipe.denoiser

    def recording(x_t, t, **cond):
        batches.append(x_t.shape[0])
        return denoiser(x_t, t, **cond)

    monkeypatch.setattr(pipe, "denoiser", recording)
    images = pipe("a red circle", num_images_per_prompt=40, num_steps=1, seed=3)
    assert len(images) == 40 and max(batches) == 2 * SAMPLE_BATCH and sum(batches) == 2 * 40


def test_a_request_of_several_batches_shows_a_bar_and_one_batch_none(pipe, capsys):
    pipe("a red circle", num_images_per_prompt=17, num_steps=1, seed=3)  # 16 + 1: two batches
    bar = capsys.readouterr().err
    # the bar's total is the number of batches; whether "1/2" is drawn before it closes depends on
    # tqdm's refresh interval, so only the total is asserted
    assert "sampling base" in bar and "/2 [" in bar and "batch" in bar
    pipe("a red circle", num_images_per_prompt=16, num_steps=1, seed=3)
    assert "sampling" not in capsys.readouterr().err


def _poison(folder: Path, weights_file: str) -> None:
    """Weights with a valid header and NaN data, hashes re-recorded (so only sampling can tell)."""
    path = folder / weights_file
    tensors = {k: torch.full_like(v, float("nan")) for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    checkpoint = folder.parents[1]
    state = json.loads((checkpoint / "trainer.json").read_text())
    state[HASHES_KEY] = hash_folder(checkpoint)
    (checkpoint / "trainer.json").write_text(json.dumps(state))


def test_nan_weights_raise_naming_the_stage_and_step(checkpoint, tmp_path):
    from imagegen.diffusion import NonFiniteOutputError

    copy = Path(shutil.copytree(checkpoint, tmp_path / "run/checkpoints" / checkpoint.name))
    _poison(copy / "ema" / "model", "diffusion_pytorch_model.safetensors")
    with pytest.raises(NonFiniteOutputError, match=r"stage base32 .*step 1/2 \(t=\d+\): .*NaN/inf"):
        imagegen.load_pipeline(copy, device="cpu")("a red circle", num_steps=2)


def test_the_cli_exits_2_on_nan_weights_and_writes_no_png(checkpoint, tmp_path, capsys):
    from imagegen.cli.generate import main

    copy = Path(shutil.copytree(checkpoint, tmp_path / "run/checkpoints" / checkpoint.name))
    _poison(copy / "ema" / "model", "diffusion_pytorch_model.safetensors")
    out = tmp_path / "x.png"
    assert main(["a red circle", "--model", str(copy), "--out", str(out), "--steps", "1"]) == 2
    assert not out.exists() and "NaN/inf" in capsys.readouterr().err


def test_a_gan_with_nan_weights_raises(tiny_gan_checkpoint, tmp_path):
    from imagegen.diffusion import NonFiniteOutputError

    gan = Path(shutil.copytree(tiny_gan_checkpoint, tmp_path / "run/checkpoints" / tiny_gan_checkpoint.name))
    _poison(gan / "ema" / "G", "model.safetensors")
    with pytest.raises(NonFiniteOutputError, match="GAN .*NaN/inf"):
        imagegen.load_pipeline(gan, device="cpu")("a red circle")

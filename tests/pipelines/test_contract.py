"""One contract for every pipeline kind (diffusion run, GAN run, cascade folder, unCLIP folder):
the same call signature, the same argument checks, determinism and output types. Runs on the tiny
folders of tests/fixtures/main-76900e1, which load in a fraction of a second, and on the session's
tiny unCLIP folder (tests/conftest.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import imagegen
from imagegen.pipelines import CascadePipeline, DiffusionPipeline, GANPipeline
from imagegen.pipelines.unclip import UnclipPipeline

FOLDERS = Path(__file__).resolve().parents[1] / "fixtures" / "main-76900e1"
KINDS = {
    "diffusion": DiffusionPipeline,
    "gan": GANPipeline,
    "cascade": CascadePipeline,
    "unclip": UnclipPipeline,
}
SIZES = {"diffusion": 16, "gan": 16, "cascade": 32, "unclip": 16}
FAST = {"num_steps": 2}  # ignored, with a warning, by the GAN


@pytest.fixture(scope="module", params=sorted(KINDS))
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def folder(kind, request) -> Path:
    return request.getfixturevalue("unclip_folder") if kind == "unclip" else FOLDERS / kind


@pytest.fixture(scope="module")
def pipe(folder):
    return imagegen.load_pipeline(folder, device="cpu")


def test_load_pipeline_picks_the_pipeline_of_the_folder(kind, pipe):
    assert type(pipe) is KINDS[kind]


def test_one_image_per_prompt_and_sample_in_both_output_types(kind, pipe):
    images = pipe(["a red circle", ""], num_images_per_prompt=2, seed=1, **FAST)
    size = SIZES[kind]
    assert len(images) == 4 and all(im.size == (size, size) and im.mode == "RGB" for im in images)
    tensor = pipe(["a red circle", ""], num_images_per_prompt=2, seed=1, output_type="pt", **FAST)
    assert tensor.shape == (4, 3, size, size) and tensor.dtype == torch.float32
    assert tensor.device.type == "cpu" and -1 <= tensor.min() and tensor.max() <= 1
    pixels = np.clip((tensor.numpy() + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.array_equal(pixels, np.stack([np.asarray(im) for im in images]))  # the same images


def test_same_seed_same_images_other_seed_other_images(pipe):
    def draw(seed):
        return pipe("a blue square", seed=seed, output_type="pt", **FAST)

    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))


def test_every_kind_takes_every_sampling_argument(kind, pipe):
    """guidance_scale, sampler, thresholding and negative_prompt are accepted by every kind
    (a GAN ignores them with a warning); thresholding changes what a diffusion model draws."""
    options = {"guidance_scale": 3.0, "sampler": "ddim", "negative_prompt": "a green star"}
    dynamic = pipe("a red circle", seed=2, output_type="pt", thresholding="dynamic", **options, **FAST)
    static = pipe("a red circle", seed=2, output_type="pt", thresholding="static", **options, **FAST)
    assert dynamic.shape == static.shape
    assert torch.equal(dynamic, static) == (kind == "gan")


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"prompt": []}, "prompt"),
        ({"prompt": ["a red circle", 3]}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "x", "num_images_per_prompt": 0}, "num_images_per_prompt"),
        ({"prompt": "x", "num_images_per_prompt": 5000}, "num_images_per_prompt"),
        ({"prompt": "x", "seed": -3}, "seed"),
        ({"prompt": "x", "seed": "0"}, "seed"),
        ({"prompt": "x", "guidance_scale": math.nan}, "guidance_scale"),
        ({"prompt": "x", "guidance_scale": -1.0}, "guidance_scale"),
        ({"prompt": "x", "num_steps": 0}, "num_steps"),
        ({"prompt": "x", "sampler": "euler_magic"}, "sampler"),
        ({"prompt": "x", "thresholding": "soft"}, "thresholding"),
        ({"prompt": "x", "output_type": "np"}, "output_type"),
        ({"prompt": ["a", "b"], "negative_prompt": ["n1", "n2", "n3"]}, "negative_prompt"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them_before_any_network_runs(
    pipe, monkeypatch, kwargs, argument
):
    def no_compute(*args, **kwargs):
        raise AssertionError("a network ran before the arguments were checked")

    for module in ("imagegen.pipelines.diffusion", "imagegen.pipelines.cascade"):
        monkeypatch.setattr(f"{module}.sample_stage", no_compute)
    monkeypatch.setattr("imagegen.pipelines.gan.sample_z", no_compute)
    monkeypatch.setattr("imagegen.pipelines.unclip.sample_decoder", no_compute)
    monkeypatch.setattr("imagegen.pipelines.unclip.sample_image_embeds", no_compute)
    kwargs = dict(kwargs)  # shared by the three kinds
    prompt = kwargs.pop("prompt")
    with pytest.raises(ValueError, match=argument):
        pipe(prompt, **kwargs)


def test_generate_takes_the_same_arguments_for_every_kind(folder, pipe):
    via_generate = imagegen.generate(
        "a red circle", model=folder, device="cpu", seed=3, output_type="pt", **FAST
    )
    assert torch.equal(via_generate, pipe("a red circle", seed=3, output_type="pt", **FAST))

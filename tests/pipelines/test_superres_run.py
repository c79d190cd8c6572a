"""A standalone super-resolution run generates from a given low-res image, exactly as the same
stage does inside a cascade; and `python -m imagegen.generate` is the one command for runs and
cascades."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import imagegen
from imagegen.cascade.assemble import assemble
from imagegen.config import load_config, stage_run_config

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["a red circle", "a blue square"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(base16 run, sr32 run, the cascade assembled from both)."""
    from imagegen.training.trainer import train

    root = tmp_path_factory.mktemp("superres")

    def sets(name):
        return [
            f"train.output_dir={root / 'runs'}",
            f"text.cache_dir={root / 'cache'}",
            f"train.run_name={name}",
            "train.max_steps=2",
        ]

    base = train(load_config(REPO / "configs/tiny-test.yaml", [*sets("base16"), "stage=base16"])).run_dir
    joint = load_config(REPO / "configs/tiny-cascade-test.yaml", sets("sr32"))
    sr = train(stage_run_config(joint, joint.cascade.stages[1])).run_dir
    return base, sr, assemble([base, sr], root / "cascade")


def _small(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(count)]


def test_a_standalone_sr_run_super_resolves_a_given_image_as_its_cascade_stage_does(runs):
    _, sr_run, cascade = runs
    pipe = imagegen.load_pipeline(sr_run, device="cpu")
    images = pipe(PROMPTS, lowres_image=_small(2), seed=1, output_type="pt")
    assert images.shape == (2, 3, 32, 32)
    # the cascade's stage i samples with seed + i: sr32 is stage 1
    in_cascade = imagegen.load_pipeline(cascade, device="cpu")
    assert torch.equal(images, in_cascade(PROMPTS, lowres_image=_small(2), seed=0, output_type="pt"))
    assert not torch.equal(images, pipe(PROMPTS, lowres_image=_small(2)[::-1], seed=1, output_type="pt"))


@pytest.mark.parametrize(
    ("lowres", "message"),
    [
        (None, "lowres_image: .* is a super-resolution run \\(16 -> 32 px\\)"),
        (Image.new("RGB", (8, 8)), "lowres_image is 8x8 px; this run super-resolves 16 px"),
        (torch.zeros(3, 3, 16, 16), "lowres_image: give one image or one per prompt"),
    ],
)
def test_a_standalone_sr_run_needs_a_low_res_image_of_its_size(runs, lowres, message):
    pipe = imagegen.load_pipeline(runs[1], device="cpu")
    with pytest.raises(ValueError, match=message):
        pipe(PROMPTS, lowres_image=lowres)


def test_a_text_to_image_run_refuses_a_low_res_image(runs):
    with pytest.raises(ValueError, match="lowres_image: .* text-to-image run"):
        imagegen.load_pipeline(runs[0], device="cpu")("a red circle", lowres_image=_small(1)[0])


def test_one_generate_command_for_runs_and_cascades(runs, tmp_path, capsys):
    from imagegen.cli.generate import main

    base, sr_run, cascade = runs
    small = tmp_path / "small.png"
    _small(1)[0].save(small)
    cases = {
        "run.png": ["--model", str(base)],
        "sr.png": ["--model", str(sr_run), "--lowres-image", str(small)],
        "cascade.png": ["--model", str(cascade), "--set", "sr32.num_steps=1", "--thresholding", "static"],
        "stop.png": ["--model", str(cascade), "--stop-after", "base16"],
        "from-small.png": ["--model", str(cascade), "--lowres-image", str(small)],
    }
    sizes = {"run.png": 16, "sr.png": 32, "cascade.png": 32, "stop.png": 16, "from-small.png": 32}
    for name, args in cases.items():
        assert main(["a red circle", *args, "--steps", "2", "--out", str(tmp_path / name)]) == 0, name
        assert Image.open(tmp_path / name).size == (sizes[name], sizes[name]), name
    assert main(["a red circle", "--model", str(base), "--stop-after", "base16"]) == 2
    assert "only a cascade folder" in capsys.readouterr().err


def test_the_cascade_command_points_to_the_one_generate_command(runs, capsys):
    from imagegen.cascade.__main__ import main

    assert main(["generate", str(runs[2]), "a red circle"]) == 2
    assert "python -m imagegen.generate" in capsys.readouterr().err

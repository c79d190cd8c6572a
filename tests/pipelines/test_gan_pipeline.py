"""`load_pipeline` / `imagegen.generate` / the CLI on a tiny GAN run (GANPipeline)."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import imagegen
from imagegen.config import load_config
from imagegen.pipelines.diffusion import DiffusionPipeline
from imagegen.pipelines.gan import GANPipeline

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _train(root: Path, config: str, name: str, steps: int) -> Path:
    from imagegen.training.trainer import train

    cfg = load_config(
        CONFIGS / config,
        [
            f"train.output_dir={root / 'runs'}",
            f"text.cache_dir={root / 'cache'}",
            f"train.run_name={name}",
            f"train.max_steps={steps}",
        ],
    )
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Runs and one text cache shared by this module's tests."""
    return tmp_path_factory.mktemp("gan-pipeline")


@pytest.fixture(scope="module")
def run_dir(root) -> Path:
    return _train(root, "tiny-gan-test.yaml", "tiny-gan", 4)


@pytest.fixture(scope="module")
def pipe(run_dir):
    return imagegen.load_pipeline(run_dir, device="cpu")


def _array(image) -> np.ndarray:
    return np.asarray(image, dtype=float)


def test_a_gan_run_loads_as_a_gan_pipeline_and_draws_one_image_per_prompt_and_sample(pipe):
    assert isinstance(pipe, GANPipeline)
    images = pipe(["a red circle", ""], num_images_per_prompt=3, seed=1)
    assert len(images) == 6 and all(im.size == (16, 16) and im.mode == "RGB" for im in images)
    assert not np.array_equal(_array(images[0]), _array(images[1]))  # new noise per sample


def test_same_seed_same_images_other_seed_other_images(pipe):
    a, b, c = (_array(pipe("a blue square", seed=seed)[0]) for seed in (5, 5, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_truncation_changes_the_noise_and_four_or_more_is_untruncated(pipe):
    default = _array(pipe("a red circle", seed=3)[0])  # tiny-gan-test: gan.truncation 4 (off)
    assert np.array_equal(default, _array(pipe("a red circle", seed=3, truncation=10.0)[0]))
    assert not np.array_equal(default, _array(pipe("a red circle", seed=3, truncation=0.5)[0]))


def test_diffusion_arguments_are_ignored_with_one_warning_each(pipe, caplog):
    plain = _array(pipe("a red circle", seed=2)[0])
    ignored = dict(guidance_scale=7.5, num_steps=10, sampler="ddim", negative_prompt="a blue square")
    with caplog.at_level(logging.WARNING, logger="imagegen.generate"):
        for _ in range(2):
            assert np.array_equal(plain, _array(pipe("a red circle", seed=2, **ignored)[0]))
    for name in ignored:
        assert sum(f"{name} does not apply to a GAN" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"prompt": []}, "prompt"),
        ({"prompt": ["a red circle", 3]}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "x", "num_images_per_prompt": 0}, "num_images_per_prompt"),
        ({"prompt": "x", "seed": -3}, "seed"),
        ({"prompt": "x", "seed": 1.5}, "seed"),
        ({"prompt": "x", "guidance_scale": math.nan}, "guidance_scale"),
        ({"prompt": "x", "guidance_scale": -1.0}, "guidance_scale"),
        ({"prompt": "x", "num_steps": 0}, "num_steps"),
        ({"prompt": "x", "sampler": "euler_magic"}, "sampler"),
        ({"prompt": ["a", "b"], "negative_prompt": ["n1", "n2", "n3"]}, "negative_prompt"),
        ({"prompt": "x", "truncation": 0.0}, "truncation"),
        ({"prompt": "x", "truncation": -1.0}, "truncation"),
        ({"prompt": "x", "truncation": math.nan}, "truncation"),
        ({"prompt": "x", "truncation": "0.7"}, "truncation"),
        ({"prompt": "x", "truncation": True}, "truncation"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(run_dir, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        imagegen.generate(model=run_dir, device="cpu", **kwargs)


def test_generate_passes_truncation_through(run_dir, pipe):
    via_generate = imagegen.generate("a green star", model=run_dir, device="cpu", seed=4, truncation=0.5)
    assert np.array_equal(_array(via_generate[0]), _array(pipe("a green star", seed=4, truncation=0.5)[0]))


def test_the_checkpoint_folder_alone_is_enough(pipe, tmp_path):
    """config.yaml + ema/G/ suffice: no optimizer state, no run directory, no pickle."""
    copy = shutil.copytree(pipe.checkpoint, tmp_path / "model", ignore=shutil.ignore_patterns("state"))
    alone = imagegen.load_pipeline(copy, device="cpu")
    assert np.array_equal(_array(alone("a red circle", seed=0)[0]), _array(pipe("a red circle", seed=0)[0]))


def test_the_cli_draws_with_a_gan_run(run_dir, tmp_path):
    from PIL import Image

    from imagegen.cli.generate import main

    assert (
        main(["a red circle", "--model", str(run_dir), "--out", str(tmp_path / "x.png"), "--device", "cpu"])
        == 0
    )
    assert Image.open(tmp_path / "x.png").size == (16, 16)


def test_a_diffusion_run_ignores_truncation_with_a_warning(root, caplog):
    run = _train(root, "tiny-test.yaml", "tiny-diffusion", 1)
    assert isinstance(imagegen.load_pipeline(run, device="cpu"), DiffusionPipeline)
    plain = imagegen.generate("a red circle", model=run, device="cpu", num_steps=2)
    with caplog.at_level(logging.WARNING, logger="imagegen.generate"):
        truncated = imagegen.generate("a red circle", model=run, device="cpu", num_steps=2, truncation=0.5)
    assert np.array_equal(_array(plain[0]), _array(truncated[0]))
    assert "truncation applies only to a GAN" in caplog.text


def test_the_demo_scores_an_existing_gan_run_without_training(run_dir, capsys, monkeypatch):
    import json

    from imagegen.cli import demo

    monkeypatch.setattr(
        "imagegen.training.trainer.train", lambda *a, **k: pytest.fail("--model must not train")
    )
    assert demo.main(["--model", str(run_dir)]) == 0
    result = json.loads((run_dir / "demo.json").read_text())
    assert result["objective"] == "gan" and result["samples"] == 96 and "guidance_scale" not in result
    assert f"right color {100 * result['color_accuracy']:.1f}%" in capsys.readouterr().out


def test_the_demo_names_a_missing_model(tmp_path, capsys):
    from imagegen.cli import demo

    assert demo.main(["--model", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err

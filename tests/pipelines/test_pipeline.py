"""`imagegen.generate` / `load_pipeline` / `python -m imagegen.generate` on a tiny trained run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import imagegen
from imagegen.config import load_config

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny-test.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from imagegen.training.trainer import train

    root = tmp_path_factory.mktemp("pipeline")
    cfg = load_config(
        TINY,
        [
            f"train.output_dir={root / 'runs'}",
            f"text.cache_dir={root / 'cache'}",
            "train.run_name=tiny",
            "train.max_steps=3",
        ],
    )
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def pipe(run_dir):
    return imagegen.load_pipeline(run_dir, device="cpu")


def test_generate_returns_one_pil_image_per_prompt_and_sample(pipe):
    images = pipe(["a red circle", ""], num_images_per_prompt=2, num_steps=3, seed=1)
    assert len(images) == 4 and all(im.size == (16, 16) and im.mode == "RGB" for im in images)


def test_same_seed_same_images_other_seed_other_images(pipe):
    a = np.asarray(pipe("a blue square", num_steps=3, seed=5)[0])
    b = np.asarray(pipe("a blue square", num_steps=3, seed=5)[0])
    c = np.asarray(pipe("a blue square", num_steps=3, seed=6)[0])
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_negative_prompt_replaces_the_unconditional_branch(pipe):
    plain = np.asarray(pipe("a red circle", num_steps=3, seed=2)[0], dtype=float)
    negative = np.asarray(
        pipe("a red circle", num_steps=3, seed=2, negative_prompt="a blue square")[0], dtype=float
    )
    same_as_null = np.asarray(pipe("a red circle", num_steps=3, seed=2, negative_prompt="")[0], dtype=float)
    assert np.abs(plain - negative).max() > 0 and np.array_equal(plain, same_as_null)


def test_unset_sampling_arguments_follow_the_runs_sample_config(pipe, monkeypatch):
    """guidance_scale and thresholding left out mean the run's sample config, not a fixed 5.0."""

    def draw(**kwargs):
        return np.asarray(pipe("a red circle", num_steps=3, seed=3, **kwargs)[0], dtype=float)

    monkeypatch.setattr(pipe.cfg.sample, "guidance_scale", 1.0)
    monkeypatch.setattr(pipe.cfg.sample, "thresholding", "none")
    assert np.array_equal(draw(), draw(guidance_scale=1.0, thresholding="none"))
    assert not np.array_equal(draw(), draw(guidance_scale=5.0))
    monkeypatch.setattr(pipe.cfg.sample, "guidance_scale", 5.0)
    assert np.array_equal(draw(), draw(guidance_scale=5.0, thresholding="none"))
    with pytest.raises(ValueError, match="thresholding"):
        draw(thresholding="soft")


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"prompt": []}, "prompt"),
        ({"prompt": ["a red circle", 3]}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "x", "num_images_per_prompt": -1}, "num_images_per_prompt"),
        ({"prompt": "x", "num_images_per_prompt": 0}, "num_images_per_prompt"),
        ({"prompt": "x", "seed": -3}, "seed"),
        ({"prompt": "x", "seed": 1.5}, "seed"),
        ({"prompt": "x", "seed": "0"}, "seed"),
        ({"prompt": "x", "guidance_scale": math.nan}, "guidance_scale"),
        ({"prompt": "x", "guidance_scale": -1.0}, "guidance_scale"),
        ({"prompt": "x", "num_steps": 0}, "num_steps"),
        ({"prompt": "x", "sampler": "euler_magic"}, "sampler"),
        ({"prompt": ["a", "b"], "negative_prompt": ["n1", "n2", "n3"]}, "negative_prompt"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(run_dir, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        imagegen.generate(model=run_dir, device="cpu", **kwargs)


def test_latest_is_the_newest_run_and_says_which_once(run_dir, monkeypatch, caplog):
    from imagegen.utils import runs

    monkeypatch.setattr(runs, "_SAID", set())
    monkeypatch.chdir(run_dir.parent.parent)  # holds runs/tiny
    for _ in range(2):
        images = imagegen.generate("a green star", num_steps=2, device="cpu", model="latest")
    assert len(images) == 1 and images[0].size == (16, 16)  # the tiny run, not the bundled 32 px model
    said = [r.getMessage() for r in caplog.records if "newest run" in r.getMessage()]
    assert len(said) == 1 and "tiny" in said[0] and 'model="latest"' in said[0]


def test_latest_with_no_run_is_a_clear_error_naming_the_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match='model="latest": no trained run under runs'):
        imagegen.generate("a red circle", model="latest")
    with pytest.raises(FileNotFoundError, match='model="latest"'):
        imagegen.load_pipeline("latest")


def test_a_newer_run_does_not_change_what_no_model_means(run_dir, monkeypatch):
    """The default is the bundled model even where runs/ holds a trained run."""
    from imagegen.utils.runs import BUNDLED_MODEL_DIR

    monkeypatch.chdir(run_dir.parent.parent)
    assert imagegen.load_pipeline(device="cpu").checkpoint == BUNDLED_MODEL_DIR


def test_cli_writes_a_png_and_a_grid(run_dir, tmp_path, capsys):
    from PIL import Image

    from imagegen.cli.generate import main

    assert (
        main(
            [
                "a red circle above a blue square",
                "--model",
                str(run_dir),
                "--out",
                str(tmp_path / "x.png"),
                "--steps",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "x.png").size == (16, 16)
    assert (
        main(
            [
                "a red circle",
                "two blue squares",
                "--num-images",
                "3",
                "--model",
                str(run_dir),
                "--out",
                str(tmp_path / "grid.png"),
                "--steps",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    grid = Image.open(tmp_path / "grid.png")
    assert grid.width > 3 * 16 and grid.height > 2 * 16
    assert main(["x", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "y.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_trained_runs_weights_record_what_they_predict(run_dir, pipe):
    import json

    from imagegen.utils.runs import latest_checkpoint

    saved = json.loads((latest_checkpoint(run_dir) / "ema" / "model" / "config.json").read_text())
    assert saved["prediction_type"] == pipe.cfg.diffusion.prediction == pipe.model.config.prediction_type


def test_importing_the_generate_module_keeps_imagegen_generate_a_function_call(monkeypatch):
    """`import imagegen.generate` binds the module over the lazy function; it forwards calls."""
    import importlib

    import imagegen.pipelines

    module = importlib.import_module("imagegen.generate")
    calls = []
    monkeypatch.setattr(
        imagegen.pipelines, "generate", lambda *args, **kwargs: calls.append((args, kwargs)) or "ok"
    )
    assert imagegen.generate is module
    assert imagegen.generate("a red circle", guidance_scale=5.0) == "ok"
    assert calls == [(("a red circle",), {"guidance_scale": 5.0})]

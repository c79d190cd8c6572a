"""`python -m imagegen.eval`: diffusion and GAN runs through load_pipeline, existing images, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagegen.cli.eval import main
from imagegen.config import load_config
from imagegen.data.prompts import write_prompt_suites
from imagegen.evaluation.fd import render_prompt_spec
from imagegen.evaluation.runner import load_records

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _tiny_run(root: Path, config: str, name: str) -> Path:
    from imagegen.training.trainer import train

    cfg = load_config(
        CONFIGS / config,
        [
            f"train.output_dir={root / 'runs'}",
            f"text.cache_dir={root / 'cache'}",
            f"train.run_name={name}",
            "train.max_steps=2",
        ],
    )
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-cli")
    return {
        "diffusion": _tiny_run(root, "tiny-test.yaml", "diffusion"),
        "gan": _tiny_run(root, "tiny-gan-test.yaml", "gan"),
    }


def test_diffusion_run_on_a_generated_suite_writes_metrics_table_grids_and_images(runs, tmp_path, capsys):
    out = tmp_path / "eval"
    args = "--suite single --suite counting --per-suite 3 --images-per-prompt 2 --steps 2 --guidance-scale 3"
    code = main(
        [*args.split(), "--thresholding", "none", "--model", str(runs["diffusion"]), "--out", str(out)]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["categories"]) == {"single", "counting"}
    assert metrics["overall"]["samples"] == 12 and metrics["overall"]["categories"] == 2
    assert metrics["sampling"] == {
        "guidance_scale": 3.0,
        "num_steps": 2,
        "thresholding": "none",
        "images_per_prompt": 2,
        "seed": 0,
        "batch_size": 64,
    }
    assert metrics["model"]["objective"] == "diffusion" and metrics["model"]["step"] == 2
    assert len(metrics["model"]["ema_weights_sha256"]) == 16
    assert sorted(p.name for p in (out / "grids").iterdir()) == ["counting.png", "single.png"]
    assert len(list((out / "images" / "counting").glob("*.png"))) == 6
    assert len((out / "samples.jsonl").read_text().splitlines()) == 12
    assert "| single |" in capsys.readouterr().out


def test_gan_run_takes_truncation_and_a_prompt_file(runs, tmp_path):
    paths = write_prompt_suites(tmp_path / "prompts", per_suite=2)
    out = tmp_path / "eval"
    args = ["--model", str(runs["gan"]), "--prompts", str(paths["relation"]), "--out", str(out)]
    code = main([*args, *"--images-per-prompt 1 --truncation 0.5 --categories kind --device cpu".split()])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["objective"] == "gan" and metrics["sampling"]["truncation"] == 0.5
    assert list(metrics["categories"]) == ["relation"]


def test_existing_images_are_scored_like_generated_ones(tmp_path):
    paths = write_prompt_suites(tmp_path / "prompts", seed=4, per_suite=3)
    records = load_records([paths["single"], paths["list"]])
    images = tmp_path / "other-system"
    for record in records:  # a perfect "system": renders of the specs, two samples per prompt
        for sample in range(2):
            pixels = render_prompt_spec(record.spec, np.random.default_rng([record.line, sample]), 48)
            path = images / record.source / f"{record.line:05d}_{sample}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    out = tmp_path / "eval"
    prompts = ["--prompts", str(paths["single"]), "--prompts", str(paths["list"])]
    assert main(["--images", str(images), *prompts, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["pass_rate"] == 1.0 and metrics["overall"]["samples"] == 12
    assert not (out / "images").exists()  # the images are not copied


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "no/such/run", "--suite", "single"], "does not exist"),
        (["--images", "no/such/folder", "--suite", "single"], "does not exist"),
        (["--images", ".", "--suite", "single", "--fd"], "--fd"),
        (["--images", ".", "--suite", "shapes"], "unknown suite"),
        (["--images", ".", "--suite", "heldout", "--exclude", "red-star"], "COLOR:SHAPE"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, extra, message):
    assert main([*extra, "--out", str(tmp_path / "eval")]) == 2
    assert message in capsys.readouterr().err


def test_truncation_for_a_diffusion_model_is_refused(runs, tmp_path, capsys):
    args = "--suite single --per-suite 1 --truncation 0.5 --device cpu".split()
    code = main([*args, "--model", str(runs["diffusion"]), "--out", str(tmp_path / "eval")])
    assert code == 2 and "truncation" in capsys.readouterr().err


def test_usage_errors_from_argparse(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--images", ".", "--out", str(tmp_path)])  # neither --prompts nor --suite
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["--images", ".", "--suite", "single", "--images-per-prompt", "0", "--out", str(tmp_path)])

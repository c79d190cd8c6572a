"""The smallest pieces of benchmarks/compare_gan_diffusion.py (never the full benchmark).

Fair configs, evaluation points over fake pipelines (a perfect renderer and a blank one),
network-evaluation counting with a CFG-like doubled batch, the speed probe, and the table and
plot writers on fake results, for a scored domain (Shapes) and an FD-only one (emoji).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from imagegen.evaluation.feature_net import FeatureNetTraining, get_feature_net
from imagegen.evaluation.runner import SamplingSettings

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("compare_gan_diffusion")
report = _load("gan_diffusion_report")


class FakeDiffusionPipe:
    """Renders the specs (or, `blank`, grey squares); calls `model` like CFG: batch x 2, once per step."""

    def __init__(self, records, blank=False):
        from tests.evaluation.test_runner import RenderingPipe

        self.render, self.blank = RenderingPipe(records), blank
        self.model = torch.nn.Linear(2, 2)

    def __call__(
        self,
        prompt,
        guidance_scale=5.0,
        num_steps=3,
        sampler=None,
        seed=0,
        negative_prompt=None,
        num_images_per_prompt=1,
    ):
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch = len(prompts) * num_images_per_prompt
        for _ in range(num_steps or 3):
            self.model(torch.zeros(2 * batch if guidance_scale != 1 else batch, 2))
        if not self.blank and all(p in self.render.specs for p in prompts):
            return self.render(prompts, seed=seed, num_images_per_prompt=num_images_per_prompt)
        return [Image.new("RGB", (32, 32), (128, 128, 128))] * batch


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    net = get_feature_net(
        "shapes", root / "nets", FeatureNetTraining(samples=400, epochs=2, width=8, feature_dim=8)
    )
    args = argparse.Namespace(domain="shapes", out=str(root / "out"), emoji_root="")
    return bench.Domain(args, net)


def test_gan_config_gets_the_diffusion_data_and_encoder(tmp_path):
    gan = tmp_path / "gan.yaml"
    gan.write_text((REPO / "configs" / "tiny-gan-test.yaml").read_text().replace("length: 256", "length: 99"))
    args = bench.build_parser().parse_args(
        [
            "--diffusion-config",
            str(REPO / "configs" / "tiny-test.yaml"),
            "--gan-config",
            str(gan),
            "--exclude-heldout",
        ]
    )
    configs = bench.fair_configs(args)
    assert configs["gan"].data == configs["diffusion"].data and configs["gan"].data.length == 256
    assert configs["gan"].text == configs["diffusion"].text
    assert ["red", "star"] in configs["gan"].data.exclude
    args.set = ["data.resolution=32"]  # the tiny U-Net and GAN presets are 16 px
    with pytest.raises(ValueError, match="resolution mismatch"):
        bench.fair_configs(args)


def test_evaluation_point_scores_and_measures_fd_against_matching_renders(domain):
    records = domain.records(2)
    assert {r.category for r in records} == {
        "single",
        "counting",
        "relation",
        "list",
        "color_binding",
        "heldout",
    }
    good = bench.evaluate_point(FakeDiffusionPipe(records), domain, records, 2, SamplingSettings(), 64)
    bad = bench.evaluate_point(
        FakeDiffusionPipe(records, blank=True), domain, records, 2, SamplingSettings(), 64
    )
    assert good["pass_rate"] == 1.0 and good["samples"] == 24 and good["fd_floor"] > 0
    assert bad["pass_rate"] == 0.0 and bad["fd"] > 10 * good["fd"]
    assert json.dumps(good)  # JSON-able


def test_network_evaluations_count_the_guided_batch_twice():
    pipe = FakeDiffusionPipe([])
    assert bench.network_evaluations_per_image(pipe, SamplingSettings(num_steps=5)) == 10
    assert bench.network_evaluations_per_image(pipe, SamplingSettings(num_steps=5, guidance_scale=1.0)) == 5
    assert set(bench.sampling_networks(pipe)) == {"model"}


def test_a_network_reachable_under_two_names_is_counted_once():
    """DiffusionPipeline keeps `model` and the `denoiser` it samples with (the same module on CPU)."""
    pipe = FakeDiffusionPipe([])
    pipe.denoiser = pipe.model
    assert bench.network_evaluations_per_image(pipe, SamplingSettings(num_steps=5)) == 10
    assert len(bench.sampling_networks(pipe)) == 1


def test_sampling_speed_uses_the_batch_cap_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("on a GPU the largest batch is searched, not capped")
    speed = bench.sampling_speed(FakeDiffusionPipe([]), SamplingSettings(), reps=2, max_batch=4)
    assert (
        speed["max_batch"] == 4 and speed["ms_per_image_b1"] > 0 and speed["images_per_second_max_batch"] > 0
    )


def _point(rate, fd, **settings):
    categories = None if rate is None else {"single": rate, "relation": rate / 2}
    return {
        "settings": settings,
        "pass_rate": rate,
        "ci95": None if rate is None else [rate * 0.8, rate],
        "categories": categories or {},
        "fd": fd,
        "kd": fd / 10,
        "fd_floor": 0.1,
        "samples": 12,
        "seconds_per_image": 0.01,
    }


def fake_results(scored: bool = True) -> dict:
    rate = (lambda r: r) if scored else (lambda r: None)
    model = {
        "sampling_params_m": 2.1,
        "trained_params_m": 2.1,
        "nfe_per_image": 50.0,
        "training": {"steps": 600, "train_images_per_second": 32.0},
        "speed": {"ms_per_image_b1": 900.0, "max_batch": 64, "images_per_second_max_batch": 3.0},
    }
    diffusion = {
        **model,
        "curve": [{"train_seconds": 60.0 * m, **_point(rate(0.1 * m), 3.0 / m)} for m in (1, 2, 3)],
        "final": _point(rate(0.4), 1.2),
        "sweep": [
            _point(rate(0.1 * w), 1 + w / 5, thresholding=t, guidance_scale=w)
            for t in ("dynamic", "none")
            for w in (1, 5, 10)
        ],
        "steps": [
            {**_point(rate(0.3), 1.5, sampler=s, num_steps=n), "nfe_per_image": 2.0 * n}
            for s in ("ddim", "dpmpp_2m")
            for n in (10, 25)
        ],
    }
    gan = {
        **model,
        "nfe_per_image": 1.0,
        "curve": diffusion["curve"],
        "final": _point(rate(0.2), 2.0),
        "sweep": [_point(rate(0.2), 2.0 + t, truncation=t) for t in (0.5, 1.0, 4.0)],
        "steps": [],
    }
    return {
        "domain": "shapes" if scored else "emoji",
        "device": "cpu",
        "feature_net": {"name": "FD-shapes" if scored else "FD-emoji"},
        "models": {"diffusion": diffusion, "gan": gan, "broken": {"error": "training failed: x"}},
    }


@pytest.mark.parametrize("scored", [True, False], ids=["shapes", "emoji"])
def test_report_writes_tables_and_titled_plots(tmp_path, capsys, scored):
    paths = report.write_report(fake_results(scored), tmp_path)
    table = paths["table"].read_text()
    assert table.count("| diffusion |") == 2 and table.count("| gan |") == 2 and "broken" not in table
    assert ("| diffusion | 40.0 | 20.0 | 40.0 | 1.200 (0.100) |" in table) == scored
    assert "| guidance_scale=5, thresholding=dynamic |" not in table  # settings are listed in order given
    assert "| thresholding=dynamic, guidance_scale=5 |" in table and "| truncation=0.5 |" in table
    assert "| dpmpp_2m | 25 |" in table and "| 64.0 |" not in table
    for key in ("curve", "tradeoff", "steps"):
        with Image.open(paths[key]) as image:
            assert image.width >= 600 and image.height >= 400
    assert json.loads(paths["json"].read_text())["models"]["gan"]["nfe_per_image"] == 1.0

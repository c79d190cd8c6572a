"""The evaluation runner: records, pipeline calls, pass rates with Wilson intervals, outputs, re-scoring.

A fake pipeline renders each prompt's spec with the Shapes renderer (what a perfect model
draws), or, for chosen scene kinds, the same scene with the first object's colour changed (what
a model that ignores colour draws). The expected pass rates are therefore known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagegen.data.prompts import COLORS, write_prompt_suites
from imagegen.evaluation import (
    SamplingSettings,
    evaluate_folder,
    evaluate_pipeline,
    load_records,
    summarize,
    wilson_interval,
    write_outputs,
)
from imagegen.evaluation.fd import render_prompt_spec
from imagegen.evaluation.runner import SampleResult, call_pipeline, find_images, generate


class RenderingPipe:
    """pipe(prompts, ...) -> renders of the prompts' specs; kinds in `wrong` get a wrong colour."""

    def __init__(self, records, wrong=(), resolution=32):
        self.specs = {r.prompt: r.spec for r in records}
        self.wrong, self.resolution, self.calls = set(wrong), resolution, []

    def __call__(
        self,
        prompt,
        guidance_scale=5.0,
        num_steps=None,
        sampler=None,
        seed=0,
        negative_prompt=None,
        num_images_per_prompt=1,
    ):
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        self.calls.append(
            {
                "prompts": prompts,
                "seed": seed,
                "guidance_scale": guidance_scale,
                "num_steps": num_steps,
                "n": num_images_per_prompt,
            }
        )
        images = []
        for i, text in enumerate(prompts):
            spec = self.specs[text]
            if spec["kind"] in self.wrong:
                used = {obj["color"] for obj in spec["objects"]}
                other = next(c for c in COLORS if c not in used)
                spec = {**spec, "objects": [{**spec["objects"][0], "color": other}, *spec["objects"][1:]]}
            for k in range(num_images_per_prompt):
                rng = np.random.default_rng([seed, i, k])
                images.append(Image.fromarray(render_prompt_spec(spec, rng, self.resolution)))
        return images


@pytest.fixture(scope="module")
def suites(tmp_path_factory) -> dict[str, Path]:
    return write_prompt_suites(tmp_path_factory.mktemp("prompts"), seed=3, per_suite=6)


@pytest.fixture(scope="module")
def short_relation(suites, tmp_path_factory) -> Path:
    """relation.jsonl cut to its first 2 prompts, so that categories have unequal sizes."""
    path = tmp_path_factory.mktemp("short") / "relation.jsonl"
    path.write_text("".join(suites["relation"].read_text().splitlines(keepends=True)[:2]))
    return path


def test_wilson_interval_matches_reference_values_and_contains_the_estimate():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_interval(300, 1000), wilson_interval(3, 10)
    assert narrow[0] < 0.3 < narrow[1] and narrow[1] - narrow[0] < wide[1] - wide[0]


def test_overall_is_the_mean_over_categories_not_the_pooled_rate(suites, short_relation):
    records = load_records([suites["single"], short_relation])
    pipe = RenderingPipe(records, wrong={"relation"})
    evaluation = evaluate_pipeline(pipe, records, images_per_prompt=2, batch_size=4)
    metrics = evaluation.metrics
    assert metrics["categories"]["single"]["pass_rate"] == 1.0
    assert (
        metrics["categories"]["single"]["samples"] == 12 and metrics["categories"]["single"]["prompts"] == 6
    )
    assert metrics["categories"]["relation"]["pass_rate"] == 0.0
    assert metrics["categories"]["relation"]["samples"] == 4
    assert metrics["overall"]["pass_rate"] == pytest.approx(0.5)  # pooled would be 12 / 16
    low, high = metrics["overall"]["ci95"]
    assert low < 0.5 < high
    assert all(r.reason for r in evaluation.results if r.category == "relation")  # failures explained


def test_categories_by_kind_and_by_explicit_field(suites, tmp_path):
    by_kind = load_records([suites["color_binding"]], category_by="kind")
    assert {r.category for r in by_kind} == {"list"}
    assert {r.category for r in load_records([suites["color_binding"]])} == {"color_binding"}
    rows = [json.loads(line) for line in suites["single"].read_text().splitlines()[:2]]
    rows[0]["category"] = "mine"
    path = tmp_path / "custom.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.category for r in load_records([path])] == ["mine", "custom"]
    with pytest.raises(ValueError, match="category_by"):
        load_records([path], category_by="colour")
    with pytest.raises(ValueError, match="distinct names"):
        load_records([suites["single"], tmp_path / "x" / "single.jsonl"])


def test_written_images_rescore_to_the_same_metrics(suites, tmp_path):
    records = load_records([suites["single"], suites["counting"]])
    pipe = RenderingPipe(records, wrong={"counting"})
    evaluation = evaluate_pipeline(
        pipe, records, images_per_prompt=2, settings=SamplingSettings(guidance_scale=3.0)
    )
    written = write_outputs(evaluation, tmp_path / "eval")
    saved = json.loads(written["metrics"].read_text())
    assert saved["sampling"]["guidance_scale"] == 3.0 and saved["sampling"]["images_per_prompt"] == 2
    assert (tmp_path / "eval" / "images" / "counting" / "00005_1.png").is_file()
    assert {Path(p).name for p in saved["grids"].values()} == {"single.png", "counting.png"}
    assert all(Image.open(p).width > 96 for p in saved["grids"].values())
    assert "| single | 100.0 |" in written["table"].read_text()

    rescored = evaluate_folder(tmp_path / "eval" / "images", records)
    assert rescored.metrics["categories"] == saved["categories"]
    assert [r.passed for r in rescored.results] == [r.passed for r in evaluation.results]


def test_folder_of_one_prompt_file_missing_images_and_no_images(suites, tmp_path):
    records = load_records([suites["single"]])
    folder = tmp_path / "other-system"
    folder.mkdir()
    pipe = RenderingPipe(records)
    for record in records[:4]:  # prompts 4 and 5 have no images
        pipe([record.prompt], num_images_per_prompt=1)[0].save(folder / f"{record.line:05d}_0.png")
    (folder / "notes.txt").write_text("ignored")
    evaluation = evaluate_folder(folder, records)
    assert evaluation.metrics["prompts_without_images"] == 2
    single = evaluation.metrics["categories"]["single"]
    assert (single["pass_rate"], single["passed"], single["samples"], single["prompts"]) == (1.0, 4, 4, 4)
    assert single["ci95"] == list(wilson_interval(4, 4))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        find_images(empty, records)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images(tmp_path / "absent", records)


def test_generate_chunks_prompts_and_seeds_each_chunk(suites):
    records = load_records([suites["single"]])
    pipe = RenderingPipe(records)
    images = generate(pipe, [r.prompt for r in records], images_per_prompt=2, seed=10, batch_size=4)
    assert [len(s) for s in images] == [2] * 6
    assert [len(c["prompts"]) for c in pipe.calls] == [2, 2, 2] and [c["seed"] for c in pipe.calls] == [
        10,
        11,
        12,
    ]
    again = generate(RenderingPipe(records), [r.prompt for r in records], 2, seed=10, batch_size=4)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for s, t in zip(images, again) for a, b in zip(s, t)
    )


def test_generate_shows_a_bar_counting_images(suites, capsys):
    records = load_records([suites["single"]])
    generate(RenderingPipe(records), [r.prompt for r in records], images_per_prompt=2, seed=10, batch_size=4)
    bar = capsys.readouterr().err
    assert "eval: sampling" in bar and "12/12" in bar and "img" in bar


def test_call_pipeline_passes_only_given_settings_and_restores_thresholding(suites):
    records = load_records([suites["single"]])
    pipe = RenderingPipe(records)
    call_pipeline(pipe, [records[0].prompt], SamplingSettings(num_steps=7), seed=1)
    assert pipe.calls[-1]["num_steps"] == 7 and pipe.calls[-1]["guidance_scale"] == 5.0  # default kept
    with pytest.raises(ValueError, match="truncation"):
        call_pipeline(pipe, [records[0].prompt], SamplingSettings(truncation=0.5), seed=1)
    with pytest.raises(ValueError, match="thresholding"):
        call_pipeline(pipe, [records[0].prompt], SamplingSettings(thresholding="none"), seed=1)

    class Sample:
        thresholding = "dynamic"

    seen = []

    class ConfiguredPipe:  # like DiffusionPipeline: thresholding lives in cfg.sample
        cfg = type("Cfg", (), {"sample": Sample()})()

        def __call__(self, prompt, seed=0, num_images_per_prompt=1):
            seen.append(self.cfg.sample.thresholding)
            return [Image.new("RGB", (8, 8))] * (len(prompt) * num_images_per_prompt)

    configured = ConfiguredPipe()
    call_pipeline(configured, ["a red circle"], SamplingSettings(thresholding="none"), seed=0)
    assert seen == ["none"] and configured.cfg.sample.thresholding == "dynamic"


def test_summarize_ignores_unscored_samples_and_counts_them():
    results = [
        SampleResult("00000_0.png", "a", "single", 0, 0, True, ""),
        SampleResult("00001_0.png", "b", "single", 1, 0, False, "expected 1 red circle, found 0"),
        SampleResult("00002_0.png", "c", "free", 2, 0, None, "no spec"),
    ]
    summary = summarize(results)
    assert summary["unscored_samples"] == 1 and list(summary["categories"]) == ["single"]
    assert summary["overall"]["pass_rate"] == 0.5 and summary["overall"]["samples"] == 2

"""Evaluate a text-to-image pipeline, or a folder of images, on prompt files (GenEval-style).

Owns: reading prompt files into records with a category, calling any pipeline (duck-typed:
`pipe(prompts, seed=..., num_images_per_prompt=..., **settings) -> list[PIL.Image]`, as
`load_pipeline` returns for diffusion runs, cascades and GANs), scoring each image with the Shapes
scorer, per-category pass rates with Wilson 95 % intervals, the overall score as the *mean over
categories* (as GenEval reports it), and the outputs: metrics.json, metrics.md, samples.jsonl,
one labelled grid per category and the images themselves. Ghosh et al. 2023 (GenEval).

    records = load_records(["runs/prompts/single.jsonl", "runs/prompts/relation.jsonl"])
    settings = SamplingSettings(guidance_scale=5.0)
    evaluation = evaluate_pipeline(pipe, records, images_per_prompt=4, settings=settings)
    write_outputs(evaluation, "runs/eval/my-run")       # metrics.json, metrics.md, grids/, images/
    evaluation = evaluate_folder("other-system/images", records)   # images named 00012_3.png

Image names: `<prompt index, 5 digits>_<sample number>.png`, where the prompt index counts the
non-blank lines of its prompt file from 0; with several prompt files, each file's images sit in
a subfolder named after the file (`images/relation/00012_3.png`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from imagegen.data.prompts import load_prompt_file, write_prompt_suites
from imagegen.evaluation.scorer import score
from imagegen.utils.images import make_grid

CATEGORY_BY = ("suite", "kind")
IMAGE_RE = re.compile(r"^(\d+)_(\d+)\.(png|jpg|jpeg|webp|bmp)$", re.IGNORECASE)
Z_95 = 1.959964  # standard normal quantile for a two-sided 95 % interval


# ------------------------------------------------------------------------------------------------
# Prompts
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptRecord:
    """One prompt line: its text, spec (None = not scorable), category, file and index in the file."""

    prompt: str
    spec: dict[str, Any] | None
    category: str
    source: str  # the prompt file's stem ("relation" for relation.jsonl)
    line: int  # 0-based index among the file's non-blank lines


def load_records(paths: Sequence[str | Path], category_by: str = "suite") -> list[PromptRecord]:
    """Read prompt files; category = the line's "category" field, else the file's stem (a suite
    name for suite files) with `category_by="suite"`, or the spec's kind with `category_by="kind"`."""
    if category_by not in CATEGORY_BY:
        raise ValueError(f"category_by: {category_by!r}; allowed: {', '.join(CATEGORY_BY)}")
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError(
            f"prompt files must have distinct names (image folders are named after them): {stems}"
        )
    records = []
    for path, stem in zip(paths, stems):
        for line, row in enumerate(load_prompt_file(path)):
            spec = row.get("spec")
            if category_by == "kind":
                category = spec["kind"] if spec else "unscored"
            else:
                category = str(row.get("category") or stem)
            records.append(PromptRecord(row["prompt"], spec, category, stem, line))
    if not records:
        raise ValueError(f"no prompts in {', '.join(map(str, paths))}")
    return records


def suite_files(
    out_dir: str | Path, suites: Sequence[str], seed: int = 0, per_suite: int = 100, exclude: Sequence = ()
) -> list[Path]:
    """Write the grammar's prompt suites to out_dir (write_prompt_suites) and return the chosen
    ones' paths; "all" chooses every suite."""
    paths = write_prompt_suites(out_dir, seed=seed, per_suite=per_suite, exclude=exclude)
    chosen = list(paths) if "all" in suites else list(suites)
    unknown = [s for s in chosen if s not in paths]
    if unknown:
        raise ValueError(f"suite: unknown suite {unknown[0]!r}; allowed: all, {', '.join(paths)}")
    return [paths[s] for s in chosen]


# ------------------------------------------------------------------------------------------------
# Calling a pipeline
# ------------------------------------------------------------------------------------------------


@dataclass
class SamplingSettings:
    """Sampling arguments passed to the pipeline; None = the pipeline's own default (not passed)."""

    guidance_scale: float | None = None  # diffusion: classifier-free guidance weight w
    num_steps: int | None = None  # diffusion: sampler steps
    sampler: str | None = None  # diffusion: ddpm | ddim | dpmpp_2m | unipc
    thresholding: str | None = None  # diffusion: dynamic | static | none
    truncation: float | None = None  # GAN: |z_i| <= truncation
    negative_prompt: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _accepts(pipe: Callable, name: str) -> bool:
    try:
        parameters = inspect.signature(pipe).parameters
    except (TypeError, ValueError):
        return True
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def call_pipeline(
    pipe: Callable, prompts: list[str], settings: SamplingSettings, seed: int, images_per_prompt: int = 1
) -> list[Image.Image]:
    """pipe(prompts, seed, num_images_per_prompt, **settings); `thresholding` goes through the call
    when the pipeline takes it, else through its `cfg.sample.thresholding` (set for this call only)."""
    kwargs = settings.as_dict()
    mode = kwargs.pop("thresholding", None)
    for name in kwargs:
        if not _accepts(pipe, name):
            raise ValueError(f"{name}: {type(pipe).__name__} does not take this sampling setting")
    sample_cfg = getattr(getattr(pipe, "cfg", None), "sample", None)
    if mode is None or _accepts(pipe, "thresholding"):
        kwargs.update({"thresholding": mode} if mode is not None else {})
        return pipe(prompts, seed=seed, num_images_per_prompt=images_per_prompt, **kwargs)
    if sample_cfg is None or not hasattr(sample_cfg, "thresholding"):
        raise ValueError(f"thresholding: {type(pipe).__name__} has no thresholding setting")
    saved, sample_cfg.thresholding = sample_cfg.thresholding, mode
    try:
        return pipe(prompts, seed=seed, num_images_per_prompt=images_per_prompt, **kwargs)
    finally:
        sample_cfg.thresholding = saved


def generate(
    pipe: Callable,
    prompts: Sequence[str],
    images_per_prompt: int = 1,
    settings: SamplingSettings | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> list[list[Image.Image]]:
    """images[i][k]: sample k of prompt i. Prompts go in chunks of about batch_size images; chunk c
    uses seed + c, so results are reproducible for a given (seed, batch_size, images_per_prompt)."""
    settings = settings or SamplingSettings()
    per_call = max(1, batch_size // images_per_prompt)
    images: list[list[Image.Image]] = []
    bar = tqdm(total=len(prompts) * images_per_prompt, desc="eval: sampling", unit="img", dynamic_ncols=True)
    for chunk, start in enumerate(range(0, len(prompts), per_call)):
        part = list(prompts[start : start + per_call])
        out = call_pipeline(pipe, part, settings, seed + chunk, images_per_prompt)
        if len(out) != len(part) * images_per_prompt:
            raise ValueError(f"pipeline returned {len(out)} images for {len(part)} x {images_per_prompt}")
        images += [out[i * images_per_prompt : (i + 1) * images_per_prompt] for i in range(len(part))]
        bar.update(len(out))
    bar.close()
    return images


def describe_pipeline(pipe: Any) -> dict[str, Any]:
    """Model identity for metrics.json: class, checkpoint, step, config name, weights hash."""
    info: dict[str, Any] = {"class": type(pipe).__name__}
    if callable(getattr(pipe, "describe", None)):
        info.update(pipe.describe())
    checkpoint = getattr(pipe, "checkpoint", None)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        info["checkpoint"] = str(checkpoint)
        trainer = checkpoint / "trainer.json"
        if trainer.is_file():
            info["step"] = json.loads(trainer.read_text()).get("step")
        weights = sorted((checkpoint / "ema").rglob("*.safetensors")) if (checkpoint / "ema").is_dir() else []
        if weights:
            digest = hashlib.sha256()
            for path in weights:
                digest.update(path.read_bytes())
            info["ema_weights_sha256"] = digest.hexdigest()[:16]
    cfg = getattr(pipe, "cfg", None)
    for key, value in (("config_name", "name"), ("stage", "stage")):
        if hasattr(cfg, value):
            info[key] = getattr(cfg, value)
    if hasattr(getattr(cfg, "train", None), "objective"):
        info["objective"] = cfg.train.objective
    return info


# ------------------------------------------------------------------------------------------------
# Scoring and statistics
# ------------------------------------------------------------------------------------------------


@dataclass
class SampleResult:
    file: str  # image path relative to the images folder
    prompt: str
    category: str
    line: int
    sample: int
    passed: bool | None  # None: the prompt has no spec
    reason: str


def image_name(record: PromptRecord, sample: int, multiple_sources: bool) -> str:
    name = f"{record.line:05d}_{sample}.png"
    return f"{record.source}/{name}" if multiple_sources else name


def score_images(
    records: Sequence[PromptRecord], images: Sequence[Sequence[Image.Image]]
) -> list[SampleResult]:
    """Score images[i][k] against records[i].spec with the Shapes scorer."""
    multiple = len({r.source for r in records}) > 1
    results = []
    for record, samples in zip(records, images):
        for k, image in enumerate(samples):
            result = score(image, record.spec) if record.spec is not None else None
            results.append(
                SampleResult(
                    image_name(record, k, multiple),
                    record.prompt,
                    record.category,
                    record.line,
                    k,
                    None if result is None else bool(result.passed),
                    "no spec" if result is None else ("" if result.passed else result.reason),
                )
            )
    return results


def wilson_interval(passed: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927); (0, 1) when total is 0."""
    if total <= 0:
        return 0.0, 1.0
    p = passed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(results: Sequence[SampleResult]) -> dict[str, Any]:
    """Per-category pass rates with Wilson intervals; overall = mean of the category rates.

    The overall interval is a normal approximation of that mean with Agresti-Coull-adjusted
    proportions per category, p~ = (k + 2) / (n + 4), so an all-pass category still has spread.
    """
    categories: dict[str, dict[str, Any]] = {}
    for result in results:
        if result.passed is None:
            continue
        entry = categories.setdefault(result.category, {"passed": 0, "samples": 0, "prompts": set()})
        entry["passed"] += int(result.passed)
        entry["samples"] += 1
        entry["prompts"].add(result.line)
    table, variance = {}, 0.0
    for name, entry in categories.items():
        k, n = entry["passed"], entry["samples"]
        low, high = wilson_interval(k, n)
        table[name] = {
            "pass_rate": k / n,
            "ci95": [low, high],
            "passed": k,
            "samples": n,
            "prompts": len(entry["prompts"]),
        }
        adjusted = (k + 2) / (n + 4)
        variance += adjusted * (1 - adjusted) / (n + 4)
    count = len(table)
    overall = None
    if count:
        mean = sum(v["pass_rate"] for v in table.values()) / count
        half = Z_95 * math.sqrt(variance) / count
        overall = {
            "pass_rate": mean,
            "ci95": [max(0.0, mean - half), min(1.0, mean + half)],
            "categories": count,
            "samples": sum(v["samples"] for v in table.values()),
            "passed": sum(v["passed"] for v in table.values()),
        }
    unscored = sum(1 for r in results if r.passed is None)
    return {"overall": overall, "categories": table, "unscored_samples": unscored}


# ------------------------------------------------------------------------------------------------
# Evaluations
# ------------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    records: list[PromptRecord]
    images: list[list[Image.Image]]  # images[i][k]: sample k of records[i]
    results: list[SampleResult]
    metrics: dict[str, Any] = field(default_factory=dict)

    def flat_images(self) -> list[Image.Image]:
        return [image for samples in self.images for image in samples]


def _finish(records, images, extra: dict[str, Any], fd: Callable | None) -> Evaluation:
    results = score_images(records, images)
    metrics = {
        "metric": "Shapes scorer pass rate (GenEval-style rules); overall = mean over categories",
        **summarize(results),
        **extra,
        "prompt_files": sorted({r.source for r in records}),
        "prompts": len(records),
    }
    evaluation = Evaluation(list(records), images, results, metrics)
    if fd is not None:
        metrics["fd"] = fd(evaluation)
    return evaluation


def evaluate_pipeline(
    pipe: Callable,
    records: Sequence[PromptRecord],
    images_per_prompt: int = 4,
    settings: SamplingSettings | None = None,
    seed: int = 0,
    batch_size: int = 64,
    model: dict[str, Any] | None = None,
    fd: Callable[[Evaluation], dict[str, Any]] | None = None,
) -> Evaluation:
    """Generate images_per_prompt images per record, score them, summarize; `fd(evaluation)` (if
    given) adds a distribution metric under metrics["fd"]."""
    settings = settings or SamplingSettings()
    started = time.perf_counter()
    images = generate(pipe, [r.prompt for r in records], images_per_prompt, settings, seed, batch_size)
    seconds = time.perf_counter() - started
    extra = {
        "model": model if model is not None else describe_pipeline(pipe),
        "sampling": {
            **settings.as_dict(),
            "images_per_prompt": images_per_prompt,
            "seed": seed,
            "batch_size": batch_size,
        },
        "generation_seconds": round(seconds, 2),
    }
    return _finish(records, images, extra, fd)


def find_images(images_dir: str | Path, records: Sequence[PromptRecord]) -> list[list[Path]]:
    """Files for each record: <dir>/<source>/<line>_<sample>.<ext>, or <dir>/<line>_<sample>.<ext>
    when there is one prompt file; sorted by sample number."""
    root = Path(images_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"images folder {root} does not exist")
    sources = sorted({r.source for r in records})
    index: dict[tuple[str, int], list[tuple[int, Path]]] = {}
    for source in sources:
        folder = root / source if (root / source).is_dir() or len(sources) > 1 else root
        for path in folder.iterdir() if folder.is_dir() else []:
            match = IMAGE_RE.match(path.name)
            if match and not path.resolve().is_relative_to(root.resolve()):
                raise ValueError(f"images_dir: {path} leads out of {root} (a symlink): refused")
            if match:
                index.setdefault((source, int(match.group(1))), []).append((int(match.group(2)), path))
    found = [[p for _, p in sorted(index.get((r.source, r.line), []))] for r in records]
    if not any(found):
        raise FileNotFoundError(f"no images named like 00012_3.png in {root} for these prompt files")
    return found


def _open_rgb(path: Path) -> Image.Image:
    """The image at `path` as RGB, or a ValueError naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's errors for a non-image or bad file
        raise ValueError(f"images_dir: {path} is not a readable image ({type(error).__name__})") from None


def evaluate_folder(images_dir: str | Path, records: Sequence[PromptRecord]) -> Evaluation:
    """Score existing images (any system's) named by prompt index and sample number."""
    paths = find_images(images_dir, records)
    kept = [(r, p) for r, p in zip(records, paths) if p]
    images = [[_open_rgb(path) for path in files] for _, files in kept]
    extra = {
        "model": {"images_dir": str(images_dir)},
        "prompts_without_images": len(records) - len(kept),
    }
    return _finish([r for r, _ in kept], images, extra, None)


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def markdown_table(metrics: dict[str, Any]) -> str:
    """| category | pass rate | 95 % CI | passed / samples | prompts |, then the overall mean."""
    lines = [
        "| category | pass rate (%) | 95 % CI (%) | passed / samples | prompts |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in metrics["categories"].items():
        low, high = row["ci95"]
        lines.append(
            f"| {name} | {100 * row['pass_rate']:.1f} | {100 * low:.1f}-{100 * high:.1f} "
            f"| {row['passed']} / {row['samples']} | {row['prompts']} |"
        )
    overall = metrics.get("overall")
    if overall:
        low, high = overall["ci95"]
        lines.append(
            f"| **overall (mean of {overall['categories']})** | **{100 * overall['pass_rate']:.1f}** "
            f"| {100 * low:.1f}-{100 * high:.1f} | {overall['passed']} / {overall['samples']} | |"
        )
    fd = metrics.get("fd")
    if fd:
        lines.append("")
        lines.append(
            f"{fd['metric']}: {fd['fd']:.3f} ({fd['samples']} vs {fd['reference_samples']} real; "
            f"feature net {fd['feature_net']['version']} {fd['feature_net']['sha256']}; not FID)"
        )
    return "\n".join(lines) + "\n"


def category_grid(evaluation: Evaluation, category: str, max_prompts: int = 16) -> Image.Image:
    """Rows = prompts of the category (first max_prompts), columns = samples; label 'ok' / 'FAIL'."""
    starts, position = [], 0
    for samples in evaluation.images:  # results are in record-major, sample-minor order
        starts.append(position)
        position += len(samples)
    images, labels, columns = [], [], 1
    chosen = [i for i, r in enumerate(evaluation.records) if r.category == category][:max_prompts]
    for i in chosen:
        columns = max(columns, len(evaluation.images[i]))
        for k, image in enumerate(evaluation.images[i]):
            passed = evaluation.results[starts[i] + k].passed
            mark = "" if passed is None else ("ok " if passed else "FAIL ")
            images.append(image)
            labels.append(mark + evaluation.records[i].prompt)
    return make_grid(images, labels=labels, columns=min(columns, 8))


def write_outputs(evaluation: Evaluation, out_dir: str | Path, save_images: bool = True) -> dict[str, Path]:
    """metrics.json, metrics.md, samples.jsonl, grids/<category>.png and (optionally) images/."""
    out = Path(out_dir)
    (out / "grids").mkdir(parents=True, exist_ok=True)
    written = {"metrics": out / "metrics.json", "table": out / "metrics.md", "samples": out / "samples.jsonl"}
    grids = {}
    for category in dict.fromkeys(r.category for r in evaluation.records):
        path = out / "grids" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', category)}.png"
        category_grid(evaluation, category).save(path)
        grids[category] = str(path)
    if save_images:
        for result, image in zip(evaluation.results, evaluation.flat_images()):
            path = out / "images" / result.file
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
        written["images"] = out / "images"
    evaluation.metrics["grids"] = grids
    written["metrics"].write_text(json.dumps(evaluation.metrics, indent=2) + "\n")
    written["table"].write_text(markdown_table(evaluation.metrics))
    written["samples"].write_text(
        "".join(json.dumps(dataclasses.asdict(r)) + "\n" for r in evaluation.results)
    )
    return written

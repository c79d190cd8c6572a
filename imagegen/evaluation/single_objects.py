"""The single-object probe: every (colour, shape) of the Shapes grammar asked for alone, then scored.

Owns the demo's quality summary and the learning-curve figures (benchmarks/learning_curve.py):
for the 48 prompts "a red circle" ... "a pink cross" (no background named, so the data draws
black, gray and white equally), the share of samples whose dominant object has the right colour,
the right shape, whose scene holds exactly one object, and how the detected backgrounds split.
Works on any pipeline `pipe(prompts, seed=...) -> list[PIL.Image]` (diffusion, GAN, cascade).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from imagegen.data.prompts import BACKGROUNDS, COLORS, SHAPES, article
from imagegen.evaluation.scorer import detect

Pipe = Callable[..., list]


def single_object_prompts() -> list[tuple[str, dict[str, Any]]]:
    """Every (colour, shape) as a one-object prompt with its spec (Shapes schema, docs/shapes.md)."""
    prompts = []
    for color in COLORS:
        for shape in SHAPES:
            spec = {
                "kind": "single",
                "background": None,
                "relation": None,
                "objects": [{"shape": shape, "color": color, "size": None, "count": 1}],
            }
            prompts.append((f"{article(color)} {color} {shape}", spec))
    return prompts


def judge_single_object(image: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """One sample against its one-object spec: right colour / shape of the dominant object, the
    number of detected objects, and the detected background name (None: no named background)."""
    background, detections = detect(image)
    wanted = spec["objects"][0]
    found = detections[0] if detections else None
    return {
        "right_color": found is not None and found.color == wanted["color"],
        "right_shape": found is not None and found.shape == wanted["shape"],
        "objects": len(detections),
        "background": background,
    }


def summarize_judgements(judgements: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rates over the judged samples: color/shape accuracy, one-object share, background shares."""
    n = len(judgements)
    if n == 0:
        raise ValueError("judgements: nothing to summarize (no samples)")
    backgrounds = Counter(str(j["background"]) for j in judgements)
    return {
        "samples": n,
        "color_accuracy": sum(j["right_color"] for j in judgements) / n,
        "shape_accuracy": sum(j["right_shape"] for j in judgements) / n,
        "one_object": sum(j["objects"] == 1 for j in judgements) / n,
        "backgrounds": {name: backgrounds.get(name, 0) / n for name in [*BACKGROUNDS, "None"]},
    }


def evaluate_single_objects(
    pipe: Pipe, seeds: Sequence[int] = (0, 1), batch: int = 48, **sampling: Any
) -> dict[str, Any]:
    """Sample each single-object prompt once per seed (`sampling` goes to `pipe`) and summarize.

    Returns `summarize_judgements`' rates plus `images` (PIL) and `labels` (the prompts), in order.
    """
    prompts = single_object_prompts()
    images, labels, judgements = [], [], []
    for seed in seeds:
        for start in range(0, len(prompts), batch):
            chunk = prompts[start : start + batch]
            out = pipe([p for p, _ in chunk], seed=seed * 1000 + start, **sampling)
            for image, (prompt, spec) in zip(out, chunk):
                judgements.append(judge_single_object(image, spec))
                images.append(image)
                labels.append(prompt)
    return {**summarize_judgements(judgements), "images": images, "labels": labels}


def describe(result: dict[str, Any]) -> str:
    """One line: 'color 95.8%, shape 3.1%, one object 40.6%, backgrounds black 10% gray 80% ...'."""
    shares = " ".join(f"{name} {100 * share:.0f}%" for name, share in result["backgrounds"].items())
    return (
        f"right color {100 * result['color_accuracy']:.1f}%, "
        f"right shape {100 * result['shape_accuracy']:.1f}%, "
        f"one object {100 * result['one_object']:.1f}%, backgrounds {shares}"
    )

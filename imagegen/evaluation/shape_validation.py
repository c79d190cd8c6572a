"""Validating the Shapes scorer on the held-out family of the randomised renderer.

Owns the figures of docs/evaluation.md's "held-out variation family" table: Shapes scenes drawn
by `shape_variations.render_variant_scene` with the **heldout** family (proportion bands and
rendering styles the shape net never saw in fitting) are scored against their own spec (full
truth and prompt-level), against the spec with one attribute changed, and single objects of
every grammar shape and every out-of-grammar kind give per-shape confusion matrices. Whether a
changed spec *should* fail is decided by the oracle (the rules on the true instances), as in
tests/evaluation/test_scorer.py.

    python -m imagegen.evaluation.shape_validation --scenes 1000 --per-label 200   # ~6 CPU min
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import numpy as np

from imagegen.data.prompts import BACKGROUNDS, COLORS, SHAPES, prompt_spec, sample_phrasing
from imagegen.evaluation.scorer import detect, detections_from_spec, score_detections
from imagegen.evaluation.shape_variations import OUT_OF_GRAMMAR, render_single, render_variant_scene

RESOLUTIONS = (32, 64, 128)
VALIDATION_SEED = 91_733  # + resolution; used by nothing else
FLIPPED = {"above": "below", "below": "above", "left of": "right of", "right of": "left of"}
ANSWERS: tuple[str, ...] = (*SHAPES, "none")
# fewest px (longer side) an out-of-grammar kind is drawn at: below it a hexagon is a circle
OTHER_MIN_SIDE_PX: dict[str, float] = {"pentagon": 12, "hexagon": 12, "ring": 10, "ell": 9, "tee": 9}


class Tally:
    """Hits and totals per named figure, and the reasons behind the misses."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()

    def add(self, name: str, hit: bool, reason: str = "") -> None:
        self.totals[name] += 1
        self.hits[name] += bool(hit)
        if not hit:
            self.misses[f"{name}: {reason}"] += 1

    def rate(self, name: str) -> float:
        return self.hits[name] / max(self.totals[name], 1)


def _with(spec: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    objects = [dict(obj) for obj in spec["objects"]]
    objects[index].update(changes)
    return {**spec, "objects": objects}


def changed_specs(spec: dict[str, Any], rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """The spec with one attribute changed: colour, shape, count, size, background, relation, binding."""
    objects, index = spec["objects"], int(rng.integers(len(spec["objects"])))
    obj = objects[index]
    count = obj["count"] + (1 if obj["count"] == 1 or rng.random() < 0.5 else -1)
    changed = {
        "color": _with(spec, index, color=str(rng.choice([c for c in COLORS if c != obj["color"]]))),
        "shape": _with(spec, index, shape=str(rng.choice([s for s in SHAPES if s != obj["shape"]]))),
        "count": _with(spec, index, count=count),
        "size": _with(spec, index, size="small" if obj["size"] == "large" else "large"),
        "background": {
            **spec,
            "background": str(rng.choice([b for b in BACKGROUNDS if b != spec["background"]])),
        },
    }
    if spec["relation"] is not None:
        changed["relation"] = {
            **spec,
            "relation": {**spec["relation"], "type": FLIPPED[spec["relation"]["type"]]},
        }
    first, second = objects[0], objects[min(1, len(objects) - 1)]
    if first["color"] != second["color"] and first["shape"] != second["shape"]:
        changed["binding"] = _with(_with(spec, 0, color=second["color"]), 1, color=first["color"])
    return changed


def scene_figures(resolution: int, scenes: int, family: str = "heldout") -> Tally:
    """Own-spec pass and one-attribute-changed pass (lower is better) on variant-drawn scenes."""
    from imagegen.data.shapes import ShapesDataset  # torch-importing: only where scenes are drawn

    dataset = ShapesDataset(resolution, seed=VALIDATION_SEED + resolution, length=scenes)
    rng = np.random.default_rng([VALIDATION_SEED, resolution])
    tally = Tally()
    for index in range(scenes):
        spec = dataset.spec(index)
        found = detect(render_variant_scene(spec, resolution, rng, family))
        prompt = prompt_spec(spec, sample_phrasing(rng, spec))
        for name, wanted in (("own spec (full truth)", spec), ("own spec (prompt)", prompt)):
            result = score_detections(*found, wanted)
            tally.add(name, result.passed, result.reason)
        truth = detections_from_spec(spec)
        for kind, changed in changed_specs(spec, rng).items():
            if not score_detections(*truth, changed).passed:  # the oracle says it must fail
                tally.add(f"changed {kind}", not score_detections(*found, changed).passed, "passed")
    return tally


def confusion(resolution: int, per_label: int, family: str = "heldout") -> dict[str, Counter[str]]:
    """label (grammar shape or out-of-grammar kind) -> Counter of the scorer's answers.

    One object per image (5 px to 0.8 of the side; out-of-grammar kinds from OTHER_MIN_SIDE_PX);
    the answer is the largest detection's shape, "none" for None, "missed" without a detection.
    """
    rng = np.random.default_rng([VALIDATION_SEED, 1, resolution])
    table: dict[str, Counter[str]] = {}
    for label in (*SHAPES, *OUT_OF_GRAMMAR):
        answers: Counter[str] = Counter()
        for _ in range(per_label):
            image = render_single(rng, label, resolution, family, OTHER_MIN_SIDE_PX.get(label, 5.0))
            detections = detect(image)[1]
            answers[(detections[0].shape or "none") if detections else "missed"] += 1
        table[label] = answers
    return table


def shape_recall(table: dict[str, Counter[str]]) -> float:
    """Share of grammar-shape objects named right, among those detected at all."""
    right = sum(table[shape][shape] for shape in SHAPES)
    return right / max(sum(sum(table[s].values()) - table[s]["missed"] for s in SHAPES), 1)


def other_named_rate(table: dict[str, Counter[str]]) -> float:
    """Share of detected out-of-grammar objects the scorer names as a grammar shape."""
    named = sum(table[kind][shape] for kind in OUT_OF_GRAMMAR for shape in SHAPES)
    return named / max(sum(sum(table[k].values()) - table[k]["missed"] for k in OUT_OF_GRAMMAR), 1)


def format_confusion(table: dict[str, Counter[str]], resolution: int) -> str:
    """Rows: drawn label; columns: the scorer's answer (counts)."""
    columns = (*ANSWERS, "missed")
    lines = [
        f"{resolution} px confusion (rows drawn, columns named)",
        f"{'':10s}" + "".join(f"{c:>9s}" for c in columns),
    ]
    lines += [
        f"{label:10s}" + "".join(f"{answers[c]:9d}" for c in columns) for label, answers in table.items()
    ]
    return "\n".join(lines)


def format_scene_figures(tallies: dict[int, Tally]) -> str:
    names = sorted(
        {name for tally in tallies.values() for name in tally.totals}, key=lambda n: (n[0] != "o", n)
    )
    lines = [f"{'figure (pass/reject %)':24s}" + "".join(f"{f'{r} px':>16s}" for r in tallies)]
    for name in names:
        cells = "".join(f"{100 * t.rate(name):9.2f} ({t.totals[name]:4d})" for t in tallies.values())
        lines.append(f"{name:24s}{cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Scorer figures on the held-out variation family")
    parser.add_argument("--scenes", type=int, default=1000, help="scenes per resolution")
    parser.add_argument("--per-label", type=int, default=200, help="single objects per label and resolution")
    parser.add_argument("--family", default="heldout", choices=("fit", "heldout"))
    args = parser.parse_args()
    tallies = {r: scene_figures(r, args.scenes, args.family) for r in RESOLUTIONS}
    print(format_scene_figures(tallies))
    print("own spec rows: pass %; 'changed' rows: reject % of the spec with one attribute changed")
    for resolution in RESOLUTIONS:
        table = confusion(resolution, args.per_label, args.family)
        print(format_confusion(table, resolution))
        print(
            f"shape recall {100 * shape_recall(table):.2f} %, out-of-grammar named as a grammar shape "
            f"{100 * other_named_rate(table):.2f} %"
        )
        for miss, count in tallies[resolution].misses.most_common(5):
            print(f"  miss x{count}: {miss}")


if __name__ == "__main__":
    main()

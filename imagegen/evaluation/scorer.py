"""The Shapes scorer: does an image show what its spec asks for?

Owns detection (image -> background name and coloured, shaped, boxed objects) and the rules
that check a Shapes spec (schema in docs/shapes.md) against detections, modelled on GenEval
(Ghosh et al. 2023): every requested object present in exactly its count, colour bound to shape,
relations from box centres with GenEval's dead zone, background and size when the prompt names
them. `segment` finds colour blobs, `shape_features` measures them and `shape_net` (a tiny CNN
fitted on a randomised renderer, numpy inference) names their shape or rejects it. Rules,
thresholds and validation figures: docs/evaluation.md.

    result = score(image, spec)      # image: uint8 [H, W, 3], PIL, or float [3, H, W] in [-1, 1]
    result.passed, result.reason     # False, "expected 1 red circle, found 0 (red: square)"
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imagegen.data.prompts import PLURALS, check_spec
from imagegen.evaluation.segment import Blob, segment
from imagegen.evaluation.shape_features import moments
from imagegen.evaluation.shape_model import load_shape_model
from imagegen.evaluation.shape_net import ShapeNet, load_shape_net

POSITION_DEAD_ZONE = 0.1  # GenEval: offsets shrink by 0.1 x (sum of both boxes' sides) per axis
POSITION_DOMINANCE = 0.5  # GenEval: the shrunk offset's share along the axis must exceed this
SIZE_FRACTION = {"small": 0.25, "large": 0.375}  # the grammar's box side / image side (data.shapes)
# the geometric mean of the two: the middle of the band between the words
SIZE_THRESHOLD = float(np.sqrt(SIZE_FRACTION["small"] * SIZE_FRACTION["large"]))
# a size word holds within this factor of its fraction: "small" up to 0.25 x 1.2 = 0.30 of the
# image side (and anything smaller), "large" from 0.375 / 1.2 = 0.3125 up; between is neither
SIZE_TOLERANCE = 1.2


@dataclass
class Detection:
    """One detected object; coordinates normalized to [0, 1] (x right, y down)."""

    color: str
    shape: str | None  # None: a palette-coloured blob whose shape matches no prototype
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    area: float  # coverage-weighted area / image area
    centre: tuple[float, float]  # box centre (x, y)
    size: str = ""  # "small", "large" or "medium" (neither) by the longer box side (`size_name`)
    shape_confidence: float = 1.0  # the shape net's probability of its verdict (shape_net)


@dataclass
class ScoreResult:
    """Verdict of one image against one spec; `checks` keeps the order they were made in."""

    passed: bool
    checks: dict[str, bool]
    detections: list[Detection]
    background: str | None
    reason: str  # the first failed check explained, or "ok"
    reasons: dict[str, str] = field(default_factory=dict)  # every failed check explained


def size_name(box: tuple[float, float, float, float]) -> str:
    """ "small", "large" or "medium" from the longer side of a normalized box (x0, y0, x1, y1).

    The longer side, so that a narrow rhombus is as large as its height. "small" up to
    SIZE_FRACTION["small"] x SIZE_TOLERANCE, "large" from SIZE_FRACTION["large"] / SIZE_TOLERANCE;
    in between (0.30-0.3125) neither word holds and a named size fails.
    """
    side = max(box[2] - box[0], box[3] - box[1], 0.0)
    if side <= SIZE_FRACTION["small"] * SIZE_TOLERANCE:
        return "small"
    return "large" if side >= SIZE_FRACTION["large"] / SIZE_TOLERANCE else "medium"


def _detections(blobs: list[Blob], height: int, width: int, net: ShapeNet) -> list[Detection]:
    """Name every blob's shape (one batched net call) and turn crop-pixel boxes into normalized ones."""
    stats = [moments(blob.alpha) for blob in blobs]
    verdicts = net.classify([blob.alpha for blob in blobs], stats)
    detections = []
    for blob, moment, (shape, confidence) in zip(blobs, stats, verdicts):
        x0, y0, x1, y1 = net.box(moment, shape)
        # crop pixel centres sit at integer coordinates; image edges are at -0.5 and size - 0.5
        left, top = blob.left + 0.5, blob.top + 0.5
        box = ((x0 + left) / width, (y0 + top) / height, (x1 + left) / width, (y1 + top) / height)
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        area = moment.area / (height * width)
        detections.append(Detection(blob.color, shape, box, area, centre, size_name(box), confidence))
    return detections


def detect(image: Any) -> tuple[str | None, list[Detection]]:
    """image (uint8 [H, W, 3], PIL, or float [3, H, W] in [-1, 1]) -> (background name, objects).

    The background is None when the border is no named background; objects are sorted by area,
    largest first, so `detections[0]` is the dominant object.
    """
    _, background, blobs, (height, width) = segment(image)
    detections = _detections(blobs, height, width, load_shape_net())
    return background, sorted(detections, key=lambda found: -found.area)


def relations_between(a: Detection, b: Detection) -> set[str]:
    """GenEval's relative position of a to b: the relations in RELATIONS that hold.

    offset = centre_a - centre_b, each axis shrunk towards 0 by POSITION_DEAD_ZONE x (side_a +
    side_b); "right of" when the shrunk x offset exceeds POSITION_DOMINANCE x |offset| (so, within
    60 degrees of the axis), and likewise for "left of", "below" and "above" (y points down).
    """
    offset = np.subtract(a.centre, b.centre)
    sides = np.array([a.box[2] - a.box[0] + b.box[2] - b.box[0], a.box[3] - a.box[1] + b.box[3] - b.box[1]])
    shrunk = np.maximum(np.abs(offset) - POSITION_DEAD_ZONE * sides, 0.0) * np.sign(offset)
    norm = float(np.linalg.norm(offset))
    if np.all(np.abs(shrunk) < 1e-3) or norm == 0.0:
        return set()
    share_x, share_y = shrunk / norm
    names = {
        "left of": share_x < -POSITION_DOMINANCE,
        "right of": share_x > POSITION_DOMINANCE,
        "above": share_y < -POSITION_DOMINANCE,
        "below": share_y > POSITION_DOMINANCE,
    }
    return {name for name, holds in names.items() if holds}


def _describe(obj: dict[str, Any], count: int) -> str:
    """'1 red circle', '3 blue crosses'."""
    return f"{count} {obj['color']} {obj['shape'] if count == 1 else PLURALS[obj['shape']]}"


def _near_misses(obj: dict[str, Any], detections: list[Detection]) -> str:
    """What was found instead: same colour with other shapes, same shape in other colours."""
    colour = sorted(
        {
            found.shape or "unknown shape"
            for found in detections
            if found.color == obj["color"] and found.shape != obj["shape"]
        }
    )
    shape = sorted(
        {found.color for found in detections if found.shape == obj["shape"] and found.color != obj["color"]}
    )
    parts = ([f"{obj['color']}: {', '.join(colour)}"] if colour else []) + (
        [f"{PLURALS[obj['shape']]}: {', '.join(shape)}"] if shape else []
    )
    return f" ({'; '.join(parts)})" if parts else ""


class _Checker:
    """Runs the checks in order, recording a verdict and, for failures, a reason."""

    def __init__(self) -> None:
        self.checks: dict[str, bool] = {}
        self.reasons: dict[str, str] = {}

    def record(self, name: str, passed: bool, reason: str) -> bool:
        self.checks[name] = bool(passed)
        if not passed:
            self.reasons[name] = reason
        return bool(passed)


def _check_objects(
    checker: _Checker, spec: dict[str, Any], detections: list[Detection]
) -> list[list[Detection]]:
    """Exact counts per (colour, shape) and named sizes; returns each object's matches ([] if failed)."""
    wanted: Counter[tuple[str, str]] = Counter()
    for obj in spec["objects"]:
        wanted[obj["color"], obj["shape"]] += obj["count"]
    matches = []
    for index, obj in enumerate(spec["objects"]):
        found = [match for match in detections if (match.color, match.shape) == (obj["color"], obj["shape"])]
        total = wanted[obj["color"], obj["shape"]]
        reason = f"expected {_describe(obj, total)}, found {len(found)}{_near_misses(obj, detections)}"
        ok = checker.record(f"objects[{index}]", len(found) == total, reason)
        matches.append(found if ok else [])
        if obj.get("size") is not None:
            sizes = sorted({match.size for match in found})
            checker.record(
                f"size[{index}]",
                ok and sizes == [obj["size"]],
                f"expected {obj['size']} {obj['color']} {obj['shape']}, found sizes {sizes}",
            )
    return matches


def _check_relation(checker: _Checker, spec: dict[str, Any], matches: list[list[Detection]]) -> None:
    """GenEval: every match of objects[a] must stand in the relation to every match of objects[b]."""
    relation = spec.get("relation")
    if relation is None:
        return
    kind, first, second = relation["type"], matches[relation["a"]], matches[relation["b"]]
    if not first or not second:
        checker.record("relation", False, f"cannot check '{kind}': an object of the relation is missing")
        return
    found = [relations_between(a, b) for a in first for b in second]
    holds = all(kind in names for names in found)
    checker.record(
        "relation",
        holds,
        f"expected objects[{relation['a']}] {kind} objects[{relation['b']}], "
        f"found {sorted(set().union(*found)) or 'no clear relation'}",
    )


def score_detections(
    background: str | None, detections: list[Detection], spec: dict[str, Any], closed_world: bool = False
) -> ScoreResult:
    """Check a spec against detections (from `detect`, or `detections_from_spec` for ground truth).

    Checks, in order: `background` (when named), `objects[i]` (exactly the requested number of
    that colour and shape; objects sharing a (colour, shape) pool their counts), `size[i]` (when
    named), `relation` (when present), and with `closed_world` also `extras` (no detection that
    no spec object asked for). Null spec fields are unconstrained. A malformed spec raises
    ValueError (`imagegen.data.prompts.check_spec`).
    """
    check_spec(spec)
    checker = _Checker()
    if spec.get("background") is not None:
        checker.record(
            "background",
            background == spec["background"],
            f"expected a {spec['background']} background, found {background}",
        )
    matches = _check_objects(checker, spec, detections)
    _check_relation(checker, spec, matches)
    if closed_world:
        asked = {(obj["color"], obj["shape"]) for obj in spec["objects"]}
        extra = [
            f"{found.color} {found.shape or 'unknown shape'}"
            for found in detections
            if (found.color, found.shape) not in asked
        ]
        checker.record("extras", not extra, f"unrequested objects: {', '.join(extra)}")
    passed = all(checker.checks.values())
    reason = "ok" if passed else next(iter(checker.reasons.values()))
    return ScoreResult(passed, checker.checks, detections, background, reason, checker.reasons)


def score(image: Any, spec: dict[str, Any], closed_world: bool = False) -> ScoreResult:
    """Detect objects in `image` and check `spec` against them (see `score_detections`)."""
    background, detections = detect(image)
    return score_detections(background, detections, spec, closed_world)


def single_object_accuracy(image: Any, spec: dict[str, Any]) -> tuple[bool, bool]:
    """(right colour, right shape) of the dominant (largest) detected object against objects[0]."""
    _, detections = detect(image)
    if not detections:
        return False, False
    wanted, found = spec["objects"][0], detections[0]
    return found.color == wanted["color"], found.shape == wanted["shape"]


def detections_from_spec(spec: dict[str, Any]) -> tuple[str, list[Detection]]:
    """Ground-truth detections of a full-truth spec (with `instances`): perfect perception.

    Scoring a spec against these is the oracle a scorer is validated against.
    """
    model = load_shape_model()
    detections = []
    for instance in spec["instances"]:
        x0, y0, x1, y1 = instance["box"]
        area = (x1 - x0) * (y1 - y0) * float(model.fill[model.shapes.index(instance["shape"])])
        detections.append(
            Detection(
                instance["color"],
                instance["shape"],
                (x0, y0, x1, y1),
                area,
                ((x0 + x1) / 2, (y0 + y1) / 2),
                instance["size"],
            )
        )
    return spec["background"], detections

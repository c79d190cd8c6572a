"""The Shapes dataset: procedural scenes of coloured shapes, rendered on the fly at any resolution.

Owns where objects sit (layout in normalized [0, 1] coordinates, so one scene is the same at
32, 64 and 128 px), how they are drawn (exact sub-pixel-centre coverage, box-averaged: an
antialiased area sample), and the `ShapesDataset` that pairs each index with a deterministic
scene. What a scene contains and how it is worded is `imagegen.data.prompts`; the grammar, the
`spec` schema and the colour table are in docs/shapes.md.

    dataset = ShapesDataset(resolution=32, seed=0, exclude=[("red", "star")])
    sample = dataset[7]   # {"image": float32 [3, 32, 32] in [-1, 1], "caption": str, "spec": dict}
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from imagegen.data.prompts import (
    BACKGROUNDS,
    COLORS,
    RELATIONS,
    SCENE_KINDS,
    SHAPES,
    SIZES,
    SceneOptions,
    caption_for,
    load_prompt_file,
    sample_content,
    sample_phrasing,
    scene_options,
    write_prompt_suites,
)
from imagegen.utils.images import from_uint8

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "RELATIONS",
    "SCENE_KINDS",
    "SHAPES",
    "SIZES",
    "SIZE_FRACTION",
    "ShapesDataset",
    "load_prompt_file",
    "render_scene",
    "sample_layout",
    "sample_scene",
    "write_prompt_suites",
]

SIZE_FRACTION: dict[str, float] = {"small": 0.25, "large": 0.375}  # box side / image side
BORDER_MARGIN = 0.04  # least gap between any box and the image border (1.3 px at 32 px)
OBJECT_GAP = 0.07  # least gap between two boxes along the axis that separates them (2.2 px at 32)
RELATION_MIN_OFFSET = 0.3  # least centre offset along a relation's axis (3x GenEval's 0.1 dead zone)
RELATION_MAX_SKEW = 0.4  # |off-axis centre offset| <= this * on-axis offset
MIN_RESOLUTION = 8
_CANDIDATES = (32, 128, 512)  # layouts drawn at once in each rejection round, before the grid
# sum over objects of (side + gap)^2 above which random placement rarely succeeds (<= 0.6 %):
# three objects with two large, or four with one large, go straight to the grid layout
_CROWDED = 0.45
# relation -> (axis of centre offset b - a, sign making it positive when the relation holds)
_RELATION_AXIS: dict[str, tuple[int, int]] = {
    "above": (1, 1),
    "below": (1, -1),
    "left of": (0, 1),
    "right of": (0, -1),
}


# --------------------------------------------------------------------------------------------
# Layout: centres in [0, 1]^2 (x right, y down)
# --------------------------------------------------------------------------------------------


def _separated(centres: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """centres [N, K, 2], sides [K] -> bool [N]: every pair of boxes is OBJECT_GAP apart."""
    ok = np.ones(centres.shape[0], dtype=bool)
    for i in range(len(sides)):
        for j in range(i + 1, len(sides)):
            distance = np.abs(centres[:, i] - centres[:, j])  # [N, 2]
            needed = (sides[i] + sides[j]) / 2 + OBJECT_GAP
            ok &= np.any(distance >= needed, axis=1)
    return ok


def _relation_holds(centres: np.ndarray, relation: dict[str, Any] | None) -> np.ndarray:
    """centres [N, K, 2] -> bool [N]: the relation holds with a clear margin and little skew."""
    if relation is None:
        return np.ones(centres.shape[0], dtype=bool)
    axis, sign = _RELATION_AXIS[relation["type"]]
    offset = centres[:, relation["b"]] - centres[:, relation["a"]]  # [N, 2]
    along, across = sign * offset[:, axis], np.abs(offset[:, 1 - axis])
    return (along >= RELATION_MIN_OFFSET) & (across <= RELATION_MAX_SKEW * along)


def _grid_centres(rng: np.random.Generator, sides: np.ndarray, relation: dict[str, Any] | None) -> np.ndarray:
    """Fallback for crowded scenes: one object per cell of a 2 x 2 grid, lightly jittered -> [K, 2]."""
    cell = (1 - 2 * BORDER_MARGIN) / 2
    if relation is None:
        cells = rng.permutation(4)[: len(sides)]
    else:  # a and b share a column (vertical relation) or a row, in the relation's order
        axis, sign = _RELATION_AXIS[relation["type"]]
        first, second = (0, 1) if sign > 0 else (1, 0)
        lane = int(rng.integers(2))
        if axis == 1:
            cells = np.array([first * 2 + lane, second * 2 + lane])  # cell = row * 2 + column
        else:
            cells = np.array([lane * 2 + first, lane * 2 + second])
    rows, cols = np.divmod(cells, 2)
    slack = (cell - sides - OBJECT_GAP) / 4  # half the free room, so gaps and skew stay clear
    jitter = rng.uniform(-1, 1, size=(len(sides), 2)) * slack[:, None]
    return BORDER_MARGIN + cell * (np.stack([cols, rows], axis=1) + 0.5) + jitter


def _sample_centres(
    rng: np.random.Generator, sides: np.ndarray, relation: dict[str, Any] | None
) -> np.ndarray:
    """Uniform non-overlapping centres [K, 2] by vectorized rejection; crowded scenes use the grid."""
    if np.sum((sides + OBJECT_GAP) ** 2) > _CROWDED:
        return np.round(_grid_centres(rng, sides, relation), 4)
    low = BORDER_MARGIN + sides / 2  # [K]
    for candidates in (1,) if len(sides) == 1 else _CANDIDATES:  # a lone object is always valid
        unit = rng.random((candidates, len(sides), 2))  # [N, K, 2] in [0, 1)
        # rounded before checking, as stored, so rounding cannot break a constraint
        centres = np.round(low[:, None] + unit * (1 - 2 * low[:, None]), 4)
        hits = np.flatnonzero(_separated(centres, sides) & _relation_holds(centres, relation))
        if hits.size:
            return centres[hits[0]]
    return np.round(_grid_centres(rng, sides, relation), 4)


def sample_layout(rng: np.random.Generator, content: dict[str, Any]) -> list[dict[str, Any]]:
    """Place every object instance of a scene; returns the spec's `instances` list.

    Boxes `[x0, y0, x1, y1]` are normalized (x right, y down), square with side
    SIZE_FRACTION[size], at least BORDER_MARGIN from the border and OBJECT_GAP from each other;
    a relation's centre offset is >= RELATION_MIN_OFFSET along its axis.
    """
    expanded = [obj for obj in content["objects"] for _ in range(obj["count"])]
    sides = np.array([SIZE_FRACTION[obj["size"]] for obj in expanded])
    centres = _sample_centres(rng, sides, content["relation"])
    instances = []
    for obj, side, (cx, cy) in zip(expanded, sides, centres):
        box = [round(float(v), 6) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)]
        instances.append({"shape": obj["shape"], "color": obj["color"], "size": obj["size"], "box": box})
    return instances


def _sample(rng: np.random.Generator, options: SceneOptions) -> tuple[str, dict[str, Any]]:
    kind = options.kinds[int(np.searchsorted(options.cumulative, rng.random(), side="right"))]
    content = sample_content(rng, kind, options.allowed)
    phrasing = sample_phrasing(rng, content)
    return caption_for(content, phrasing), {**content, "instances": sample_layout(rng, content)}


def sample_scene(
    rng: np.random.Generator,
    scene_kinds: Sequence[str] = SCENE_KINDS,
    scene_weights: Sequence[float] | None = None,
    exclude: Iterable[Sequence[str]] = (),
) -> tuple[str, dict[str, Any]]:
    """Draw one scene: (caption, full-truth spec with `instances`), using only `rng`."""
    return _sample(rng, scene_options(scene_kinds, scene_weights, exclude))


# --------------------------------------------------------------------------------------------
# Rendering: each shape fills its box exactly (tight bounding box)
# --------------------------------------------------------------------------------------------


def _unit_polygon(points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Vertices [V, 2] rescaled so their bounding box is the unit square."""
    vertices = np.asarray(points, dtype=np.float64)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    return (vertices - low) / (high - low)


def _star_points(tips: int = 5, inner_ratio: float = 0.45) -> list[tuple[float, float]]:
    """A regular star, first tip straight up; a fat inner radius keeps it legible at 8 px."""
    angles = -math.pi / 2 + np.arange(2 * tips) * math.pi / tips
    radii = np.where(np.arange(2 * tips) % 2 == 0, 1.0, inner_ratio)
    return list(zip(radii * np.cos(angles), radii * np.sin(angles)))


_THIRD = 1 / 3
_POLYGONS: dict[str, np.ndarray] = {
    "square": _unit_polygon([(0, 0), (1, 0), (1, 1), (0, 1)]),
    "triangle": _unit_polygon([(0.5, 0), (1, 1), (0, 1)]),
    "diamond": _unit_polygon([(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)]),
    "cross": _unit_polygon(
        [
            (_THIRD, 0),
            (2 * _THIRD, 0),
            (2 * _THIRD, _THIRD),
            (1, _THIRD),
            (1, 2 * _THIRD),
            (2 * _THIRD, 2 * _THIRD),
            (2 * _THIRD, 1),
            (_THIRD, 1),
            (_THIRD, 2 * _THIRD),
            (0, 2 * _THIRD),
            (0, _THIRD),
            (_THIRD, _THIRD),
        ]
    ),
    "star": _unit_polygon(_star_points()),
}


def _polygon_mask(vertices: np.ndarray, ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon for points ux [1, W] x uy [H, 1] (unit box coords) -> bool [H, W]."""
    inside = np.zeros((uy.shape[0], ux.shape[1]), dtype=bool)
    for (xa, ya), (xb, yb) in zip(vertices, np.roll(vertices, -1, axis=0)):
        if ya == yb:
            continue  # horizontal edges never cross a scanline
        crosses = (ya > uy) != (yb > uy)  # [H, 1]
        x_at = xa + (uy - ya) * (xb - xa) / (yb - ya)  # [H, 1] edge's x on each scanline
        inside ^= crosses & (ux < x_at)
    return inside


def _shape_mask(shape: str, ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
    if shape == "circle":
        return (ux - 0.5) ** 2 + (uy - 0.5) ** 2 <= 0.25
    return _polygon_mask(_POLYGONS[shape], ux, uy)


def _supersample(resolution: int) -> int:
    """Sub-pixels per pixel side: 8 at 32 px, 4 from 64 px up."""
    return max(4, min(8, 256 // resolution))


def _pixel_span(low: float, high: float, resolution: int) -> tuple[int, int]:
    return max(0, math.floor(low * resolution)), min(resolution, math.ceil(high * resolution))


def _paint(canvas: np.ndarray, instance: dict[str, Any], factor: int) -> None:
    """Blend one instance into canvas [R, R, 3] float32 by its exact area coverage."""
    resolution = canvas.shape[0]
    x0, y0, x1, y1 = instance["box"]
    (c0, c1), (r0, r1) = _pixel_span(x0, x1, resolution), _pixel_span(y0, y1, resolution)
    step = 1.0 / (resolution * factor)
    ux = ((np.arange(c0 * factor, c1 * factor) + 0.5) * step - x0) / (x1 - x0)  # sub-pixel centres
    uy = ((np.arange(r0 * factor, r1 * factor) + 0.5) * step - y0) / (y1 - y0)
    mask = _shape_mask(instance["shape"], ux[None, :], uy[:, None])  # [h * f, w * f]
    coverage = mask.reshape(r1 - r0, factor, c1 - c0, factor).mean(axis=(1, 3), dtype=np.float32)
    region = canvas[r0:r1, c0:c1]
    region += coverage[..., None] * (np.asarray(COLORS[instance["color"]], np.float32) - region)


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def render_scene(spec: dict[str, Any], resolution: int) -> np.ndarray:
    """Draw a full-truth spec as uint8 [resolution, resolution, 3] RGB.

    A pixel's colour is the background blended with each shape by the fraction of its
    sub-pixel centres inside the shape (8x8 sub-pixels at 32 px, 4x4 from 64 px), so renders of
    one spec at different resolutions agree after box downsampling.
    """
    resolution = _check_count("resolution", resolution, MIN_RESOLUTION)
    canvas = np.empty((resolution, resolution, 3), dtype=np.float32)
    canvas[:] = BACKGROUNDS[spec["background"]]
    factor = _supersample(resolution)
    for instance in spec["instances"]:
        _paint(canvas, instance, factor)
    return np.rint(canvas).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


class ShapesDataset(Dataset):
    """Scene `index` of `seed` is always the same scene, at any resolution and in any process.

    Items: `image` float32 [3, H, W] in [-1, 1], `caption` str, `spec` dict (full truth; schema
    in docs/shapes.md). `caption(i)` and `spec(i)` draw the scene without rendering it.
    """

    def __init__(
        self,
        resolution: int = 32,
        seed: int = 0,
        length: int = 20_000,
        scene_kinds: Sequence[str] = SCENE_KINDS,
        scene_weights: Sequence[float] | None = None,
        exclude: Iterable[Sequence[str]] = (),
    ):
        self.resolution = _check_count("resolution", resolution, MIN_RESOLUTION)
        self.seed = _check_count("seed", seed, 0)
        self.length = _check_count("length", length, 1)
        self.options = scene_options(scene_kinds, scene_weights, exclude)

    def __len__(self) -> int:
        return self.length

    def _scene(self, index: int) -> tuple[str, dict[str, Any]]:
        index = operator.index(index)
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for ShapesDataset of length {self.length}")
        return _sample(np.random.default_rng([self.seed, index]), self.options)

    def caption(self, index: int) -> str:
        return self._scene(index)[0]

    def spec(self, index: int) -> dict[str, Any]:
        return self._scene(index)[1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        caption, spec = self._scene(index)
        image = from_uint8(render_scene(spec, self.resolution))  # [H, W, 3] uint8 -> [3, H, W]
        return {"image": image, "caption": caption, "spec": spec}

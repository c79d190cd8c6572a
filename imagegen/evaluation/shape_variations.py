"""A randomised second renderer of the Shapes grammar, for fitting and validating the scorer only.

Owns drawing shapes the way *another* program might: other proportions (a narrower rhombus, an
equilateral or isosceles triangle, stars of inner radius 0.3-0.6, crosses of arm width 0.2-0.45),
rotation within +-10 degrees, sizes from 5 px to most of the image, colour jitter, and several
rendering styles; plus shapes that are *not* in the grammar (irregular blobs, ellipses,
rectangles, pentagons, hexagons, rings, L- and T-shapes, merged pairs, and smudges blurred by a
fifth of their size), which the scorer must reject. The fit family also gives a third of its
objects an uneven, mottled fill, as generated objects have. This is domain randomisation (Tobin et
al. 2017) for the shape classifier of `imagegen.evaluation.shape_net`. It is never the training
data of a generative model: that is `imagegen.data.shapes`, whose renders stay the scorer's
reference.

Two disjoint **families** share the code. Every proportion is drawn as `lerp(range, u)` with u in
[0, 1]; the "fit" family draws u from [0, 0.2] u [0.4, 0.6] u [0.8, 1] and the "heldout" family
from the two gaps between, so validation proportions are never seen in fitting. The families also
render differently (`_draw_style`): "fit" uses area antialiasing or hard edges, Gaussian blur,
Gaussian noise and JPEG at quality 65-85; "heldout" uses 2 x 2 supersampling, rendering at 3x then
bicubic downsampling, box blur, JPEG at quality 86-95, and uniform noise.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from imagegen.data.prompts import BACKGROUNDS, COLORS, SHAPES

FAMILIES = ("fit", "heldout")
OUT_OF_GRAMMAR: tuple[str, ...] = (
    "blob",
    "ellipse",
    "rectangle",
    "pentagon",
    "hexagon",
    "ring",
    "ell",
    "tee",
    "merged",
    "smudge",
)
SMUDGE = (0.1, 0.2)  # a smudge's blur sigma / its side: a shape too soft to name
COLOR_JITTER = 18.0  # per channel, uniform, on each object's palette colour
BACKGROUND_JITTER = 8.0
ROTATION = 10.0  # degrees, either way
GROWTH_ROOM = 0.025  # most a scene object may outgrow its spec box on each side (image sides)
# proportion ranges a person still gives the grammar's name; (low, high) per parameter
PROPORTIONS: dict[str, dict[str, tuple[float, float]]] = {
    "circle": {"aspect": (0.88, 1.14)},
    "square": {"aspect": (0.88, 1.14)},
    "diamond": {"aspect": (0.55, 1.15)},  # width / height: a rhombus is a diamond
    "triangle": {"aspect": (0.85, 1.45), "apex": (-0.12, 0.12)},  # apex x offset / width
    "star": {"aspect": (0.92, 1.08), "inner": (0.3, 0.6)},
    "cross": {"aspect": (0.88, 1.14), "arm": (0.2, 0.45)},
}
Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]  # unit-box x, y -> bool mask


def family_u(rng: np.random.Generator, family: str) -> float:
    """A proportion coordinate in [0, 1], from the family's own bands (they never overlap)."""
    bands = {"fit": ((0.0, 0.2), (0.4, 0.6), (0.8, 1.0)), "heldout": ((0.2, 0.4), (0.6, 0.8))}[family]
    low, high = bands[int(rng.integers(len(bands)))]
    return float(rng.uniform(low, high))


def _proportions(rng: np.random.Generator, shape: str, family: str) -> dict[str, float]:
    ranges = PROPORTIONS[shape]
    return {name: low + (high - low) * family_u(rng, family) for name, (low, high) in ranges.items()}


def _polygon(vertices: np.ndarray) -> Inside:
    """Even-odd point-in-polygon for unit-box vertices [V, 2]."""

    def inside(ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
        mask = np.zeros(np.broadcast(ux, uy).shape, dtype=bool)
        for (xa, ya), (xb, yb) in zip(vertices, np.roll(vertices, -1, axis=0)):
            if ya == yb:
                continue
            crosses = (ya > uy) != (yb > uy)
            x_at = xa + (uy - ya) * (xb - xa) / (yb - ya)
            mask ^= crosses & (ux < x_at)
        return mask

    return inside


def _fit_unit(points: np.ndarray) -> np.ndarray:
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - low) / (high - low)


def _regular(sides: int, radii: np.ndarray | None = None, phase: float = -math.pi / 2) -> np.ndarray:
    angles = phase + np.arange(sides) * 2 * math.pi / sides
    radii = np.ones(sides) if radii is None else radii
    return _fit_unit(np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1))


def _cross(arm: float) -> np.ndarray:
    a, b = 0.5 - arm / 2, 0.5 + arm / 2
    return np.array(
        [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a)]
    )


def grammar_outline(shape: str, params: dict[str, float]) -> Inside:
    """The inside test of a grammar shape with the given proportions, in its unit box."""
    if shape == "circle":
        return lambda ux, uy: (ux - 0.5) ** 2 + (uy - 0.5) ** 2 <= 0.25
    if shape == "square":
        return lambda ux, uy: (ux >= 0) & (ux <= 1) & (uy >= 0) & (uy <= 1)
    if shape == "diamond":
        return _polygon(np.array([(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)]))
    if shape == "triangle":
        return _polygon(np.array([(0.5 + params["apex"], 0), (1, 1), (0, 1)]))
    if shape == "star":
        radii = np.where(np.arange(10) % 2 == 0, 1.0, params["inner"])
        return _polygon(_regular(10, radii))
    return _polygon(_cross(params["arm"]))


def _blob(rng: np.random.Generator) -> Inside:
    """An irregular closed outline: radius 0.4 (1 + sum_k a_k cos(k theta + phi_k)), k = 1..5.

    Two clear terms, one of k = 1..3 (eggs, ovals, three lobes) and another of k = 2..4, so that no
    blob is a single clean harmonic (a pure k = 3 or 5 would be a rounded triangle or a soft star,
    and those keep their names); k = 5 stays faint for the same reason.
    """
    amplitudes = rng.uniform(0.0, 0.08, size=5)
    first = int(rng.integers(1, 4))
    second = int(rng.choice([k for k in (2, 3, 4) if k != first]))
    amplitudes[first - 1] = rng.uniform(0.15, 0.3)
    amplitudes[second - 1] = rng.uniform(0.1, 0.2)
    phases = rng.uniform(0, 2 * math.pi, size=5)

    def inside(ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
        dx, dy = ux - 0.5, uy - 0.5
        theta = np.arctan2(dy, dx)
        radius = 1 + sum(a * np.cos(k * theta + p) for k, a, p in zip(range(1, 6), amplitudes, phases))
        return dx * dx + dy * dy <= (0.4 * radius) ** 2

    return inside


def _merged(rng: np.random.Generator) -> Inside:
    """Two overlapping discs or squares side by side, as a generator smears two objects into one."""
    radius = rng.uniform(0.17, 0.26)
    offset = min(radius * rng.uniform(0.55, 0.95), 0.5 - radius)  # the parts overlap
    square = rng.random() < 0.5

    def part(ux: np.ndarray, uy: np.ndarray, cx: float) -> np.ndarray:
        if square:
            return (np.abs(ux - cx) <= radius) & (np.abs(uy - 0.5) <= radius)
        return (ux - cx) ** 2 + (uy - 0.5) ** 2 <= radius**2

    return lambda ux, uy: part(ux, uy, 0.5 - offset) | part(ux, uy, 0.5 + offset)


def other_outline(kind: str, rng: np.random.Generator) -> tuple[Inside, float]:
    """(inside test, width / height) of an out-of-grammar shape of `kind` (see OUT_OF_GRAMMAR)."""
    long_side = float(rng.uniform(1.7, 3.0))
    if kind == "blob":
        return _blob(rng), float(rng.uniform(0.8, 1.25))
    if kind == "smudge":  # blurred by SMUDGE in `render_objects`
        outline = _blob(rng) if rng.random() < 0.5 else grammar_outline("circle", {})
        return outline, float(rng.uniform(1.0, 2.0))
    if kind == "ellipse":
        return (lambda ux, uy: (ux - 0.5) ** 2 + (uy - 0.5) ** 2 <= 0.25), long_side
    if kind == "rectangle":
        return grammar_outline("square", {}), long_side
    if kind in ("pentagon", "hexagon"):
        return _polygon(_regular(5 if kind == "pentagon" else 6, phase=rng.uniform(0, math.pi))), 1.0
    if kind == "ring":
        hole = float(rng.uniform(0.2, 0.32)) ** 2
        return (
            lambda ux, uy: (
                (hole <= (ux - 0.5) ** 2 + (uy - 0.5) ** 2) & ((ux - 0.5) ** 2 + (uy - 0.5) ** 2 <= 0.25)
            )
        ), 1.0
    if kind == "ell":
        return _polygon(np.array([(0, 0), (0.4, 0), (0.4, 0.6), (1, 0.6), (1, 1), (0, 1)])), 1.0
    if kind == "tee":
        tee = [(0, 0), (1, 0), (1, 0.35), (0.65, 0.35), (0.65, 1), (0.35, 1), (0.35, 0.35), (0, 0.35)]
        return _polygon(np.array(tee)), 1.0
    return _merged(rng), 1.0


# --------------------------------------------------------------------------------------------
# Drawing and rendering styles
# --------------------------------------------------------------------------------------------


def _coverage(
    inside: Inside,
    box: tuple[float, float, float, float],
    degrees: float,
    factor: int,
    size: int,
    margin: float,
) -> tuple[np.ndarray, int, int]:
    """(coverage float32 [h, w] in [0, 1], top row, left column) of one shape on a size x size canvas.

    box = (centre x, centre y, width, height) in pixels (edges at 0 and size); the shape fills its
    unit box mapped onto it, rotated by `degrees` about the centre; `margin` px of room is kept
    around it for a later blur. factor 1 samples each pixel's centre only (hard edges); factor f
    averages f x f sub-pixel samples (antialiasing).
    """
    cx, cy, width, height = box
    reach = 0.75 * max(width, height) + 1 + margin  # a rotated box stays within this of its centre
    c0, c1 = max(0, math.floor(cx - reach)), min(size, math.ceil(cx + reach))
    r0, r1 = max(0, math.floor(cy - reach)), min(size, math.ceil(cy + reach))
    xs = (np.arange(c0 * factor, c1 * factor) + 0.5) / factor - cx  # [w f] sub-pixel centres
    ys = (np.arange(r0 * factor, r1 * factor) + 0.5) / factor - cy  # [h f]
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    ux = (cos * xs[None, :] + sin * ys[:, None]) / width + 0.5  # [h f, w f] rotated back
    uy = (-sin * xs[None, :] + cos * ys[:, None]) / height + 0.5
    mask = inside(ux, uy) & (ux >= 0) & (ux <= 1) & (uy >= 0) & (uy <= 1)
    return mask.reshape(r1 - r0, factor, c1 - c0, factor).mean(axis=(1, 3), dtype=np.float32), r0, c0


def _mottled(coverage: np.ndarray, rng: np.random.Generator, side: float) -> np.ndarray:
    """Coverage times 1 - a n, n smooth noise in [0, 1] and a in [0.15, 0.4]: a generator's uneven fill."""
    noise = ndimage.gaussian_filter(rng.random(coverage.shape), sigma=max(1.0, 0.12 * side))
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    return coverage * (1 - rng.uniform(0.15, 0.4) * noise).astype(np.float32)


def _jittered(rgb: tuple[int, int, int], rng: np.random.Generator, amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)


def _draw_style(rng: np.random.Generator, family: str) -> dict[str, Any]:
    """How one image is drawn and degraded (see the module docstring).

    fit: area antialiasing (4 x 4 or 8 x 8 samples) or hard edges (one sample, a quarter of
    images), then Gaussian blur, Gaussian noise and JPEG at quality 65-85 (a quarter of images).
    heldout: one of 2 x 2 supersampling, rendering at 3x then bicubic downsampling, a 2 x 2 box
    blur, or JPEG at quality 86-95; then uniform noise.
    """
    if family == "fit":
        return {
            "kind": "area",
            "factor": 1 if rng.random() < 0.25 else int(rng.choice([4, 8])),
            "blur": float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 0.0,
            "noise": float(rng.uniform(0.0, 0.06) * 127.5) if rng.random() < 0.6 else 0.0,
            "quality": int(rng.integers(65, 86)) if rng.random() < 0.25 else 0,
        }
    kind = str(rng.choice(["coarse", "resampled", "jpeg", "box"]))
    return {
        "kind": kind,
        "factor": 2 if kind == "coarse" else 4,
        "quality": int(rng.integers(86, 96)) if kind == "jpeg" else 0,
        "noise": float(rng.uniform(0.0, 10.0)) if rng.random() < 0.5 else 0.0,
    }


def _finish(canvas: np.ndarray, style: dict[str, Any], rng: np.random.Generator, size: int) -> np.ndarray:
    """Apply a style's resampling, blur, compression and noise; -> uint8 [size, size, 3]."""
    if style["kind"] == "resampled":
        image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
        canvas = np.asarray(image.resize((size, size), Image.BICUBIC), dtype=np.float32)
    if style.get("blur", 0.0) > 0:
        canvas = ndimage.gaussian_filter(canvas, sigma=(style["blur"], style["blur"], 0))
    if style["kind"] == "box":
        canvas = ndimage.uniform_filter(canvas, size=(2, 2, 1))
    if style["quality"]:
        canvas = _jpeg(canvas, style["quality"])
    if style["noise"] > 0:
        spread = style["noise"]
        noise = (
            rng.normal(0, spread, canvas.shape)
            if style["kind"] == "area"
            else rng.uniform(-spread, spread, canvas.shape)
        )
        canvas = canvas + noise.astype(np.float32)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _outline(rng: np.random.Generator, label: str, family: str) -> tuple[Inside, float]:
    """(inside test, width / height) for a grammar shape or an out-of-grammar kind."""
    if label in SHAPES:
        params = _proportions(rng, label, family)
        return grammar_outline(label, params), params["aspect"]
    inside, aspect = other_outline(label, rng)
    return inside, (aspect if rng.random() < 0.5 else 1 / aspect)


def _box(cx: float, cy: float, side: float, aspect: float) -> tuple[float, float, float, float]:
    """(cx, cy, width, height) with the longer side `side` and width / height `aspect`."""
    return cx, cy, side * min(1.0, aspect), side * min(1.0, 1 / aspect)


def render_objects(
    objects: list[tuple[str, str, tuple[float, ...]]],
    background: str,
    resolution: int,
    rng: np.random.Generator,
    family: str,
) -> np.ndarray:
    """Draw (label, colour, (centre x, centre y, longer side[, degrees])) objects, normalized.

    label: a grammar shape or an OUT_OF_GRAMMAR kind; without degrees the rotation is drawn
    within +-ROTATION. Returns uint8 [resolution, resolution, 3].
    """
    style = _draw_style(rng, family)
    scale = 3 if style["kind"] == "resampled" else 1
    size = resolution * scale
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = _jittered(BACKGROUNDS[background], rng, BACKGROUND_JITTER)
    for label, colour, geometry in objects:
        cx, cy, side = geometry[:3]
        inside, aspect = _outline(rng, label, family)
        box = _box(cx * size, cy * size, side * size, aspect)
        degrees = geometry[3] if len(geometry) > 3 else float(rng.uniform(-ROTATION, ROTATION))
        sigma = float(rng.uniform(*SMUDGE)) * side * size if label == "smudge" else 0.0
        coverage, top, left = _coverage(inside, box, degrees, style["factor"], size, 3 * sigma)
        if sigma > 0:
            coverage = ndimage.gaussian_filter(coverage, sigma, mode="constant")
        if family == "fit" and rng.random() < 0.3:
            coverage = _mottled(coverage, rng, side * size)
        region = canvas[top : top + coverage.shape[0], left : left + coverage.shape[1]]
        region += coverage[..., None] * (_jittered(COLORS[colour], rng, COLOR_JITTER) - region)
    return _finish(canvas, style, rng, resolution)


def render_variant_scene(
    spec: dict[str, Any], resolution: int, rng: np.random.Generator, family: str, size_jitter: float = 1.12
) -> np.ndarray:
    """A full-truth Shapes spec drawn by this renderer: same boxes' centres, other everything else.

    Each object's longer side is its box side times a factor within [1 / size_jitter,
    size_jitter] (log-uniform), so "small" and "large" keep the grammar's meaning. It grows by
    at most GROWTH_ROOM of the image side each way, rotation included (as for a square, the
    widest case), so objects stay apart as the layout's OBJECT_GAP (0.07) keeps them.
    """
    objects = []
    for instance in spec["instances"]:
        x0, y0, x1, y1 = instance["box"]
        box_side = math.sqrt((x1 - x0) * (y1 - y0))
        degrees = float(rng.uniform(-ROTATION, ROTATION))
        spread = abs(math.cos(math.radians(degrees))) + abs(math.sin(math.radians(degrees)))
        side = box_side * math.exp(rng.uniform(-1, 1) * math.log(size_jitter))
        side = min(side, (box_side + 2 * GROWTH_ROOM) / spread)
        objects.append((instance["shape"], instance["color"], ((x0 + x1) / 2, (y0 + y1) / 2, side, degrees)))
    return render_objects(objects, spec["background"], resolution, rng, family)


def render_single(
    rng: np.random.Generator, label: str, resolution: int, family: str, min_side_px: float = 5.0
) -> np.ndarray:
    """One object of `label` at a random place, colour, background and size (5 px to 0.8 R)."""
    side = math.exp(rng.uniform(math.log(min_side_px / resolution), math.log(0.8)))
    centre = rng.uniform(0.06 + 0.55 * side, 0.94 - 0.55 * side, size=2) if side < 0.8 else np.full(2, 0.5)
    colour, background = str(rng.choice(list(COLORS))), str(rng.choice(list(BACKGROUNDS)))
    return render_objects(
        [(label, colour, (centre[0], centre[1], side))], background, resolution, rng, family
    )

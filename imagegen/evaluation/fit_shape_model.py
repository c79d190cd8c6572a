"""Fitting the shape classifier on Shapes renders, and the degradations it is fitted under.

Owns producing shape_model.json (read by `imagegen.evaluation.shape_model`): each shape's box
geometry from one large render, and the per-shape feature intercepts and 1/side slopes plus the
pooled precision from random single-shape renders at FIT_RESOLUTIONS, clean, noised, blurred
and both. The fit sees only renders from its own seed, never the validation scenes of
tests/evaluation/test_scorer.py. In GenEval (Ghosh et al. 2023) this place is taken by a
pretrained detector; here the whole detector is a handful of numbers.

    python -m imagegen.evaluation.fit_shape_model      # rewrites shape_model.json (about 30 s)
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from scipy import ndimage

from imagegen.data.prompts import BACKGROUNDS, COLORS, SHAPES
from imagegen.data.shapes import render_scene
from imagegen.evaluation.segment import segment
from imagegen.evaluation.shape_features import Moments, moments
from imagegen.evaluation.shape_model import MODEL_PATH, REFERENCE_SIDE, ShapeModel

FIT_RESOLUTIONS: tuple[int, ...] = (32, 64, 128)
FIT_SIDES: dict[str, float] = {"small": 0.25, "large": 0.375}  # box side / image side, as rendered
FIT_NOISE = 0.05  # std of added Gaussian noise in [-1, 1] units (the scorer's robustness target)
FIT_BLUR = (0.2, 0.9)  # range of Gaussian blur sigma in px (0.9 is about a 3 x 3 box blur)


def degrade(image: np.ndarray, rng: np.random.Generator, noise: float = 0.0, blur: float = 0.0) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W, 3] blurred (Gaussian, sigma `blur` px), then noised.

    `noise` is a standard deviation in the package's [-1, 1] units (0.05 is about 6.4 / 255).
    """
    pixels = image.astype(np.float32)
    if blur > 0:
        pixels = ndimage.gaussian_filter(pixels, sigma=(blur, blur, 0))
    if noise > 0:
        pixels = pixels + rng.normal(0.0, noise * 127.5, pixels.shape).astype(np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _single_shape_spec(
    shape: str, box: list[float], color: str = "yellow", background: str = "black"
) -> dict[str, Any]:
    """A full-truth spec with one instance (size is not read by the renderer)."""
    instance = {"shape": shape, "color": color, "size": "large", "box": box}
    return {"background": background, "instances": [instance]}


def shape_geometry(shape: str, resolution: int = 256) -> tuple[float, float, float, float]:
    """(fill, width_per_std, height_per_std, centre_offset) of one shape, drawn large by the renderer."""
    low, high = 0.05, 0.95
    image = render_scene(_single_shape_spec(shape, [low, low, high, high]), resolution)
    stats = moments(image[..., 0] / COLORS["yellow"][0])  # coverage: red channel over black (0)
    side = (high - low) * resolution
    box_centre = (low + high) / 2 * resolution - 0.5  # in pixel-centre coordinates
    return (
        stats.area / side**2,
        side / np.sqrt(stats.var_x),
        side / np.sqrt(stats.var_y),
        (box_centre - stats.centre_y) / side,
    )


def _training_moments(
    rng: np.random.Generator, resolution: int, shape: str, side: float, degradation: int
) -> Moments | None:
    """One random render of a single shape, degraded by kind 0 clean, 1 noise, 2 blur, 3 both."""
    x0, y0 = rng.uniform(0.04, 0.96 - side, size=2)
    color, background = rng.choice(list(COLORS)), rng.choice(list(BACKGROUNDS))
    spec = _single_shape_spec(shape, [x0, y0, x0 + side, y0 + side], color, background)
    image = render_scene(spec, resolution)
    blur = rng.uniform(*FIT_BLUR) if degradation in (2, 3) else 0.0
    image = degrade(image, rng, FIT_NOISE if degradation in (1, 3) else 0.0, blur)
    blobs = segment(image)[2]
    return moments(blobs[0].alpha) if len(blobs) == 1 else None


def fit_shape_model(seed: int = 0, per_cell: int = 100) -> ShapeModel:
    """Fit intercepts, slopes (least squares per shape) and the pooled precision on renders.

    `per_cell` renders per (resolution, shape, size), cycling clean / noise / blur / both.
    """
    rng = np.random.default_rng(seed)
    geometry = np.array([shape_geometry(shape) for shape in SHAPES])  # [S, 4]: fill first
    fits = [_fit_shape(rng, shape, fill, per_cell) for shape, fill in zip(SHAPES, geometry[:, 0])]
    intercepts = np.stack([intercept for intercept, _, _ in fits])  # [S, F]
    slopes = np.stack([slope for _, slope, _ in fits])  # [S, F]
    covariance = np.cov(np.concatenate([residual for _, _, residual in fits]).T)  # [F, F] pooled
    return ShapeModel(SHAPES, *geometry.T, intercepts, slopes, np.linalg.inv(covariance))


def _fit_shape(
    rng: np.random.Generator, shape: str, fill: float, per_cell: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares features = intercept + slope / side over one shape's renders.

    Returns (intercept [F], slope [F], residuals [N, F] rescaled to REFERENCE_SIDE).
    """
    cells = [(resolution, side) for resolution in FIT_RESOLUTIONS for side in FIT_SIDES.values()]
    samples = [
        _training_moments(rng, resolution, shape, side, count % 4)
        for resolution, side in cells
        for count in range(per_cell)
    ]
    samples = [stats for stats in samples if stats is not None]
    features = np.stack([stats.features for stats in samples])  # [N, F]
    sides = np.sqrt(np.array([stats.area for stats in samples]) / fill)  # [N] box side in px
    design = np.stack([np.ones_like(sides), 1 / sides], axis=1)  # [N, 2]
    coef = np.linalg.lstsq(design, features, rcond=None)[0]  # [2, F]
    return coef[0], coef[1], (features - design @ coef) * (sides / REFERENCE_SIDE)[:, None]


def main() -> None:
    """Refit on renders and rewrite the shipped shape_model.json."""
    record = fit_shape_model().to_json()
    lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in record.items()]  # a row per field
    MODEL_PATH.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    print(f"wrote {MODEL_PATH}")


if __name__ == "__main__":
    main()

"""The shape classifier: a linear discriminant over moment features, fitted on Shapes renders.

Owns naming a blob's shape from its `shape_features.moments` and recovering its box; the
parameters ship as shape_model.json, written by `imagegen.evaluation.fit_shape_model`.
The rule is GenEval's in spirit (Ghosh et al. 2023: a fixed detector whose verdicts are checked
by simple rules), with the detector small enough to read:

    mean_s(side) = intercept_s + slope_s / side        per shape s; side = sqrt(area / fill_s) px
    d_s^2 = r^T P r,  r = (features - mean_s(side)) * side / REFERENCE_SIDE

Pixelation biases the features of small shapes by about 1/side (the slope); the residual's
spread also shrinks as 1/side, so it is rescaled to REFERENCE_SIDE and one pooled precision P
(inverse within-class covariance) serves every size. The intercepts are the ideal shapes'
features. A blob takes the shape of least d; none when even that exceeds `max_distance`.
Refit after any change to the renderer's geometry or to the features:

    python -m imagegen.evaluation.fit_shape_model      # rewrites shape_model.json (about 30 s)
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagegen.evaluation.shape_features import FEATURES, Moments

MODEL_PATH = Path(__file__).with_name("shape_model.json")
REFERENCE_SIDE = 16.0  # px: residuals are rescaled to what a shape of this side would show
MAX_DISTANCE = 16.0  # Mahalanobis units: about twice the 99.9th percentile on degraded renders
_ARRAYS = ("fill", "width_per_std", "height_per_std", "centre_offset", "intercept", "slope", "precision")


@dataclass(frozen=True)
class ShapeModel:
    """Per-shape geometry and discriminant; arrays are indexed like `shapes`."""

    shapes: tuple[str, ...]
    fill: np.ndarray  # [S] shape area / box area
    width_per_std: np.ndarray  # [S] box width / sqrt(mu20)
    height_per_std: np.ndarray  # [S] box height / sqrt(mu02)
    centre_offset: np.ndarray  # [S] (box centre y - centroid y) / box height
    intercept: np.ndarray  # [S, F] features of the ideal shape
    slope: np.ndarray  # [S, F] feature bias x side (px)
    precision: np.ndarray  # [F, F] inverse pooled within-class covariance at REFERENCE_SIDE
    max_distance: float = MAX_DISTANCE

    def distances(self, stats: Moments) -> np.ndarray:
        """Mahalanobis distance [S] of a blob to each shape at the size it would have as that shape."""
        sides = np.sqrt(stats.area / self.fill)  # [S] box side in px under each hypothesis
        means = self.intercept + self.slope / sides[:, None]  # [S, F]
        residual = (stats.features - means) * (sides / REFERENCE_SIDE)[:, None]  # [S, F]
        return np.sqrt(np.einsum("sf,fg,sg->s", residual, self.precision, residual))

    def classify(self, stats: Moments) -> tuple[str | None, float]:
        """(nearest shape, or None when farther than max_distance from all; its distance)."""
        distances = self.distances(stats)
        best = int(np.argmin(distances))
        return (self.shapes[best] if distances[best] <= self.max_distance else None), float(distances[best])

    def box(self, stats: Moments, shape: str | None) -> tuple[float, float, float, float]:
        """The blob's box (x0, y0, x1, y1) in its crop's pixel-centre coordinates.

        Box area = blob area / the shape's fill (blur keeps area, so size survives it); aspect from
        the second moments; centre = centroid shifted by the shape's known offset (a triangle's
        centroid sits below its box centre). An unknown shape is boxed as a square.
        """
        index = self.shapes.index(shape or "square")
        width_to_height = (self.width_per_std[index] * np.sqrt(stats.var_x)) / (
            self.height_per_std[index] * np.sqrt(stats.var_y)
        )
        height = np.sqrt(stats.area / self.fill[index] / width_to_height)
        width = height * width_to_height
        centre_y = stats.centre_y + self.centre_offset[index] * height
        left, right = stats.centre_x - width / 2, stats.centre_x + width / 2
        return (left, centre_y - height / 2, right, centre_y + height / 2)

    def to_json(self) -> dict[str, Any]:
        arrays = {name: getattr(self, name).round(6).tolist() for name in _ARRAYS}
        return {
            "features": list(FEATURES),
            "shapes": list(self.shapes),
            "reference_side": REFERENCE_SIDE,
            "max_distance": self.max_distance,
            **arrays,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> ShapeModel:
        if record["features"] != list(FEATURES) or record["reference_side"] != REFERENCE_SIDE:
            raise ValueError(
                "shape model was fitted for other features; refit with "
                "`python -m imagegen.evaluation.fit_shape_model`"
            )
        arrays = {name: np.asarray(record[name], dtype=np.float64) for name in _ARRAYS}
        return cls(tuple(record["shapes"]), max_distance=float(record["max_distance"]), **arrays)


@functools.cache
def load_shape_model(path: str | Path = MODEL_PATH) -> ShapeModel:
    """The shipped (or another saved) shape model, read once per process."""
    return ShapeModel.from_json(json.loads(Path(path).read_text(encoding="utf-8")))

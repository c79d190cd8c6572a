"""Scale-invariant moment features of a blob: what tells the six Shapes shapes apart.

Owns the features only; the classifier that reads them is `imagegen.evaluation.shape_model`.
A blob's soft coverage (the blend weight of its colour, `imagegen.evaluation.segment`) gives
area-weighted central moments mu_pq (normalized by the area A); five dimensionless ratios of
them and one angular harmonic separate the shapes at any size. Values of the ideal shapes, each
filling a square box:

    feature      definition                          circle square diamond triangle star  cross
    compactness  2 pi (mu20 + mu02) / A                 1.00   1.05   1.05    1.22   1.24  1.21
    aspect       log(mu20 / mu02)                       0      0      0      -0.29  -0.10  0
    skew_y       mu03 / mu02^1.5 (y down)               0      0      0      -0.57   0     0
    kurtosis     (mu40 / mu20^2 + mu04 / mu02^2) / 2    2.00   1.80   2.40    2.40   2.40  2.62
    mixed        mu22 / (mu20 mu02)                     0.67   1.00   0.40    0.80   0.80  0.32
    harmonic4    E[r^2 cos 4 theta] / E[r^2]            0     -0.29   0.29    0      0     0.49

Moments taken at pixel centres of an area-sampled image are corrected with Sheppard's
corrections (each pixel's mass is spread over a unit box: E[u^2] = 1/12, E[u^4] = 1/80), the
same cumulant bookkeeping GenEval-style detectors (Ghosh et al. 2023) leave to a learned network.
The harmonic (theta measured from the centroid, r^2-weighted) is what tells a small cross from a
diamond: both are four-fold, but the cross's far mass lies on the axes, the diamond's on the
diagonals too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES: tuple[str, ...] = ("compactness", "aspect", "skew_y", "kurtosis", "mixed", "harmonic4")


@dataclass(frozen=True)
class Moments:
    """Area-weighted moments of a blob in crop pixels (x right, y down), Sheppard-corrected."""

    area: float  # sum of coverage, in pixels
    centre_x: float  # centroid, pixel-centre coordinates (pixel i is centred at i)
    centre_y: float
    var_x: float  # mu20 and mu02 (per unit area)
    var_y: float
    features: np.ndarray  # float64 [len(FEATURES)]


def moments(alpha: np.ndarray) -> Moments:
    """alpha float [h, w] soft coverage in [0, 1] (not all zero) -> Moments with FEATURES."""
    weights = alpha.astype(np.float64)
    area = float(weights.sum())
    column, row = weights.sum(axis=0), weights.sum(axis=1)  # marginals [w], [h]
    xs, ys = np.arange(weights.shape[1]), np.arange(weights.shape[0])
    centre_x, centre_y = column @ xs / area, row @ ys / area
    dx, dy = xs - centre_x, ys - centre_y
    dx2, dy2 = dx * dx, dy * dy
    m20, m40 = column @ dx2 / area, column @ (dx2 * dx2) / area
    m02, m03, m04 = row @ dy2 / area, row @ (dy2 * dy) / area, row @ (dy2 * dy2) / area
    m22 = dy2 @ weights @ dx2 / area
    radius2 = dy2[:, None] + dx2[None, :]  # [h, w] r^2 from the centroid
    # [h, w] x^4 - 6 x^2 y^2 + y^4 = r^4 cos(4 theta)
    quartic = (dx2 * dx2)[None, :] - 6 * dy2[:, None] * dx2[None, :] + (dy2 * dy2)[:, None]
    harmonic = (weights * quartic / np.maximum(radius2, 1e-12)).sum() / (weights * radius2).sum()
    # Sheppard's corrections: E[(x + u)^2] = E[x^2] + 1/12, E[(x + u)^4] = E[x^4] + E[x^2] / 2 + 1/80
    var_x, var_y = m20 + 1 / 12, m02 + 1 / 12
    kurt_x = (m40 + m20 / 2 + 1 / 80) / var_x**2
    kurt_y = (m04 + m02 / 2 + 1 / 80) / var_y**2
    mixed = (m22 + (m20 + m02) / 12 + 1 / 144) / (var_x * var_y)
    features = np.array(
        [
            2 * np.pi * (var_x + var_y) / area,
            np.log(var_x / var_y),
            m03 / var_y**1.5,  # the third moment needs no correction: E[u] = E[u^3] = 0
            (kurt_x + kurt_y) / 2,
            mixed,
            harmonic,
        ]
    )
    return Moments(area, centre_x, centre_y, var_x, var_y, features)

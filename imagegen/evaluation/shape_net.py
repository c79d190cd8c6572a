"""The shape classifier: a tiny CNN over a blob's size-normalized coverage raster, numpy inference.

Owns naming a blob's shape (one of the six grammar shapes, or None for a blob or an
out-of-grammar outline) from its soft coverage (`imagegen.evaluation.segment.Blob.alpha`).
The net is fitted by `imagegen.evaluation.fit_shape_net` on a randomised second renderer
(`shape_variations`, domain randomisation after Tobin et al. 2017) with an explicit seventh
class, "none", for irregular blobs, ellipses, rectangles, pentagons, hexagons, rings, L/T-shapes
and merged pairs. Inference is numpy only, so importing the scorer does not import torch.

Input, per blob (`blob_inputs`):

    raster  [1, RASTER, RASTER]  coverage resampled on a grid centred on the centroid, spanning
                                 +- SPAN * sqrt(mu20 + mu02): size-normalized, aspect and
                                 orientation kept (a narrow rhombus stays narrow)
    scalars [S]                  the six moment features of `shape_features` and log sqrt(area),
                                 standardized with the fit's mean and std

Network: conv 3x3 (8) - ReLU - max-pool 2 - conv 3x3 (16) - ReLU - max-pool 2 -> [16, 5, 5],
flattened, concatenated with the scalars -> linear 32 - ReLU - linear 7 -> softmax. A blob takes
the most probable class; it is None when that class is "none" or its probability is below
`min_confidence`. Weights: shape_net.safetensors, described (classes, normalization, fit
settings, the file's sha256) by shape_net.json; a file that does not match its hash is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from imagegen.evaluation.shape_features import Moments

NET_PATH = Path(__file__).with_name("shape_net.json")
WEIGHTS_PATH = Path(__file__).with_name("shape_net.safetensors")
RASTER = 20  # raster side, samples
SPAN = 2.4  # the raster spans +- SPAN radial standard deviations (a triangle's apex is at 2.1)
NONE = "none"
LAYERS = ("conv1", "conv2", "fc1", "fc2")


def blob_raster(alpha: np.ndarray, stats: Moments) -> np.ndarray:
    """alpha float [h, w] in [0, 1] -> float32 [RASTER, RASTER] coverage, size-normalized.

    Sample (i, j) lies at centroid + (j - (RASTER - 1) / 2, i - (RASTER - 1) / 2) * step, step =
    2 SPAN sqrt(mu20 + mu02) / RASTER px; bilinear, after a Gaussian prefilter of 0.4 step when
    the step exceeds a pixel (no aliasing when a large blob is shrunk).
    """
    step = 2 * SPAN * np.sqrt(stats.var_x + stats.var_y) / RASTER
    weights = alpha.astype(np.float32)
    if step > 1.0:
        weights = ndimage.gaussian_filter(weights, sigma=0.4 * step, mode="constant")
    offsets = (np.arange(RASTER) - (RASTER - 1) / 2) * step  # [RASTER]
    rows, cols = np.meshgrid(stats.centre_y + offsets, stats.centre_x + offsets, indexing="ij")
    return ndimage.map_coordinates(weights, [rows, cols], order=1, mode="constant", cval=0.0)


def blob_scalars(stats: Moments) -> np.ndarray:
    """The moment features and log sqrt(area) -> float64 [len(FEATURES) + 1] (not standardized)."""
    return np.append(stats.features, 0.5 * np.log(max(stats.area, 1e-6)))


def _conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x [N, C, H, W], weight [K, C, 3, 3] -> [N, K, H, W] ('same' zero padding, cross-correlation)."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # [N, C, H, W, 3, 3]
    columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)  # im2col [NHW, 9C]
    out = columns @ weight.reshape(weight.shape[0], c * 9).T + bias  # [NHW, K]
    return out.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def _relu_pool(x: np.ndarray) -> np.ndarray:
    """[N, C, H, W] -> [N, C, H // 2, W // 2]: ReLU, then 2 x 2 max-pooling (H, W even)."""
    pooled = np.maximum(
        np.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]),
        np.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]),
    )
    return np.maximum(pooled, 0.0)


@dataclass(frozen=True)
class ShapeNet:
    """Weights (float32 numpy arrays, torch layout) and the metadata the fit wrote."""

    classes: tuple[str, ...]  # the six shapes then NONE
    weights: dict[str, np.ndarray]  # "<layer>.weight", "<layer>.bias" for LAYERS
    scalar_mean: np.ndarray  # [S]
    scalar_std: np.ndarray  # [S]
    min_confidence: float
    sha256: str
    geometry: dict[str, np.ndarray]  # shape -> [K, 4] (compactness, width/std, height/std, offset)

    def logits(self, rasters: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        """rasters [N, RASTER, RASTER], scalars [N, S] (raw) -> logits [N, len(classes)]."""
        w = self.weights
        x = rasters[:, None].astype(np.float32)  # [N, 1, R, R]
        x = _relu_pool(_conv3x3(x, w["conv1.weight"], w["conv1.bias"]))  # [N, 8, R/2, R/2]
        x = _relu_pool(_conv3x3(x, w["conv2.weight"], w["conv2.bias"]))  # [N, 16, R/4, R/4]
        standard = ((scalars - self.scalar_mean) / self.scalar_std).astype(np.float32)  # [N, S]
        x = np.concatenate([x.reshape(x.shape[0], -1), standard], axis=1)  # [N, 16 R^2/16 + S]
        x = np.maximum(x @ w["fc1.weight"].T + w["fc1.bias"], 0.0)  # [N, 32]
        return x @ w["fc2.weight"].T + w["fc2.bias"]  # [N, classes]

    def probabilities(self, rasters: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        """Softmax of `logits`, [N, len(classes)]."""
        logits = self.logits(rasters, scalars)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def classify(self, alphas: list[np.ndarray], stats: list[Moments]) -> list[tuple[str | None, float]]:
        """Per blob: (shape, or None for 'none' or a most probable class below min_confidence; p)."""
        if not alphas:
            return []
        rasters = np.stack([blob_raster(alpha, moment) for alpha, moment in zip(alphas, stats)])
        scalars = np.stack([blob_scalars(moment) for moment in stats])
        probabilities = self.probabilities(rasters, scalars)
        best = probabilities.argmax(axis=1)
        verdicts = []
        for index, p in zip(best, probabilities[np.arange(len(best)), best]):
            name = self.classes[index]
            verdicts.append((None if name == NONE or p < self.min_confidence else name, float(p)))
        return verdicts

    def box(self, stats: Moments, shape: str | None) -> tuple[float, float, float, float]:
        """The blob's box (x0, y0, x1, y1) in its crop's pixel-centre coordinates.

        width = (box width / std_x) sqrt(mu20), height likewise: second moments barely move under
        blur, and for a rhombus, triangle or rectangle the ratio does not depend on proportions.
        For stars and crosses it does (inner radius, arm width); the ratio is interpolated from
        the ideal outlines by the blob's compactness. centre = centroid shifted by the shape's
        centroid offset (a triangle's sits 1/6 of its height below the box centre). An unknown
        shape is boxed as a square.
        """
        table = self.geometry[shape or "square"]  # [K, 4] sorted by compactness
        compactness = float(np.clip(stats.features[0], table[0, 0], table[-1, 0]))
        width_per_std, height_per_std, offset = (
            np.interp(compactness, table[:, 0], table[:, k]) for k in (1, 2, 3)
        )
        width, height = width_per_std * np.sqrt(stats.var_x), height_per_std * np.sqrt(stats.var_y)
        centre_y = stats.centre_y + offset * height
        return (
            stats.centre_x - width / 2,
            centre_y - height / 2,
            stats.centre_x + width / 2,
            centre_y + height / 2,
        )


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.cache
def load_shape_net(path: str | Path = NET_PATH) -> ShapeNet:
    """The shipped (or another saved) net; its weights file must match the recorded sha256."""
    from safetensors.numpy import load_file  # numpy-only loader: no torch

    record: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    weights_path = Path(path).with_name(record["weights"])
    digest = file_sha256(weights_path)
    if digest != record["sha256"]:
        raise ValueError(
            f"{weights_path}: sha256 {digest[:16]} does not match {record['sha256'][:16]}; refit"
        )
    if record["raster"] != RASTER or record["span"] != SPAN:
        raise ValueError("shape net was fitted for another raster; refit with fit_shape_net")
    return ShapeNet(
        tuple(record["classes"]),
        load_file(str(weights_path)),
        np.asarray(record["scalar_mean"]),
        np.asarray(record["scalar_std"]),
        float(record["min_confidence"]),
        digest,
        {shape: np.asarray(rows, dtype=np.float64) for shape, rows in record["geometry"].items()},
    )

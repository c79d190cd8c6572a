"""Fitting the shape net on the randomised renderer: samples, training, and the shipped files.

Owns producing shape_net.safetensors and shape_net.json (read by `imagegen.evaluation.shape_net`).
Every sample is one object drawn by `shape_variations.render_single` from the **fit** family
only (its proportion bands and rendering styles), segmented by the scorer's own `segment`, so
the net sees exactly what it sees at scoring time. The held-out family, and the project's own
renderer, are left for validation (tests/evaluation/test_shape_net.py). Training uses torch
(imported here only); inference does not.

    python -m imagegen.evaluation.fit_shape_net      # about 5 CPU minutes on one thread
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import numpy as np
from safetensors.numpy import save_file

from imagegen.data.prompts import SHAPES
from imagegen.evaluation.segment import segment
from imagegen.evaluation.shape_features import moments
from imagegen.evaluation.shape_net import (
    NET_PATH,
    NONE,
    RASTER,
    SPAN,
    WEIGHTS_PATH,
    ShapeNet,
    blob_raster,
    blob_scalars,
    file_sha256,
)
from imagegen.evaluation.shape_variations import OUT_OF_GRAMMAR, PROPORTIONS, grammar_outline, render_single

CLASSES: tuple[str, ...] = (*SHAPES, NONE)
# least longer side (px) an out-of-grammar kind is drawn at for fitting: smaller, a hexagon *is*
# a circle to the eye, and an L a square
MIN_SIDE_PX: dict[str, float] = {"pentagon": 12, "hexagon": 12, "ring": 10, "ell": 9, "tee": 9}


@dataclass(frozen=True)
class FitSettings:
    """Everything that decides the fitted weights (recorded in shape_net.json)."""

    seed: int = 0
    per_shape: int = 4000  # samples per grammar shape
    per_other: int = 2000  # samples per out-of-grammar kind (9 kinds: "none" is about 43 %)
    resolutions: tuple[int, ...] = (32, 64, 128)
    epochs: int = 14
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    # least probability to name a shape: the lowest of 0.5, 0.6, ... at which fit-family
    # out-of-grammar objects named as a grammar shape fall below 1 % (fresh samples, seed 77)
    min_confidence: float = 0.6


def sample_blob(
    rng: np.random.Generator, label: str, resolution: int, family: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """(raster [RASTER, RASTER], scalars [S]) of the largest blob of one render, or None."""
    image = render_single(rng, label, resolution, family, MIN_SIDE_PX.get(label, 5.0))
    blobs = segment(image)[2]
    if not blobs:
        return None
    blob = max(blobs, key=lambda found: float(found.alpha.sum()))
    stats = moments(blob.alpha)
    return blob_raster(blob.alpha, stats), blob_scalars(stats)


def make_samples(
    rng: np.random.Generator, family: str, per_shape: int, per_other: int, resolutions: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rasters [N, R, R], scalars [N, S], class indices [N]) over every label, resolutions cycled."""
    plan = [(shape, CLASSES.index(shape), per_shape) for shape in SHAPES]
    plan += [(kind, CLASSES.index(NONE), per_other) for kind in OUT_OF_GRAMMAR]
    rasters, scalars, targets = [], [], []
    for label, target, count in plan:
        for index in range(count):
            sample = sample_blob(rng, label, resolutions[index % len(resolutions)], family)
            if sample is not None:
                rasters.append(sample[0])
                scalars.append(sample[1])
                targets.append(target)
    return np.stack(rasters), np.stack(scalars), np.array(targets)


def _torch_net(scalar_count: int):
    """The torch twin of `ShapeNet.logits` (same layer names and layouts)."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.fc1 = nn.Linear(16 * (RASTER // 4) ** 2 + scalar_count, 32)
            self.fc2 = nn.Linear(32, len(CLASSES))

        def forward(self, rasters: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
            x = nn.functional.max_pool2d(torch.relu(self.conv1(rasters[:, None])), 2)  # [B, 8, R/2, R/2]
            x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)  # [B, 16, R/4, R/4]
            x = torch.cat([x.flatten(1), scalars], dim=1)
            return self.fc2(torch.relu(self.fc1(x)))

    return Net()


def train(
    rasters: np.ndarray, scalars: np.ndarray, targets: np.ndarray, settings: FitSettings
) -> dict[str, np.ndarray]:
    """Adam with a cosine learning rate, cross-entropy; -> float32 weights by layer name."""
    import torch

    torch.manual_seed(settings.seed)
    net = _torch_net(scalars.shape[1])
    x, s, y = (torch.from_numpy(a) for a in (rasters.astype(np.float32), scalars.astype(np.float32), targets))
    steps = settings.epochs * -(-len(y) // settings.batch_size)
    optimizer = torch.optim.AdamW(
        net.parameters(), settings.learning_rate, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(settings.seed)
    for epoch in range(settings.epochs):
        order, total = torch.randperm(len(y), generator=generator), 0.0
        for start in range(0, len(y), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            loss = torch.nn.functional.cross_entropy(net(x[batch], s[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        print(f"epoch {epoch + 1}/{settings.epochs}: loss {total / len(y):.4f}", flush=True)
    return {name: value.detach().numpy().astype(np.float32) for name, value in net.state_dict().items()}


def fit_shape_net(settings: FitSettings = FitSettings()) -> tuple[dict[str, np.ndarray], dict]:
    """Draw fit-family samples, standardize the scalars, train; -> (weights, json record)."""
    start = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    rasters, scalars, targets = make_samples(
        rng, "fit", settings.per_shape, settings.per_other, settings.resolutions
    )
    print(f"{len(targets)} samples in {time.perf_counter() - start:.0f} s", flush=True)
    mean, std = scalars.mean(axis=0), scalars.std(axis=0) + 1e-6
    weights = train(rasters, (scalars - mean) / std, targets, settings)
    record = {
        "version": 1,
        "classes": list(CLASSES),
        "raster": RASTER,
        "span": SPAN,
        "scalar_mean": mean.round(6).tolist(),
        "scalar_std": std.round(6).tolist(),
        "min_confidence": settings.min_confidence,
        "fit": {**asdict(settings), "samples": len(targets), "family": "fit"},
        "weights": WEIGHTS_PATH.name,
    }
    return weights, record


def ideal_geometry(points: int = 9, resolution: int = 400) -> dict[str, list[list[float]]]:
    """Per shape, over its proportion range (aspect 1): rows (compactness, box width / std_x,
    box height / std_y, (box centre y - centroid y) / height), sorted by compactness.

    Only the star's inner radius and the cross's arm width move these; the scorer interpolates
    a blob's box from its compactness (`ShapeNet.box`).
    """
    grid = (np.arange(resolution) + 0.5) / resolution
    table = {}
    for shape in SHAPES:
        rows = []
        for u in np.linspace(0.0, 1.0, points):
            params = {name: low + (high - low) * u for name, (low, high) in PROPORTIONS[shape].items()}
            params.update(aspect=1.0, apex=0.0)
            stats = moments(grammar_outline(shape, params)(grid[None, :], grid[:, None]).astype(np.float64))
            rows.append(
                [
                    float(stats.features[0]),
                    resolution / np.sqrt(stats.var_x),
                    resolution / np.sqrt(stats.var_y),
                    (resolution / 2 - 0.5 - stats.centre_y) / resolution,
                ]
            )
        table[shape] = np.round(sorted(rows), 5).tolist()
    return table


def training_accuracy(weights: dict[str, np.ndarray], record: dict, settings: FitSettings) -> float:
    """Accuracy on fresh fit-family samples (seed + 1): a sanity check, not the validation."""
    rng = np.random.default_rng(settings.seed + 1)
    rasters, scalars, targets = make_samples(rng, "fit", 100, 50, settings.resolutions)
    mean, std = np.asarray(record["scalar_mean"]), np.asarray(record["scalar_std"])
    net = ShapeNet(CLASSES, weights, mean, std, 0.0, "", {})
    return float((net.probabilities(rasters, scalars).argmax(axis=1) == targets).mean())


def main() -> None:
    """Refit and rewrite the shipped shape_net.safetensors and shape_net.json."""
    settings = FitSettings()
    weights, record = fit_shape_net(settings)
    save_file(weights, str(WEIGHTS_PATH))
    record["sha256"] = file_sha256(WEIGHTS_PATH)
    record["geometry"] = ideal_geometry()
    record["fit_family_accuracy"] = round(training_accuracy(weights, record, settings), 4)
    NET_PATH.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(
        f"wrote {WEIGHTS_PATH} (sha256 {record['sha256'][:16]}), "
        f"fit-family accuracy {record['fit_family_accuracy']}"
    )


if __name__ == "__main__":
    main()

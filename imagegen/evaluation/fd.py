"""Fréchet distance (Heusel et al. 2017) and kernel distance (Bińkowski et al. 2018) between image sets.

Two backends, never mixed up in the labels:

- **FID / KID** with Inception-v3 through torchmetrics, only when `torch-fidelity` is installed
  *and* the Inception weights are already on disk (`inception_status()` says which is missing;
  nothing is ever downloaded).
- **FD-shapes / FD-emoji** (and KD-shapes / KD-emoji): the same formulas in the feature space of a
  small CNN trained on the domain's real images (`feature_net.py`). These are *not* FID: their
  scale is unrelated, and two values are comparable only when they name the same feature-net hash.

    FD = ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a^1/2 S_b S_a^1/2)^1/2)

computed in float64 through symmetric eigendecompositions, so FD(a, b) = FD(b, a) and
FD(a, a) = 0 up to rounding. FD is biased upwards at small sample counts, so compare values at
equal counts; the floor (`real vs real`: two independent reference sets of the same size) is the
value a perfect generator would get.

    scorer = FrechetScorer(get_feature_net("shapes"), reference_images)
    scorer(generated_images)   # {"metric": "FD-shapes", "fd": ..., "kd": ..., "samples": ..., ...}
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagegen.utils.images import to_uint8

INCEPTION_WEIGHT_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_ENV = "IMAGEGEN_INCEPTION_WEIGHTS"  # path of the Inception weights file, if stored elsewhere


# ------------------------------------------------------------------------------------------------
# The distances
# ------------------------------------------------------------------------------------------------


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N, D] -> (mean [D], covariance [D, D]) in float64 (unbiased, N - 1)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features: need a [N, D] array with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding noise clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance_from_stats(
    mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), float64."""
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a  # symmetric PSD, same eigenvalues as S_a S_b
    values = np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(values).sum())


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N_a, D] and [N_b, D]."""
    return frechet_distance_from_stats(*gaussian_stats(features_a), *gaussian_stats(features_b))


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Unbiased MMD^2 with KID's cubic kernel k(x, y) = (x.y / D + 1)^3, on all pairs (no subsets)."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("kernel_distance: need at least 2 samples on each side")
    dim = a.shape[1]
    k_aa, k_bb, k_ab = ((x @ y.T / dim + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
    n, m = len(a), len(b)
    within_a = (k_aa.sum() - np.trace(k_aa)) / (n * (n - 1))  # off-diagonal means: unbiased
    within_b = (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


# ------------------------------------------------------------------------------------------------
# Feature-net scorer
# ------------------------------------------------------------------------------------------------


class FrechetScorer:
    """FD / KD of image sets against one reference set, in one feature net's space.

    `reference`: the real images (PIL list, uint8 [N, H, W, 3] or float [N, 3, H, W] in [-1, 1]).
    Calling it on generated images returns a JSON-able dict labelled with the metric name
    (`FD-shapes`) and the feature net's identity (version and weights hash).
    """

    def __init__(self, net, reference):
        from imagegen.evaluation.feature_net import extract_features, feature_net_identity

        self.net = net
        self.identity = feature_net_identity(net)
        self.reference = extract_features(net, reference)  # [N_ref, D]
        self.stats = gaussian_stats(self.reference)

    @property
    def metric(self) -> str:
        return self.identity["name"]

    def features(self, images) -> np.ndarray:
        from imagegen.evaluation.feature_net import extract_features

        return extract_features(self.net, images)

    def __call__(self, images) -> dict[str, Any]:
        features = self.features(images)
        return {
            "metric": self.metric,
            "fd": frechet_distance_from_stats(*gaussian_stats(features), *self.stats),
            "kd": kernel_distance(features, self.reference),
            "samples": len(features),
            "reference_samples": len(self.reference),
            "feature_net": self.identity,
        }


# ------------------------------------------------------------------------------------------------
# Reference images
# ------------------------------------------------------------------------------------------------


def render_prompt_spec(spec: dict[str, Any], rng: np.random.Generator, resolution: int) -> np.ndarray:
    """One real image of a prompt spec: unnamed sizes / background drawn uniformly, a fresh layout.

    Returns uint8 [R, R, 3]. The same draws the Shapes dataset makes for what the prompt leaves
    open, so renders of a prompt file are the real-image distribution of that prompt file.
    """
    from imagegen.data.prompts import BACKGROUNDS, SIZES
    from imagegen.data.shapes import render_scene, sample_layout

    backgrounds = list(BACKGROUNDS)
    content = {
        "kind": spec["kind"],
        "background": spec.get("background") or backgrounds[rng.integers(len(backgrounds))],
        "objects": [
            {**obj, "size": obj.get("size") or SIZES[rng.integers(len(SIZES))]} for obj in spec["objects"]
        ],
        "relation": spec.get("relation"),
    }
    return render_scene({**content, "instances": sample_layout(rng, content)}, resolution)


def render_references(
    specs: Sequence[dict[str, Any]], per_spec: int, resolution: int, seed: int = 0
) -> np.ndarray:
    """`per_spec` independent renders of each spec: uint8 [len(specs) * per_spec, R, R, 3]."""
    images = [
        render_prompt_spec(spec, np.random.default_rng([seed, index, sample]), resolution)
        for index, spec in enumerate(specs)
        for sample in range(per_spec)
    ]
    return np.stack(images)


def emoji_references(
    root: str | Path, count: int, resolution: int = 32, seed: int = 0
) -> tuple[list[str], np.ndarray]:
    """`count` emoji drawn without replacement (seeded): (captions, uint8 [count, R, R, 3]).

    Captions are those a run trained on the folder sees (the dataset's caption column, `label`).
    """
    from imagegen.data.folder import CaptionedFolderDataset

    dataset = CaptionedFolderDataset(root, resolution)
    order = np.random.default_rng(seed).permutation(len(dataset))[: min(count, len(dataset))]
    captions, images = [], []
    for index in order:
        item = dataset[int(index)]
        captions.append(item["caption"])
        images.append(to_uint8(item["image"]))  # [H, W, 3]
    return captions, np.stack(images)


# ------------------------------------------------------------------------------------------------
# Inception (FID / KID) when, and only when, it is available offline
# ------------------------------------------------------------------------------------------------


def inception_weights_path() -> Path | None:
    candidates = [Path(os.environ[INCEPTION_ENV])] if os.environ.get(INCEPTION_ENV) else []
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    candidates += [hub / name for name in INCEPTION_WEIGHT_FILES]
    return next((path for path in candidates if path.is_file()), None)


def inception_status() -> tuple[bool, str]:
    """(available, reason): FID/KID need torch-fidelity and the Inception weights already on disk."""
    missing = []
    if importlib.util.find_spec("torch_fidelity") is None:
        missing.append("the torch-fidelity package is not installed")
    if inception_weights_path() is None:
        missing.append(
            f"no Inception weights on disk (looked for ${INCEPTION_ENV} and "
            f"{INCEPTION_WEIGHT_FILES[0]} under $TORCH_HOME/hub/checkpoints); nothing is downloaded"
        )
    if missing:
        return False, "FID/KID unavailable: " + "; ".join(missing)
    return True, f"FID/KID available (Inception weights {inception_weights_path()})"


def inception_distances(real: np.ndarray, fake: np.ndarray) -> dict[str, Any]:
    """FID and KID (torchmetrics, Inception pool3) between uint8 [N, H, W, 3] sets; checks availability."""
    available, reason = inception_status()
    if not available:
        raise RuntimeError(reason)
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.kid import KernelInceptionDistance

    weights = str(inception_weights_path())
    extractor = NoTrainInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
    fid = FrechetInceptionDistance(feature=extractor)
    kid = KernelInceptionDistance(feature=extractor, subset_size=min(len(real), len(fake), 1000))
    for images, is_real in ((real, True), (fake, False)):
        tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # uint8 [N, 3, H, W]
        fid.update(tensor, real=is_real)
        kid.update(tensor, real=is_real)
    kid_mean, kid_std = kid.compute()
    return {
        "metric": "FID",
        "fid": float(fid.compute()),
        "kid": float(kid_mean),
        "kid_std": float(kid_std),
        "samples": len(fake),
        "reference_samples": len(real),
    }

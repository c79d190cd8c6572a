"""Fréchet / kernel distances and the feature nets behind FD-shapes and FD-emoji.

The feature net here is a small, quickly trained one (a few seconds); the properties tested
(identity, symmetry, growth with a shift, reload) are what the full net must also have.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from imagegen.data.prompts import write_prompt_suites
from imagegen.evaluation import FrechetScorer, frechet_distance, inception_status, kernel_distance, score
from imagegen.evaluation.fd import frechet_distance_from_stats, render_references
from imagegen.evaluation.feature_net import (
    FeatureNetTraining,
    extract_features,
    feature_net_dir,
    get_feature_net,
    load_feature_net,
)
from imagegen.evaluation.runner import load_records

SMALL = FeatureNetTraining(samples=800, epochs=3, width=8, feature_dim=16)


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature-nets")
    get_feature_net("shapes", root, SMALL)
    return feature_net_dir("shapes", root, SMALL)


@pytest.fixture(scope="module")
def net(net_dir):
    return load_feature_net(net_dir)


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """Two independent sets of 240 real images of the same prompts (reference, test)."""
    paths = write_prompt_suites(tmp_path_factory.mktemp("prompts"), seed=1, per_suite=20)
    specs = [r.spec for r in load_records([paths[s] for s in ("single", "counting", "relation", "list")])]
    return render_references(specs, 3, 32, seed=0), render_references(specs, 3, 32, seed=1)


def _noise(images: np.ndarray, sigma: float) -> np.ndarray:
    noisy = images + np.random.default_rng(0).normal(0, 127.5 * sigma, images.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return images
    blurred = ndimage.gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0))
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8)


def _desaturate(images: np.ndarray, amount: float) -> np.ndarray:
    """Blend towards grey (each pixel's channel mean) by `amount`: colours fade."""
    grey = images.mean(axis=-1, keepdims=True)
    return np.round((1 - amount) * images + amount * grey).astype(np.uint8)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([2.0, 2.0, 1.5])
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((sd_a - sd_b) ** 2)  # 5 + 2
    value = frechet_distance_from_stats(mu_a, np.diag(sd_a**2), mu_b, np.diag(sd_b**2))
    assert value == pytest.approx(expected, rel=1e-10)


def test_distances_are_zero_on_identical_sets_and_symmetric(net, renders):
    real, other = (extract_features(net, x) for x in renders)
    assert abs(frechet_distance(real, real)) < 1e-8
    assert frechet_distance(real, other) == pytest.approx(frechet_distance(other, real), rel=1e-6)
    assert kernel_distance(real, other) == pytest.approx(kernel_distance(other, real), rel=1e-9)
    shifted = extract_features(net, _noise(renders[1], 0.3))
    assert frechet_distance(real, shifted) > 2 * frechet_distance(real, other) > 0


@pytest.mark.parametrize(
    ("shift", "levels"),
    [
        (_noise, (0.0, 0.05, 0.1, 0.2, 0.4)),
        (_blur, (0.0, 0.5, 1.0, 2.0)),
        (_desaturate, (0.0, 0.25, 0.5, 1.0)),
    ],
    ids=["noise", "blur", "color"],
)
def test_fd_grows_monotonically_with_a_distribution_shift(net, renders, shift, levels):
    """The same images, shifted more and more: FD rises from 0. On an independent set of the same
    prompts the largest shift lies above the sampling floor (FD and KD)."""
    scorer = FrechetScorer(net, renders[0])
    values = [scorer(shift(renders[0], level))["fd"] for level in levels]
    assert values[0] < 1e-8 and all(a < b for a, b in zip(values, values[1:])), values
    floor, shifted = (scorer(shift(renders[1], level)) for level in (levels[0], levels[-1]))
    assert floor["fd"] < shifted["fd"] and floor["kd"] < shifted["kd"]


def test_scorer_result_is_labelled_fd_shapes_with_the_net_hash(net, renders):
    result = FrechetScorer(net, renders[0])(renders[1][:50])
    assert result["metric"] == "FD-shapes" and result["samples"] == 50 and result["reference_samples"] == 240
    assert result["feature_net"]["sha256"] == net.info["sha256"][:12]
    assert result["feature_net"]["version"] == "fd-shapes-v1"


def test_reloaded_net_gives_identical_features_and_a_tampered_file_is_refused(net_dir, renders, tmp_path):
    first = extract_features(load_feature_net(net_dir), renders[0][:64])
    second = extract_features(load_feature_net(net_dir), renders[0][:64])
    assert np.array_equal(first, second)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in net_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ValueError, match="hash"):
        load_feature_net(copy)


def test_saved_net_is_reused_not_retrained(net_dir, monkeypatch):
    import imagegen.evaluation.feature_net as feature_net

    def refuse(*args, **kwargs):
        raise AssertionError("retrained a cached feature net")

    monkeypatch.setattr(feature_net, "train_feature_net", refuse)
    again = get_feature_net("shapes", net_dir.parent, SMALL)
    assert again.info["sha256"] == load_feature_net(net_dir).info["sha256"]
    assert feature_net_dir("shapes", "x").name == "fd-shapes-v1"  # default settings: no suffix
    assert feature_net_dir("shapes", "x", SMALL).name.startswith("fd-shapes-v1-")
    with pytest.raises(ValueError, match="domain"):
        feature_net_dir("faces")


def test_references_are_real_images_of_their_prompts(tmp_path):
    paths = write_prompt_suites(tmp_path, seed=2, per_suite=10)
    specs = [r.spec for r in load_records([paths["relation"], paths["color_binding"], paths["heldout"]])]
    images = render_references(specs, 2, 32, seed=5)
    assert images.shape == (60, 32, 32, 3) and images.dtype == np.uint8
    assert all(score(image, specs[i // 2]).passed for i, image in enumerate(images))
    assert np.array_equal(images, render_references(specs, 2, 32, seed=5))
    assert not np.array_equal(images, render_references(specs, 2, 32, seed=6))


def test_inception_status_reports_missing_weights_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.delenv("IMAGEGEN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    available, reason = inception_status()
    assert not available and "no Inception weights on disk" in reason
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"0")
    monkeypatch.setenv("IMAGEGEN_INCEPTION_WEIGHTS", str(weights))
    available, reason = inception_status()
    assert "no Inception weights" not in reason


def test_the_feature_net_trains_under_a_callers_no_grad(net, tmp_path):
    """A benchmark that disables grad globally, then scores FD for the first time on a host, trains
    the net inside that call (unclip_eval did: 'element 0 of tensors does not require grad')."""
    import torch

    with torch.no_grad():
        again = get_feature_net("shapes", tmp_path, SMALL)
    for name, value in net.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name  # the same seeded training


@pytest.mark.slow
def test_emoji_feature_net_trains_on_the_group_column(shared_data, tmp_path):
    training = FeatureNetTraining(epochs=2, width=8, feature_dim=16)
    net = get_feature_net("emoji", tmp_path, training, data_root=shared_data / "noto-emoji")
    assert net.info["name"] == "FD-emoji" and len(net.info["groups"]) >= 9
    assert net.info["heldout_accuracy"]["group"] > 0.5

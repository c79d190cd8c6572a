"""sample_z: truncation bounds, exact truncated-normal variance, determinism, errors."""

from __future__ import annotations

import math

import pytest
import torch

from imagegen.gan.noise import UNTRUNCATED, sample_z


@pytest.mark.parametrize("truncation", [0.1, 0.5, 1.0, 2.5])
def test_truncated_noise_stays_within_bounds_and_matches_the_truncated_normal_variance(truncation):
    z = sample_z(2000, 50, truncation, torch.Generator().manual_seed(0))
    assert z.shape == (2000, 50) and z.dtype == torch.float32
    assert z.abs().max() <= truncation
    # Var of N(0, 1) truncated to [-t, t]: 1 - 2 t phi(t) / (2 Phi(t) - 1)
    density = math.exp(-(truncation**2) / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(truncation / math.sqrt(2))
    assert z.var().item() == pytest.approx(1 - 2 * truncation * density / mass, rel=0.02)
    assert abs(z.mean().item()) < 0.01


def test_untruncated_is_standard_normal_from_the_same_generator():
    expected = torch.randn(3, 7, generator=torch.Generator().manual_seed(5))
    for truncation in (UNTRUNCATED, 100.0, math.inf):
        torch.testing.assert_close(sample_z(3, 7, truncation, torch.Generator().manual_seed(5)), expected)


def test_deterministic_with_a_generator():
    first = sample_z(4, 8, 0.7, torch.Generator().manual_seed(1))
    torch.testing.assert_close(first, sample_z(4, 8, 0.7, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, sample_z(4, 8, 0.7, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("truncation", [0.0, -1.0, math.nan])
def test_non_positive_truncation_raises(truncation):
    with pytest.raises(ValueError, match="truncation"):
        sample_z(2, 3, truncation)

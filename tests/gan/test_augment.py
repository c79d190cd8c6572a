"""DiffAugment: identity policy, shapes, determinism, what each transform does, errors."""

from __future__ import annotations

import pytest
import torch

from imagegen.gan.augment import DiffAugment


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_empty_policy_is_identity():
    images = torch.randn(2, 3, 8, 8)
    augment = DiffAugment("")
    assert not augment
    assert augment(images, seeded(0)) is images


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_shape_determinism_and_gradient(policy):
    images = torch.randn(4, 3, 16, 16, requires_grad=True)
    augment = DiffAugment(policy)
    first, again, other = augment(images, seeded(0)), augment(images, seeded(0)), augment(images, seeded(1))
    assert first.shape == images.shape
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    first.sum().backward()  # differentiable, so G is trained through it
    assert images.grad.abs().sum() > 0


@pytest.mark.parametrize("policy", ["colour", "color,flip", "zoom"])
def test_unknown_policy_raises(policy):
    with pytest.raises(ValueError, match="valid policies"):
        DiffAugment(policy)


def test_translation_moves_a_dot_by_at_most_an_eighth_of_the_side():
    images = torch.zeros(32, 1, 16, 16)
    images[:, :, 8, 8] = 1.0
    moved = DiffAugment("translation")(images, seeded(0))
    assert moved.sum(dim=(1, 2, 3)).eq(1).all()  # the dot stays inside (shift <= 2 here)
    rows, cols = moved[:, 0].nonzero()[:, 1], moved[:, 0].nonzero()[:, 2]
    assert (rows - 8).abs().max() <= 2 and (cols - 8).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 1  # per-sample shifts


def test_cutout_zeroes_at_most_a_half_side_square():
    images = torch.ones(64, 3, 16, 16)
    erased = DiffAugment("cutout")(images, seeded(0)) == 0  # [B, 3, 16, 16]
    per_sample = erased[:, 0].sum(dim=(1, 2))
    assert per_sample.max() == 8 * 8 and per_sample.min() > 0
    assert erased.all(dim=1).eq(erased.any(dim=1)).all()  # same mask on every channel


def test_color_brightness_keeps_per_sample_shift_within_half():
    images = torch.zeros(64, 3, 8, 8)  # flat gray: saturation and contrast leave it unchanged
    out = DiffAugment("color")(images, seeded(0))
    shift = out.mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.5 and shift.std() > 0.1
    torch.testing.assert_close(out, shift[:, None, None, None].expand_as(out))

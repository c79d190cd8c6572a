"""The one image conversion pair at the package's edges (imagegen/utils/images.py)."""

from __future__ import annotations

import numpy as np
import torch

from imagegen.utils.images import from_uint8, tensor_to_pil, to_levels, to_uint8


def test_from_uint8_then_to_uint8_is_the_identity_on_every_level():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=-1)  # [H, W, 3]
    images = from_uint8(pixels)
    assert images.shape == (3, 16, 16) and images.dtype == torch.float32
    assert images.min() == -1 and images.max() == 1
    assert np.array_equal(to_uint8(images), pixels)
    batch = from_uint8(pixels[None].repeat(2, axis=0))  # [2, H, W, 3] -> [2, 3, H, W]
    assert batch.shape == (2, 3, 16, 16) and torch.equal(batch[1], images)


def test_to_uint8_rounds_half_up_and_clamps_out_of_range_values():
    levels = torch.tensor([-2.0, -1.0, 0.5 / 127.5 - 1, 0.0, 1.0, 3.0]).view(1, 1, 6).expand(3, 1, 6)
    assert to_uint8(levels)[0, :, 0].tolist() == [0, 0, 1, 128, 255, 255]
    assert to_levels(levels)[0, 3, 0] == 127.5  # unrounded: the scale to_uint8 rounds
    image = tensor_to_pil(levels[None])[0]
    assert image.size == (6, 1) and image.getpixel((3, 0)) == (128, 128, 128)

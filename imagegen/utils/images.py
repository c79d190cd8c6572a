"""Edge conversions for images, and labelled sample grids.

Inside the package images are float tensors in [-1, 1], NCHW. This module holds the one pair that
crosses the edge (datasets, scorers, FD, CLI output, sample grids):

    to_uint8(x)    float [..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3], u8 = floor((x + 1) * 127.5 + 0.5)
    from_uint8(u8) uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [-1, 1], x = u8 / 127.5 - 1

so from_uint8 then to_uint8 is the identity on every uint8 value. `to_levels` is the unrounded
scale both share ([0, 255] floats, for measurements that should not quantize). No torch import at
module level: the helpers read numpy arrays too.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def to_levels(images) -> np.ndarray:
    """float [..., 3, H, W] in [-1, 1] (torch tensor or numpy) -> [..., H, W, 3] = (x + 1) * 127.5,
    unrounded and unclipped, in the input's float dtype (float32 for a tensor)."""
    array = images.detach().float().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    return np.moveaxis((array + 1.0) * 127.5, -3, -1)  # [..., 3, H, W] -> [..., H, W, 3]


def to_uint8(images) -> np.ndarray:
    """float [..., 3, H, W] in [-1, 1] (torch tensor or numpy) -> uint8 [..., H, W, 3].

    u8 = clip(floor((x + 1) * 127.5 + 0.5), 0, 255): round half up; out-of-range values clamp.
    """
    return np.clip(to_levels(images) + 0.5, 0, 255).astype(np.uint8)


def from_uint8(pixels):
    """uint8 [..., H, W, 3] (numpy) -> float32 torch tensor [..., 3, H, W] in [-1, 1]: u8 / 127.5 - 1."""
    import torch  # here, not at the top: to_uint8 / tensor_to_pil work without torch

    channels_first = np.ascontiguousarray(np.moveaxis(np.asarray(pixels, dtype=np.uint8), -1, -3))
    return torch.from_numpy(channels_first).float() / 127.5 - 1.0  # [..., 3, H, W]


def tensor_to_pil(images) -> list[Image.Image]:
    """[B, 3, H, W] float in [-1, 1] (torch tensor or numpy) -> B RGB PIL images."""
    return [Image.fromarray(pixels) for pixels in to_uint8(images)]  # each [H, W, 3] uint8


def _label_lines(label: str, width_px: int) -> list[str]:
    chars = max(4, width_px // 6)  # the default PIL font is about 6 px per character
    return textwrap.wrap(label, chars)[:3] or [""]


def make_grid(
    images: Sequence[Image.Image],
    labels: Sequence[str] | None = None,
    columns: int | None = None,
    cell: int | None = None,
    pad: int = 4,
) -> Image.Image:
    """Tile images into a grid, each with its label (up to 3 wrapped lines) underneath.

    Small images are upscaled with nearest neighbour to `cell` pixels (default: at least 96) so
    32 px samples stay legible.
    """
    if not images:
        raise ValueError("make_grid: images is empty")
    columns = columns or min(len(images), 8)
    rows = (len(images) + columns - 1) // columns
    cell = cell or max(96, images[0].width)
    label_h = 3 * 11 + 2 if labels is not None else 0
    grid = Image.new("RGB", (columns * (cell + pad) + pad, rows * (cell + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for i, image in enumerate(images):
        x = pad + (i % columns) * (cell + pad)
        y = pad + (i // columns) * (cell + label_h + pad)
        grid.paste(image.resize((cell, cell), Image.NEAREST), (x, y))
        if labels is not None:
            for j, line in enumerate(_label_lines(labels[i], cell)):
                draw.text((x, y + cell + 1 + 11 * j), line, fill="black", font=font)
    return grid

"""Edge conversions for generated images and labelled sample grids.

Inside the package images are float tensors in [-1, 1], NCHW; these helpers turn them into PIL
images at the edges (CLI output, sample grids) and back.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def tensor_to_pil(images) -> list[Image.Image]:
    """[B, 3, H, W] float in [-1, 1] (torch tensor or numpy) -> B RGB PIL images."""
    array = images.detach().float().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    array = np.clip((array + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)  # [B, 3, H, W]
    return [Image.fromarray(img.transpose(1, 2, 0)) for img in array]  # -> [H, W, 3]


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

"""Checked source images for unCLIP's variations, interpolations and text diffs.

check_source_images(images, "images", sides=[32, 64])  # -> float32 [N, 3, S, S] in [-1, 1]
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from imagegen.data.transforms import SUPPORTED_MODES, pil_to_tensor, to_rgb


def check_source_images(images: Any, name: str, sides: list[int]) -> torch.Tensor:
    """PIL images (any supported mode, converted to RGB; transparency on white), a list of them of
    one size, or a float tensor [3, S, S] / [N, 3, S, S] in [-1, 1], with S in `sides` -> float32
    [N, 3, S, S] on the CPU. ValueError naming `name` otherwise."""
    allowed = " or ".join(f"{side}x{side}" for side in sides)
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, Image.Image) for i in images):
        for image in images:
            if image.mode not in SUPPORTED_MODES:
                raise ValueError(
                    f"{name}: image mode {image.mode!r} is not supported; allowed: "
                    + ", ".join(sorted(SUPPORTED_MODES))
                )
            if image.size[0] != image.size[1] or image.size[0] not in sides:
                raise ValueError(
                    f"{name}: an image is {image.size[0]}x{image.size[1]} px; this unCLIP draws and "
                    f"embeds {allowed} images (resize or crop it first)"
                )
        if len({image.size for image in images}) > 1:
            raise ValueError(f"{name}: the images differ in size; give images of one size")
        return torch.stack([pil_to_tensor(to_rgb(image)) for image in images])
    if isinstance(images, torch.Tensor):
        tensor = images[None] if images.ndim == 3 else images
        if (
            tensor.ndim != 4
            or tensor.shape[1] != 3
            or tensor.shape[2] != tensor.shape[3]
            or tensor.shape[3] not in sides
            or not tensor.is_floating_point()
        ):
            side = sides[0]
            raise ValueError(
                f"{name}: a float tensor [3, S, S] or [N, 3, S, S] in [-1, 1] with S in {sides} (e.g. "
                f"[N, 3, {side}, {side}]) expected; got {tensor.dtype} of shape {tuple(images.shape)}"
            )
        if not len(tensor):
            raise ValueError(f"{name}: no images given")
        low, high = float(tensor.min()), float(tensor.max())
        if not (-1.001 <= low and high <= 1.001):
            raise ValueError(f"{name}: tensor values must be in [-1, 1]; got [{low:.3g}, {high:.3g}]")
        return tensor.detach().float().cpu()
    raise ValueError(
        f"{name}: expected a PIL image, a non-empty list of them, or a tensor; got {images!r:.100}"
    )

"""Differentiable augmentation of every discriminator input (DiffAugment).

Owns `DiffAugment`. Follows Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training" (NeurIPS): the same random, differentiable transforms are applied to real and generated
images before D, in both the D and the G phase, so D cannot overfit a small training set and G
still receives gradients through the transform. Policies (comma-separated, applied in order):

- `color`: brightness (+U[-0.5, 0.5)), saturation (x U[0, 2)), contrast (x U[0.5, 1.5));
- `translation`: integer shift of up to 1/8 of the side in x and y, zero padding;
- `cutout`: zero a square of half the side at a random centre.

Images are [B, C, H, W] in [-1, 1]; every sample gets its own parameters, drawn from the given
`torch.Generator` (on the images' device) in a fixed order, so a seed fixes the output.
"""

from __future__ import annotations

import torch

TRANSLATION_RATIO = 1 / 8  # max shift as a fraction of the side (DiffAugment default)
CUTOUT_RATIO = 1 / 2  # side of the erased square as a fraction of the image side (DiffAugment default)


def _uniform(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One U[0, 1) value per sample, shaped [B, 1, 1, 1] to broadcast over an image batch."""
    values = torch.rand(images.shape[0], 1, 1, 1, generator=generator, device=images.device)
    return values.to(images.dtype)


def brightness(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return images + (_uniform(images, generator) - 0.5)


def saturation(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    gray = images.mean(dim=1, keepdim=True)  # [B, 1, H, W]
    return (images - gray) * (_uniform(images, generator) * 2) + gray


def contrast(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    mean = images.mean(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1]
    return (images - mean) * (_uniform(images, generator) + 0.5) + mean


def translation(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """out[b, :, y, x] = in[b, :, y - dy_b, x - dx_b] (zero outside), |dy|, |dx| <= side / 8."""
    batch, _, height, width = images.shape
    max_shift = int(height * TRANSLATION_RATIO + 0.5)
    if max_shift == 0:
        return images
    device = images.device
    shifts = torch.randint(-max_shift, max_shift + 1, (2, batch, 1), generator=generator, device=device)
    padded = torch.nn.functional.pad(images, [max_shift] * 4)  # [B, C, H + 2s, W + 2s]
    rows = torch.arange(height, device=device) + max_shift - shifts[0]  # [B, H]
    cols = torch.arange(width, device=device) + max_shift - shifts[1]  # [B, W]
    index = torch.arange(batch, device=device)[:, None, None]  # [B, 1, 1]
    moved = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return moved.permute(0, 3, 1, 2)  # [B, C, H, W]


def cutout(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Zero a (side / 2)-square per sample; its centre is uniform over the image (it may be clipped)."""
    batch, _, height, width = images.shape
    size_y, size_x = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
    device = images.device
    centre_y = torch.randint(0, height + 1 - size_y % 2, (batch, 1), generator=generator, device=device)
    centre_x = torch.randint(0, width + 1 - size_x % 2, (batch, 1), generator=generator, device=device)
    top, left = centre_y - size_y // 2, centre_x - size_x // 2  # [B, 1] each
    rows = torch.arange(height, device=device)  # [H]
    cols = torch.arange(width, device=device)  # [W]
    inside_y = (rows >= top) & (rows < top + size_y)  # [B, H]
    inside_x = (cols >= left) & (cols < left + size_x)  # [B, W]
    erased = inside_y[:, :, None] & inside_x[:, None, :]  # [B, H, W]
    return images * (~erased)[:, None].to(images.dtype)


POLICIES = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


class DiffAugment:
    """Callable `augment(images [B, C, H, W], generator) -> [B, C, H, W]` for a policy string.

    `DiffAugment("")` is the identity (returns its input). Unknown names raise ValueError.
    """

    def __init__(self, policy: str = ""):
        names = [name.strip() for name in policy.split(",") if name.strip()]
        unknown = [name for name in names if name not in POLICIES]
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {unknown}; valid policies: {sorted(POLICIES)}")
        self.policy = ",".join(names)
        self.transforms = [transform for name in names for transform in POLICIES[name]]

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for transform in self.transforms:
            images = transform(images, generator)
        return images

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy!r})"

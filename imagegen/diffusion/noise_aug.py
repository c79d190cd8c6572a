"""Noise conditioning augmentation of a super-resolution stage's low-res input.

Ho et al. 2022 (Cascaded Diffusion Models, §3.2 "Gaussian conditioning augmentation") and
Saharia et al. 2022 (Imagen §2.5): the low-res image is corrupted by the stage's own forward
process at a level, and the model is told the level. Training draws the level at random per
sample, so the stage learns to repair the artefacts of the stage below; sampling uses one fixed
level. Training (`imagegen.training.objectives.diffusion`) and sampling (`imagegen.cascade`) both call
these functions, so the two can never disagree on what a level means.

Levels are timesteps of the stage's schedule, the units of `t` and of the U-Net's `aug_level`
input; configs give them as fractions of `num_timesteps` (`aug_timestep`). Level 0 means the
clean input (no noise at all); level k > 0 means `q_sample(lowres, k, eps)`.
"""

from __future__ import annotations

import torch

from imagegen.diffusion.common import check_probability, randint, randn
from imagegen.diffusion.schedule import GaussianDiffusion


def aug_timestep(fraction: float, num_timesteps: int) -> int:
    """A level given as a fraction of the schedule -> a timestep: min(round(fraction * T), T - 1).

    0.2 of 1000 is timestep 200; DeepFloyd IF's default 250 of 1000 is 0.25.
    """
    check_probability("aug_level", fraction)
    return min(round(fraction * num_timesteps), num_timesteps - 1)


def random_aug_levels(
    batch: int,
    max_level: float,
    diffusion: GaussianDiffusion,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Training levels, one per sample, uniform over {0, ..., aug_timestep(max_level)}: long [B]."""
    high = aug_timestep(max_level, diffusion.num_timesteps) + 1
    return randint(high, [batch], generator, device)


def noise_augment(
    lowres: torch.Tensor,
    level: torch.Tensor,
    diffusion: GaussianDiffusion,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Corrupt the low-res input at `level`: sqrt(alpha_bar) lowres + sqrt(1 - alpha_bar) eps.

    lowres [B, C, h, w] in [-1, 1]; level long [B] (timesteps; 0 = keep the row clean).
    eps ~ N(0, I) is always drawn from `generator`, so the random stream does not depend on the
    levels. Returns [B, C, h, w] in lowres' dtype (not clamped: the model sees what q_sample gives).
    """
    eps = randn(lowres.shape, generator, lowres.device, lowres.dtype)  # [B, C, h, w]
    noisy = diffusion.q_sample(lowres, level, eps)
    clean = (level == 0).view(-1, *([1] * (lowres.ndim - 1)))  # [B, 1, 1, 1]
    return torch.where(clean, lowres, noisy)

"""Sample one stage of a cascade: the one call that training previews and every pipeline make.

Owns `sample_stage`. A text-to-image stage samples from pure noise given the text; a
super-resolution stage is also given a low-res image, which is first corrupted at the stage's
fixed noise level `aug_level` (noise conditioning augmentation, Saharia et al. 2022, §2.5;
`noise_aug.py`) and passed with that level, in timestep units, to the model. Guidance applies
to the text only: both branches of classifier-free guidance see the same low-res input.
"""

from __future__ import annotations

from typing import Any

import torch

from imagegen.config import SampleConfig
from imagegen.diffusion.guidance import Model
from imagegen.diffusion.noise_aug import aug_timestep, noise_augment
from imagegen.diffusion.samplers import sample_images
from imagegen.diffusion.schedule import GaussianDiffusion


@torch.no_grad()
def sample_stage(
    model: Model,
    diffusion: GaussianDiffusion,
    settings: SampleConfig,
    text: Any,
    null_text: Any,
    resolution: int,
    generator: torch.Generator | None,
    lowres: torch.Tensor | None = None,
    channels: int = 3,
) -> torch.Tensor:
    """Sample one stage: [B, channels, resolution, resolution] float32 in [-1, 1].

    settings: sampler, num_steps, guidance_scale, thresholding, threshold_percentile, aug_level
    (the run's `sample` section, or a copy with per-stage changes via `dataclasses.replace`).
    text / null_text: `TextEncoding`s (batch B, and 1 or B; `as_cond()` gives the model's text
    keyword arguments). lowres [B, 3, h, w] in [-1, 1] for a super-resolution stage (None for a
    text-to-image stage): it is noised at `settings.aug_level` (that noise is drawn from
    `generator` first, then x_T) and given with its level as `lowres` / `aug_level`.
    """
    cond = text.as_cond()
    batch = text.tokens.shape[0]
    if lowres is not None:
        level = aug_timestep(settings.aug_level, diffusion.num_timesteps)
        levels = torch.full((batch,), level, dtype=torch.long, device=text.tokens.device)  # [B]
        lowres = lowres.to(text.tokens.device, torch.float32)
        cond = {**cond, "lowres": noise_augment(lowres, levels, diffusion, generator), "aug_level": levels}
    return sample_images(
        model,
        (batch, channels, resolution, resolution),
        cond,
        null_text.as_cond(),
        diffusion,
        sampler=settings.sampler,
        num_steps=settings.num_steps,
        guidance_scale=settings.guidance_scale,
        thresholding=settings.thresholding,
        percentile=settings.threshold_percentile,
        generator=generator,
    )

"""Diffusion on CLIP embeddings (unCLIP's prior) and the geometry of the unit sphere they live on.

Owns `prior_condition` (a caption batch as the prior's keyword arguments), `sample_decoder`
(images from z_i and the caption, unCLIP's decoder), `sample_image_embeds`
(Ramesh et al. 2022, §2.2: sample z_i given the caption, `num_candidates` draws per caption, keep
the one with the highest z_i . z_t) and `slerp` (spherical interpolation, §3.2). Embeddings go in
and come out as unit vectors; the prior diffuses them times sqrt(E) (`imagegen.models.prior`).

Guidance drops the caption only: the unconditional branch sees the null caption's tokens and z_t
but the same noised z_i (x_t is never part of a condition here; DALLE2-pytorch's #285 also
nulled the noised image embedding).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from imagegen.config import SampleConfig
from imagegen.diffusion.guidance import Model
from imagegen.diffusion.samplers import sample_images
from imagegen.diffusion.schedule import GaussianDiffusion


def prior_condition(tokens: Tensor, mask: Tensor, text_embed: Tensor) -> dict[str, Tensor]:
    """The prior's keyword arguments for caption tokens [B, L, W], mask [B, L] bool and unit z_t
    [B, E] (scaled by sqrt(E) here, as the prior sees every embedding)."""
    scale = math.sqrt(text_embed.shape[-1])
    return {"prior_tokens": tokens, "prior_mask": mask, "prior_text_embed": text_embed.float() * scale}


@torch.no_grad()
def sample_image_embeds(
    prior: Model,
    diffusion: GaussianDiffusion,
    settings: SampleConfig,
    cond: dict[str, Tensor],
    null_cond: dict[str, Tensor],
    text_embed: Tensor,
    generator: torch.Generator | None,
    num_candidates: int = 2,
) -> Tensor:
    """Unit image embeddings [B, E] for the captions of `cond` (`prior_condition`, batch B).

    text_embed: their unit z_t [B, E], which ranks the `num_candidates` draws per caption (the one
    nearest z_t is kept). null_cond: the null caption's condition (batch 1 or B). Sampled with
    settings.sampler / num_steps / guidance_scale; no thresholding and no clamp (not pixels).
    """
    batch, dim = text_embed.shape
    if num_candidates < 1:
        raise ValueError(f"num_candidates: expected a positive integer, got {num_candidates!r}")
    repeated = {key: value.repeat_interleave(num_candidates, 0) for key, value in cond.items()}
    if batch > 1:  # a per-caption null (negative prompts) follows its caption's candidates
        null_cond = {
            key: value.repeat_interleave(num_candidates, 0) if value.shape[0] == batch else value
            for key, value in null_cond.items()
        }
    x0 = sample_images(
        prior,
        (batch * num_candidates, dim, 1, 1),
        repeated,
        null_cond,
        diffusion,
        sampler=settings.sampler,
        num_steps=settings.num_steps,
        guidance_scale=settings.guidance_scale,
        thresholding="none",
        generator=generator,
        clamp=False,
    )  # [B * K, E, 1, 1], candidate k of caption b at row b * K + k
    candidates = F.normalize(x0.flatten(1).view(batch, num_candidates, dim), dim=-1)  # [B, K, E]
    score = torch.einsum("bke,be->bk", candidates, F.normalize(text_embed.float(), dim=-1))  # [B, K]
    best = score.argmax(dim=1)  # [B]
    return candidates[torch.arange(batch, device=best.device), best]  # [B, E]


def slerp(a: Tensor, b: Tensor, weight: float | Tensor) -> Tensor:
    """Spherical interpolation of unit vectors a, b [..., E] at weight in [0, 1] (0 = a, 1 = b, as given);
    falls back to a normalised linear blend where a and b are (anti)parallel."""
    if isinstance(weight, (int, float)) and weight in (0, 1):  # the ends exactly, not up to rounding
        return (a if weight == 0 else b).float()  # unit vectors already (see the docstring)
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    weight = torch.as_tensor(weight, dtype=a.dtype, device=a.device)
    cos = (a * b).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    safe = sin.abs() > 1e-6
    mixed = (torch.sin((1 - weight) * theta) * a + torch.sin(weight * theta) * b) / sin.where(safe, 1.0)
    linear = (1 - weight) * a + weight * b
    return F.normalize(torch.where(safe, mixed, linear), dim=-1)


@torch.no_grad()
def sample_decoder(
    model: Model,
    diffusion: GaussianDiffusion,
    settings: SampleConfig,
    text: Any,
    null_text: Any,
    image_embeds: Tensor,
    resolution: int,
    generator: torch.Generator | None,
    channels: int = 3,
) -> Tensor:
    """unCLIP's decoder: images [B, channels, resolution, resolution] in [-1, 1] for unit z_i
    [B, E] and captions `text` (a TextEncoding, batch B; the null caption's for none). Guidance
    mixes against the null caption *and* a zero z_i (both dropped, as in training)."""
    cond = {**text.as_cond(), "image_embed": image_embeds.float()}
    zero = torch.zeros(1, image_embeds.shape[1], device=image_embeds.device)
    null = {**null_text.as_cond(), "image_embed": zero}
    return sample_images(
        model,
        (image_embeds.shape[0], channels, resolution, resolution),
        cond,
        null,
        diffusion,
        sampler=settings.sampler,
        num_steps=settings.num_steps,
        guidance_scale=settings.guidance_scale,
        thresholding=settings.thresholding,
        percentile=settings.threshold_percentile,
        generator=generator,
    )

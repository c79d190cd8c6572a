"""Classifier-free guidance as a small closure around the denoiser, independent of the sampler.

Owns `guided_denoiser` (Ho & Salimans 2022; Imagen, Saharia et al. 2022 §2.2): the conditional and
unconditional predictions come from ONE doubled batch per step and are mixed as
    model_output = uncond + guidance_scale * (cond - uncond)
in the network's own parameterization (eps, v or x0). The conversions to x0 are affine with
weights summing to one, so mixing eps, v or x0 gives the same guided x0.

The unconditional branch is the null condition, the encoding of the empty prompt "" (docs/design.md);
a negative prompt is used by passing its encoding as `uncond` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from imagegen.diffusion.common import check_guidance_scale, expand_null_condition

# model(x_t [B, C, H, W], t [B] long, **cond) -> model_output [B, C, H, W]
Model = Callable[..., torch.Tensor]
# denoiser(x_t [B, C, H, W], t [B] long) -> model_output [B, C, H, W]; what every sampler takes
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def guided_denoiser(
    model: Model, cond: dict[str, torch.Tensor], uncond: dict[str, torch.Tensor] | None, guidance_scale: float
) -> Denoiser:
    """Wrap `model` and its conditions into a sampler's denoiser(x_t, t) with guidance baked in.

    cond: tensors with batch B. uncond: the null (or negative-prompt) condition, a subset of cond's
    keys with batch 1 or B; keys it lacks (e.g. `lowres`, `aug_level`) are shared with cond.
    guidance_scale w >= 0: 0 = unconditional, 1 = conditional (the unconditional half is skipped:
    one model call on batch B), otherwise one call on batch 2B per step returning
    uncond + w (cond - uncond). The denoiser returns float32 whatever the model's (autocast) dtype.
    """
    guidance_scale = check_guidance_scale(guidance_scale)
    if guidance_scale == 1.0:

        def conditional(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model(x_t, t, **cond).float()

        return conditional
    if uncond is None:
        raise ValueError(f"guidance_scale {guidance_scale} != 1 needs an unconditional condition (uncond)")
    null = expand_null_condition(cond, uncond)
    doubled = {key: torch.cat([cond[key], null[key]]) for key in cond}  # each [2B, ...]: cond rows first

    def guided(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # fp32: the w-fold extrapolation must not add bf16 rounding of its own under autocast.
        both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), **doubled).float()  # [2B, C, H, W]
        out_cond, out_uncond = both.chunk(2)  # each [B, C, H, W]
        return out_uncond + guidance_scale * (out_cond - out_uncond)

    return guided

"""Thresholding of the predicted clean image x0 during sampling.

Owns `threshold_x0`: Imagen's dynamic thresholding (Saharia et al. 2022, §2.3), static clipping
and none. Every sampler applies it to the predicted x0 at every step, before the solver update
(see samplers.py), which is what keeps high guidance weights usable.
"""

from __future__ import annotations

import math

import torch

from imagegen.diffusion.common import check_probability
from imagegen.utils.checks import check_choice

THRESHOLDING_MODES = ("dynamic", "static", "none")


def dynamic_threshold_level(x0: torch.Tensor, percentile: float = 0.995) -> torch.Tensor:
    """s = max(quantile_p(|x0|), 1) per sample: x0 [B, C, H, W] -> s [B] float32.

    The quantile interpolates linearly between order statistics, as `torch.quantile` does; it is
    computed by sorting because `torch.quantile` refuses inputs of more than 2**24 elements
    (a batch of 1024x1024 images).
    """
    # fp32: half-precision sorting and interpolation would move s by more than one pixel level.
    magnitudes = x0.detach().abs().flatten(1).float().sort(dim=1).values  # [B, C*H*W]
    position = percentile * (magnitudes.shape[1] - 1)
    lower, upper = math.floor(position), math.ceil(position)
    level = torch.lerp(magnitudes[:, lower], magnitudes[:, upper], position - lower)  # [B]
    return level.clamp(min=1.0)


def threshold_x0(x0: torch.Tensor, mode: str = "dynamic", percentile: float = 0.995) -> torch.Tensor:
    """Pull a predicted clean image back into [-1, 1].

    x0 [B, C, H, W] (any float dtype) -> [B, C, H, W], same dtype.
      dynamic: s = max(quantile_p(|x0|), 1) per sample; x0 <- clip(x0, -s, s) / s
      static:  x0 <- clip(x0, -1, 1)
      none:    x0 unchanged
    With s = 1 dynamic equals static; otherwise it rescales instead of saturating.
    """
    check_choice("thresholding", mode, THRESHOLDING_MODES)
    check_probability("percentile", percentile, low_open=True)
    if mode == "none":
        return x0
    if mode == "static":
        return x0.clamp(-1.0, 1.0)
    level = dynamic_threshold_level(x0, percentile)
    level = level.view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)  # [B, 1, 1, 1]
    return torch.clamp(x0, -level, level) / level

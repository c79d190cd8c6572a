"""Normalization helpers shared by the generic layers (GroupNorm as in Saharia et al. 2022, Appendix B)."""

from __future__ import annotations

import math

from torch import nn

MAX_GROUPS = 32


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups: the largest divisor of `channels` that is at most 32."""
    return nn.GroupNorm(math.gcd(MAX_GROUPS, channels), channels)

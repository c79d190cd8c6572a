"""Residual convolution block with a FiLM (scale-shift) conditioning vector.

Owns the ResNet block of Imagen's Efficient U-Net (Saharia et al. 2022, Appendix B, Fig. A.27):
GroupNorm, SiLU and 3x3 convolutions, a 1x1 convolution on the skip path when the width changes,
and the conditional scale-shift of Dhariwal & Nichol 2021 ("adaptive group norm").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imagegen.nn.norm import group_norm


class ResnetBlock(nn.Module):
    """out = skip(x) + conv2(dropout(SiLU(FiLM(norm2(conv1(SiLU(norm1(x)))), emb))))

    FiLM: h * (1 + scale) + shift with [scale, shift] = Linear(SiLU(emb)). The last convolution is
    zero-initialised, so a fresh block is the identity (or a 1x1 projection) of its input.

    Args:
        in_channels: C_in of the input.
        out_channels: C_out of the output.
        emb_dim: width E of the conditioning vector.
        dropout: dropout probability before the last convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        same_width = in_channels == out_channels
        self.skip = nn.Identity() if same_width else nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x [B, C_in, H, W], emb [B, E] (already passed through SiLU by the caller) -> [B, C_out, H, W]."""
        h = self.conv1(nn.functional.silu(self.norm1(x)))  # [B, C_out, H, W]
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)  # [B, C_out, 1, 1] each
        h = torch.addcmul(shift, self.norm2(h), 1 + scale)  # norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(nn.functional.silu(h)))
        return self.skip(x) + h

"""The levels of Imagen's Efficient U-Net: encoder DBlock, decoder UBlock and the shared level body.

Saharia et al. 2022, Appendix B (Figs. A.28-A.30): a DBlock downsamples first and then runs its
res-blocks (and optional attention) at the low resolution; a UBlock concatenates the skip
connection, scaled by 1/sqrt(2), runs its res-blocks and attention, and upsamples last. One skip
connection per level (not per res-block) keeps the decoder's concatenations narrow.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imagegen.nn import CrossAttention, Downsample, ResnetBlock, SelfAttention, Upsample

SKIP_SCALE = 2**-0.5  # U-Net skip connections are scaled by 1/sqrt(2) before concatenation


class LevelBody(nn.Module):
    """`num_blocks` res-blocks at one resolution, then optional self- and cross-attention.

    Args:
        in_channels: width of the level's input (the first res-block maps it to `channels`).
        channels: width C of the level.
        num_blocks: res-blocks (at least 1).
        self_attn: add self-attention among the pixels.
        context_dim: width of the cross-attention context, or None for no cross-attention.
        emb_dim: width of the FiLM conditioning vector.
        head_dim: attention head width.
        dropout: res-block dropout.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_blocks: int,
        self_attn: bool,
        context_dim: int | None,
        emb_dim: int,
        head_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        widths = [in_channels] + [channels] * (num_blocks - 1)
        self.blocks = nn.ModuleList(ResnetBlock(width, channels, emb_dim, dropout) for width in widths)
        self.self_attn = SelfAttention(channels, head_dim) if self_attn else None
        self.cross_attn = CrossAttention(channels, context_dim, head_dim) if context_dim else None

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None, context_mask: Tensor) -> Tensor:
        """x [B, C_in, H, W], emb [B, E], context [B, L, D_c] | None, context_mask [B, L] -> [B, C, H, W]."""
        for block in self.blocks:
            x = block(x, emb)
        if self.self_attn is not None:
            x = self.self_attn(x)
        if self.cross_attn is not None:
            x = self.cross_attn(x, context, context_mask)
        return x


class EncoderLevel(nn.Module):
    """DBlock: optional stride-2 downsampling (in_channels -> channels), then the level body.

    Args:
        in_channels: width of the previous level.
        channels: width C of this level.
        downsample: halve the resolution first (every level but the first).
        **body: the remaining `LevelBody` arguments.
    """

    def __init__(self, in_channels: int, channels: int, downsample: bool, **body) -> None:
        super().__init__()
        self.down = Downsample(in_channels, channels) if downsample else None
        body_in = channels if downsample else in_channels
        self.body = LevelBody(body_in, channels, **body)

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None, context_mask: Tensor) -> Tensor:
        """x [B, C_prev, H, W] -> [B, C, H/2, W/2] (or [B, C, H, W] without downsampling)."""
        if self.down is not None:
            x = self.down(x)
        return self.body(x, emb, context, context_mask)


class DecoderLevel(nn.Module):
    """UBlock: concat [x, skip / sqrt(2)], the level body, then optional upsampling to `out_channels`.

    Args:
        channels: width C of this level (and of its skip connection).
        out_channels: width of the next (higher-resolution) level.
        upsample: double the resolution last (every level but the first).
        **body: the remaining `LevelBody` arguments.
    """

    def __init__(self, channels: int, out_channels: int, upsample: bool, **body) -> None:
        super().__init__()
        self.body = LevelBody(2 * channels, channels, **body)
        self.up = Upsample(channels, out_channels) if upsample else None

    def forward(
        self, x: Tensor, skip: Tensor, emb: Tensor, context: Tensor | None, context_mask: Tensor
    ) -> Tensor:
        """x, skip [B, C, H, W] -> [B, C_out, 2H, 2W] (or [B, C, H, W] without upsampling)."""
        x = torch.cat([x, skip * SKIP_SCALE], dim=1)  # [B, 2C, H, W]
        x = self.body(x, emb, context, context_mask)
        if self.up is not None:
            x = self.up(x)
        return x

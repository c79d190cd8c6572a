"""Multi-head attention over the pixels of a feature map: self-attention and masked cross-attention.

Owns the attention layers of Imagen's Efficient U-Net (Saharia et al. 2022, Appendix B): self-
attention among pixels, and cross-attention from pixels to a sequence of context vectors with a
boolean key mask and a learned null key/value (so a fully masked context is still well defined).
Both run through `torch.nn.functional.scaled_dot_product_attention` and end in a residual whose
output projection is zero-initialised (a fresh layer is the identity).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from imagegen.nn.norm import group_norm


def num_heads(channels: int, head_dim: int) -> int:
    """Heads of width `head_dim` that tile `channels`; ValueError if they do not."""
    if head_dim <= 0 or channels % head_dim:
        raise ValueError(f"head_dim={head_dim} must divide the attention width channels={channels}")
    return channels // head_dim


def _zero_linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class SelfAttention(nn.Module):
    """x + Attention(norm(x)) among the H*W pixels of x [B, C, H, W].

    Args:
        channels: C.
        head_dim: width of one head (must divide C).
    """

    def __init__(self, channels: int, head_dim: int) -> None:
        super().__init__()
        self.heads = num_heads(channels, head_dim)
        self.norm = group_norm(channels)
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.to_out = _zero_linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, H, W] -> [B, C, H, W]."""
        height = x.shape[2]
        tokens = rearrange(self.norm(x), "b c h w -> b (h w) c")  # [B, N=H*W, C]
        qkv = rearrange(self.to_qkv(tokens), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        out = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, heads, N, d]
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))  # [B, N, C]
        return x + rearrange(out, "b (h w) c -> b c h w", h=height)  # [B, C, H, W]


class CrossAttention(nn.Module):
    """x + Attention(queries = norm(x) pixels, keys/values = [null; context]) with a key mask.

    A learned null key/value pair is prepended to the context and is always attended to, so a row
    whose mask is all False attends only to it (no NaN), and masked-out context vectors have
    exactly zero attention weight: their values cannot change the output.

    Args:
        channels: C of the feature map.
        context_dim: width D_c of the context vectors.
        head_dim: width of one head (must divide C).
    """

    def __init__(self, channels: int, context_dim: int, head_dim: int) -> None:
        super().__init__()
        self.heads = num_heads(channels, head_dim)
        self.norm = group_norm(channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * channels, bias=False)
        self.null_kv = nn.Parameter(torch.randn(2, channels) * channels**-0.5)  # [2 (key, value), C]
        self.to_out = _zero_linear(channels, channels)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        """x [B, C, H, W], context [B, L, D_c], context_mask [B, L] bool (True = attend) -> [B, C, H, W]."""
        batch, _, height, _ = x.shape
        tokens = rearrange(self.norm(x), "b c h w -> b (h w) c")  # [B, N, C]
        q = rearrange(self.to_q(tokens), "b n (h d) -> b h n d", h=self.heads)  # [B, heads, N, d]
        kv = rearrange(self.to_kv(context), "b l (two c) -> b two l c", two=2)  # [B, 2, L, C]
        null_kv = self.null_kv.to(kv.dtype).expand(batch, 2, -1)[:, :, None, :]  # [B, 2, 1, C]
        kv = torch.cat([null_kv, kv], dim=2)  # [B, 2, 1 + L, C]
        k, v = rearrange(kv, "b two l (h d) -> two b h l d", h=self.heads)  # [B, heads, 1 + L, d] each
        keep_null = torch.ones_like(context_mask[:, :1])  # [B, 1]
        mask = torch.cat([keep_null, context_mask], dim=1)[:, None, None, :]  # [B, 1, 1, 1 + L]
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, heads, N, d]
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))  # [B, N, C]
        return x + rearrange(out, "b (h w) c -> b c h w", h=height)  # [B, C, H, W]

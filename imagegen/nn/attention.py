"""Multi-head attention over the pixels of a feature map: self-attention and masked cross-attention.

Owns the attention layers of Imagen's Efficient U-Net (Saharia et al. 2022, Appendix B): self-
attention among pixels, and cross-attention from pixels to a sequence of context vectors with a
boolean key mask and a learned null key/value (so a fully masked context is still well defined).
Both run through `torch.nn.functional.scaled_dot_product_attention` and end in a residual whose
output projection is zero-initialised (a fresh layer is the identity). Which SDPA kernel runs is
torch's choice unless `set_attention_backend` names one (flash, memory-efficient, cuDNN or math).
"""

from __future__ import annotations

import contextlib

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from imagegen.nn.norm import group_norm

# attention_backend name -> SDPA kernels allowed, in priority order (None: torch's own choice). The
# named kernel runs wherever it supports the inputs; flash attention takes no mask, so masked
# cross-attention falls through to the next kernel in the list (memory-efficient, then math).
ATTENTION_BACKENDS: dict[str, tuple[SDPBackend, ...] | None] = {
    "auto": None,
    "flash": (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH),
    "efficient": (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH),
    "cudnn": (SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH),
    "math": (SDPBackend.MATH,),
}


def attention_kernels(backends: tuple[SDPBackend, ...] | None) -> contextlib.AbstractContextManager:
    """Context in which SDPA may use only `backends`, tried in that order (None: no restriction)."""
    if backends is None:
        return contextlib.nullcontext()
    return sdpa_kernel(list(backends), set_priority=True)


def set_attention_backend(module: nn.Module, name: str) -> int:
    """Make every attention layer inside `module` use the SDPA kernels of ATTENTION_BACKENDS[name].

    Returns the number of layers set; ValueError for an unknown name.
    """
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend {name!r} is unknown; allowed: {', '.join(ATTENTION_BACKENDS)}")
    layers = [m for m in module.modules() if isinstance(m, (SelfAttention, CrossAttention))]
    for layer in layers:
        layer.sdpa_backends = ATTENTION_BACKENDS[name]
    return len(layers)


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
        self.sdpa_backends: tuple[SDPBackend, ...] | None = None  # set_attention_backend

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, H, W] -> [B, C, H, W]."""
        height = x.shape[2]
        tokens = rearrange(self.norm(x), "b c h w -> b (h w) c")  # [B, N=H*W, C]
        qkv = rearrange(self.to_qkv(tokens), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        with attention_kernels(self.sdpa_backends):
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
        self.sdpa_backends: tuple[SDPBackend, ...] | None = None  # set_attention_backend

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
        with attention_kernels(self.sdpa_backends):
            out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, heads, N, d]
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))  # [B, N, C]
        return x + rearrange(out, "b (h w) c -> b c h w", h=height)  # [B, C, H, W]

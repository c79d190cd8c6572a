"""Sinusoidal position embeddings and the MLP that turns them into a conditioning vector.

Owns the embedding of scalar positions (diffusion timesteps, noise-augmentation levels, any
per-example scalar) into vectors: the transformer sinusoid (Vaswani et al. 2017) as used by DDPM
(Ho et al. 2020) and Imagen's U-Net (Saharia et al. 2022, Appendix B), followed by a two-layer MLP.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(positions: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Embed scalar positions with sines and cosines of geometrically spaced frequencies.

    emb[b, i] = cos(p_b * w_i), emb[b, half + i] = sin(p_b * w_i), with w_i = max_period^(-i / half)
    and half = dim // 2; an odd `dim` gets one trailing zero column.

    Args:
        positions: [B] integer or float positions (e.g. timesteps in [0, 1000)).
        dim: width of the embedding.
        max_period: the slowest wavelength.

    Returns:
        [B, dim] float32 embedding.
    """
    half = dim // 2
    # float32 whatever the input dtype: fp16 cannot resolve timesteps near 1000 finely enough
    exponents = torch.arange(half, device=positions.device, dtype=torch.float32) / half  # [half]
    freqs = torch.exp(-math.log(max_period) * exponents)  # [half]
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]  # [B, half]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # [B, 2 * half]
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))  # [B, dim]
    return emb


class TimestepEmbedding(nn.Module):
    """Scalar position -> sinusoid -> Linear -> SiLU -> Linear.

    Args:
        dim: width of the sinusoid and of the output vector.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, positions: Tensor) -> Tensor:
        """[B] positions -> [B, dim] embedding in the dtype of the MLP weights."""
        emb = sinusoidal_embedding(positions, self.dim)  # [B, dim]
        return self.mlp(emb.to(self.mlp[0].weight.dtype))

"""The generator's input noise, with the truncation trick.

Owns `sample_z`. Truncation (Brock et al. 2019, BigGAN; DF-GAN samples with it too) draws z from a
standard normal restricted to [-truncation, truncation] per coordinate: lower values trade
diversity for fidelity. Training always uses untruncated noise.
"""

from __future__ import annotations

import torch

UNTRUNCATED = 4.0  # truncation >= this samples plain N(0, I): P(|z_i| > 4) = 6e-5 per coordinate


def sample_z(
    batch: int,
    z_dim: int,
    truncation: float = UNTRUNCATED,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Noise z [batch, z_dim] (fp32) ~ N(0, I), truncated to |z_i| <= truncation when truncation < 4.

    The truncated normal is sampled exactly by inverting the CDF Phi, which is the distribution
    that resampling every |z_i| > truncation converges to, in one pass:
        |z_i| = -Phi^-1(Phi(-t) + u * (1/2 - Phi(-t))),  u ~ U[0, 1),  with a random sign.
    Only the lower half of the CDF is inverted (in fp64) because it keeps full precision in the tail.
    `device` defaults to the generator's device (CPU without one). truncation <= 0 -> ValueError.
    """
    if not truncation > 0:  # also rejects NaN
        raise ValueError(f"truncation must be > 0, got {truncation!r}")
    if device is None:
        device = generator.device if generator is not None else "cpu"
    if truncation >= UNTRUNCATED:
        return torch.randn(batch, z_dim, generator=generator, device=device)
    uniform = torch.rand(batch, z_dim, generator=generator, device=device, dtype=torch.float64)
    sign = torch.randint(0, 2, (batch, z_dim), generator=generator, device=device).to(torch.float64) * 2 - 1
    lower = torch.special.ndtr(torch.tensor(-truncation, dtype=torch.float64, device=device))  # Phi(-t)
    magnitude = -torch.special.ndtri(lower + uniform * (0.5 - lower))  # in (0, t]
    return (sign * magnitude).float()

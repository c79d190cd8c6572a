"""The diffusion training loss, a tiny callable class (after NVlabs/edm `training/loss.py`).

Owns `DiffusionLoss`: the denoising objective of Ho et al. 2020 on the configured target
(eps, v or x0), with Imagen's conditioning dropout for classifier-free guidance (Saharia et al.
2022 §2.2; Ho & Salimans 2022) and the min-SNR-gamma loss weighting (Hang et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from imagegen.diffusion.common import (
    check_probability,
    expand_null_condition,
    rand,
    randint,
    randn,
)
from imagegen.diffusion.schedule import GaussianDiffusion
from imagegen.utils.checks import check_choice

LOSS_WEIGHTINGS = ("none", "min_snr")
TIMESTEP_SAMPLINGS = ("uniform", "logit_normal")


def min_snr_weight(snr: torch.Tensor, prediction: str, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weight on the MSE of the configured target (Hang et al. 2023).

    The intended weight on ||x0 - x0_hat||^2 is min(snr, gamma). Since at a fixed x_t
    ||eps - eps_hat||^2 = snr ||x0 - x0_hat||^2 and ||v - v_hat||^2 = (snr + 1) ||x0 - x0_hat||^2,
    the weight on the target's MSE is
        eps: min(snr, gamma) / snr      v: min(snr, gamma) / (snr + 1)      x0: min(snr, gamma)
    snr [B] -> weight [B] float32.
    """
    snr = snr.float()
    clipped = snr.clamp(max=gamma)
    if prediction == "eps":
        return clipped / snr
    if prediction == "v":
        return clipped / (snr + 1)
    return clipped


def drop_condition(
    cond: dict[str, torch.Tensor], null_cond: dict[str, torch.Tensor], drop: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Replace the rows of `cond` where drop [B] (bool) is True by the matching null rows.

    null_cond: a subset of cond's keys with batch 1 or B (keys it lacks, e.g. `lowres`, are kept).
    Returns a new dict with cond's keys and shapes.
    """
    null = expand_null_condition(cond, null_cond)
    dropped = {}
    for key, value in cond.items():
        rows = drop.view(-1, *([1] * (value.ndim - 1)))  # [B, 1, ...] to broadcast over a row
        dropped[key] = torch.where(rows, null[key], value)
    return dropped


class DiffusionLoss:
    """Per-sample denoising loss w(t) * mean_pixels (model_output - target)^2 with t ~ U{0..T-1}.

    Args:
        diffusion: the schedule and parameterization (what the target is).
        weighting: "none" (w = 1) | "min_snr" (w = min_snr_weight, Hang et al. 2023).
        min_snr_gamma: gamma of min-SNR (5 in the paper).
        noise_offset: std of a per-image, per-channel constant added to the noise (offset noise,
            Guttenberg 2023); 0 = plain N(0, I) noise.
        timestep_sampling: "uniform" (t ~ U{0..T-1}) | "logit_normal" (t = floor(T sigmoid(z)),
            z ~ N(timestep_mean, timestep_std^2); Esser et al. 2024).
    """

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        weighting: str = "min_snr",
        min_snr_gamma: float = 5.0,
        noise_offset: float = 0.0,
        timestep_sampling: str = "uniform",
        timestep_mean: float = 0.0,
        timestep_std: float = 1.0,
    ):
        check_choice("loss_weighting", weighting, LOSS_WEIGHTINGS)
        check_choice("timestep_sampling", timestep_sampling, TIMESTEP_SAMPLINGS)
        if not timestep_std > 0:
            raise ValueError(f"timestep_std must be > 0, got {timestep_std!r}")
        self.timestep_sampling = timestep_sampling
        self.timestep_mean, self.timestep_std = float(timestep_mean), float(timestep_std)
        if not min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {min_snr_gamma!r}")
        if not 0 <= noise_offset <= 1:
            raise ValueError(f"noise_offset must be in [0, 1], got {noise_offset!r}")
        self.noise_offset = float(noise_offset)
        self.diffusion = diffusion
        self.weighting = weighting
        self.min_snr_gamma = float(min_snr_gamma)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """w(t) for timesteps t [B] long -> [B] float32."""
        if self.weighting == "none":
            return torch.ones(t.shape, device=t.device)
        return min_snr_weight(self.diffusion.snr(t), self.diffusion.prediction, self.min_snr_gamma)

    def sample_timesteps(
        self, batch: int, generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        """Training timesteps [batch] long in [0, T): uniform, or logit-normal in t / T."""
        steps = self.diffusion.num_timesteps
        if self.timestep_sampling == "uniform":
            return randint(steps, [batch], generator, device)
        z = randn([batch], generator, device) * self.timestep_std + self.timestep_mean
        return (torch.sigmoid(z) * steps).long().clamp(0, steps - 1)

    def __call__(
        self,
        model: Callable[..., torch.Tensor],
        x0: torch.Tensor,
        cond: dict[str, torch.Tensor],
        null_cond: dict[str, torch.Tensor] | None = None,
        cond_drop_prob: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Loss of model(x_t, t, **cond) on a batch of clean images.

        x0 [B, C, H, W] in [-1, 1]; cond: tensors with batch B; null_cond: the encoding of "" (batch
        1 or B), which replaces each sample's condition with probability cond_drop_prob (no
        dropout when null_cond is None). t, eps and the dropout draws come from `generator`.
        Returns the per-sample loss [B] float32, computed in fp32 even under autocast.
        """
        check_probability("cond_drop_prob", cond_drop_prob)
        batch, device = x0.shape[0], x0.device
        t = self.sample_timesteps(batch, generator, device)  # [B]
        eps = randn(x0.shape, generator, device, x0.dtype)  # [B, C, H, W]
        if self.noise_offset:
            eps = eps + self.noise_offset * randn((*x0.shape[:2], 1, 1), generator, device, x0.dtype)
        drop = rand([batch], generator, device) < cond_drop_prob  # [B] bool
        if null_cond is not None:
            cond = drop_condition(cond, null_cond, drop)
        x_t = self.diffusion.q_sample(x0, t, eps)
        model_output = model(x_t, t, **cond)
        # fp32: a bf16 squared error loses the small residuals late in training.
        with torch.autocast(device_type=device.type, enabled=False):
            target = self.diffusion.target(x0.float(), eps.float(), t)
            squared_error = (model_output.float() - target).pow(2).flatten(1).mean(dim=1)  # [B]
            return squared_error * self.weight(t)

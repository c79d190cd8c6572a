"""The GAN objective for the shared trainer: two phases, D then G (DF-GAN, Tao et al. 2022).

Owns `GANObjective`, the glue between the phased `imagegen.gan.GANLoss` and the training loop:
which network each phase's optimizer updates (and with which Adam settings), where the step's
noise z comes from, and how the sample grid is drawn from the EMA of G. The phase structure
follows StyleGAN-T's `training/loss.py` (Sauer et al. 2023); the trainer does the rest (devices,
mixed precision, accumulation, `requires_grad` toggling, clipping, EMA, checkpoints, NaN guard).

Per optimizer step s, for each micro-batch:

    phase D:  z ~ N(0, I) from the step's generator (seeded by (seed, s, rank): exact resume)
              L_D = GANLoss("D", G, D, real, e, z)      G under no_grad; only D learns
    phase G:  L_G = GANLoss("G", G, D, -, e, z)         the same z (DF-GAN); only G learns

The noise is drawn once and stored in the micro-batch (`batch["gan_z"]`), which the trainer
hands to both phases, so the G phase reuses it with gradient accumulation too.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn

from imagegen.config import RunConfig
from imagegen.gan import GANLoss, sample_z
from imagegen.text import TextEncoding
from imagegen.training.objectives.base import PhaseSpec

NOISE_KEY = "gan_z"  # where the step's noise travels inside the micro-batch dict


def _plain(network: nn.Module) -> nn.Module:
    """The network without its DDP / compile wrapper.

    The network that does *not* learn in a phase is called through this: DDP would otherwise
    prepare a gradient all-reduce for it that never happens (its parameters are frozen), and the
    next step would hang or fail waiting for it.
    """
    return extract_model_from_parallel(network, keep_fp32_wrapper=True)


class GANObjective:
    """Text-conditional GAN on pooled text embeddings: phases ("D", "G"), EMA of G sampled from."""

    phases = ("D", "G")

    def __init__(self, cfg: RunConfig, generator_net: nn.Module, discriminator_net: nn.Module):
        self.cfg = cfg
        self.networks = {"G": generator_net, "D": discriminator_net}
        self.ema_networks = {"G": cfg.gan.ema_decay}
        self.gan_loss = GANLoss(cfg.gan)
        self.z_dim = generator_net.z_dim

    def phase_spec(self, phase: str) -> PhaseSpec:
        """Adam(lr_d | lr_g, betas) without weight decay: DF-GAN's two time-scale update rule."""
        gan = self.cfg.gan
        beta1, beta2 = gan.betas
        if phase == "D":
            return PhaseSpec("D", gan.lr_d, (beta1, beta2), 0.0)
        if phase == "G":
            return PhaseSpec("G", gan.lr_g, (beta1, beta2), 0.0)
        raise ValueError(f"unknown phase {phase!r}; valid phases: {self.phases}")

    def step_noise(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """z [B, z_dim] (fp32) of this micro-batch: drawn on first use, then reused by later phases."""
        if NOISE_KEY not in batch:
            batch[NOISE_KEY] = sample_z(len(batch["image"]), self.z_dim, generator=generator)
        return batch[NOISE_KEY]

    def loss(
        self,
        phase: str,
        batch: dict[str, Any],
        text: TextEncoding,
        null_text: TextEncoding,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_D (phase "D") or L_G (phase "G") on one micro-batch; logs `loss` plus GANLoss's stats."""
        z = self.step_noise(batch, generator)
        text_pooled = text.pooled.float()  # [B, T]; the cache may hold fp16
        if phase == "D":
            networks = (_plain(self.networks["G"]), self.networks["D"])
        else:
            networks = (self.networks["G"], _plain(self.networks["D"]))
        loss, stats = self.gan_loss(phase, *networks, batch["image"], text_pooled, z, generator)
        stats["loss"] = stats.pop(f"loss_{phase}")  # logged as D/loss and G/loss (the loss curves)
        return loss, stats

    @torch.no_grad()
    def sample(
        self,
        averaged: dict[str, nn.Module],
        text: TextEncoding,
        null_text: TextEncoding,
        generator: torch.Generator,
        truncation: float | None = None,
    ) -> torch.Tensor:
        """G_ema(z, e) [B, 3, H, W] in [-1, 1], z truncated at `truncation` (default gan.truncation).

        `null_text` is unused: a GAN has no classifier-free guidance.
        """
        generator_net = averaged["G"]
        truncation = self.cfg.gan.truncation if truncation is None else truncation
        device = next(generator_net.parameters()).device
        z = sample_z(len(text), generator_net.z_dim, truncation, generator=generator, device=device)
        return generator_net(z, text.pooled.to(device, torch.float32))

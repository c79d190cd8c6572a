"""Training objectives with phases, so diffusion and GAN share one training loop.

An objective owns its networks and says, per phase, which parameters an optimizer updates and
what the loss is. Diffusion has one phase (`denoiser`); the GAN has two (`D` then `G`), after
StyleGAN-T's `training/loss.py`; the CLIP one (`clip`, training/clip_objective.py). The trainer
handles everything else: devices, mixed precision, accumulation, clipping, EMA, checkpoints,
logging and the NaN guard.

Two optional methods, called when an objective has them: `after_step(phase)` right after the
phase's optimizer step (the CLIP clamps its logit_scale there), and `save_extras(name, folder)`
after an EMA network is saved into `folder` (the CLIP writes its tokenizer beside the weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from imagegen.config import RunConfig
from imagegen.diffusion import sample_stage
from imagegen.text import TextEncoding


@dataclass
class PhaseSpec:
    """What one optimizer of a phase updates, and how."""

    module: str  # key in objective.networks
    lr: float
    betas: tuple[float, float]
    weight_decay: float


class Objective(Protocol):
    phases: tuple[str, ...]
    networks: dict[str, nn.Module]  # every trainable network, saved in checkpoints by name
    ema_networks: dict[str, float]  # networks that keep an EMA (sampled from) -> its maximum decay

    def phase_spec(self, phase: str) -> PhaseSpec: ...

    def loss(
        self,
        phase: str,
        batch: dict[str, Any],
        text: TextEncoding,
        null_text: TextEncoding,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, float]]: ...

    def sample(
        self,
        averaged: dict[str, nn.Module],
        text: TextEncoding,
        null_text: TextEncoding,
        generator: torch.Generator,
    ) -> torch.Tensor: ...


class DiffusionObjective:
    """Imagen's denoising objective on one stage: one phase, the U-Net."""

    phases = ("denoiser",)

    def __init__(self, cfg: RunConfig, unet: nn.Module, diffusion: Any, loss_fn: Any):
        self.cfg = cfg
        self.networks = {"model": unet}
        self.ema_networks = {"model": cfg.train.ema_max_decay}
        self.diffusion, self.loss_fn = diffusion, loss_fn

    def phase_spec(self, phase: str) -> PhaseSpec:
        train = self.cfg.train
        return PhaseSpec("model", train.lr, (0.9, 0.99), train.weight_decay)

    def loss(self, phase, batch, text, null_text, generator):
        model = self.networks["model"]
        per_sample = self.loss_fn(
            model,
            batch["image"],
            text.as_cond(),
            null_cond=null_text.as_cond(),
            cond_drop_prob=self.cfg.diffusion.cond_drop_prob,
            generator=generator,
        )  # [B]
        loss = per_sample.mean()
        return loss, {"loss": loss}

    @torch.no_grad()
    def sample(self, averaged, text, null_text, generator):
        """The sample grid: [B, C, H, W] in [-1, 1], sampled as a pipeline samples this run."""
        model = self.cfg.model
        return sample_stage(
            averaged["model"],
            self.diffusion,
            self.cfg.sample,
            text,
            null_text,
            model.image_size,
            generator,
            channels=model.out_channels,
        )

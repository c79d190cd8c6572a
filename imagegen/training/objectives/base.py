"""Training objectives with phases, so diffusion and GAN share one training loop.

An objective owns its networks and says, per phase, which parameters an optimizer updates and
what the loss is. Diffusion has one phase (`denoiser`); the GAN has two (`D` then `G`), after
StyleGAN-T's `training/loss.py`; the CLIP one (`clip`). The trainer
handles everything else: devices, mixed precision, accumulation, clipping, EMA, checkpoints,
logging and the NaN guard.

Two optional methods, called when an objective has them: `after_step(phase)` right after the
phase's optimizer step (the CLIP clamps its logit_scale there), and `save_extras(name, folder)`
after an EMA network is saved into `folder` (the CLIP writes its tokenizer beside the weights).

One module per family: diffusion.py (a stage, text-to-image or super-resolution), cascade.py
(every stage of a cascade in one run), gan.py, clip.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

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

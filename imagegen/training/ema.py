"""Exponential moving average of a network's weights, with warm-up.

The decay follows diffusers' `EMAModel` warm-up, decay(step) = min(max_decay, 1 - (1 + step/γ)^(-p)):
it starts at 0 (the EMA *is* the model) and ramps toward `max_decay`, so a short run does not
sample from near-initial weights — the most common complaint about imagen-pytorch (#25, #236).
The update math is diffusers'; this module adds a separate evaluation copy holding the averaged
weights (sampling never swaps weights in and out of the training network) and safetensors
save/load, so no pickle is involved.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from torch import nn

EMA_FILE = "ema_shadow.safetensors"


class EMA:
    """EMA of `network`'s parameters; `averaged` is an eval-mode copy holding the EMA weights."""

    def __init__(self, network: nn.Module, max_decay: float, inv_gamma: float, power: float):
        self._ema = EMAModel(
            network.parameters(), decay=max_decay, use_ema_warmup=True, inv_gamma=inv_gamma, power=power
        )
        self.averaged = copy.deepcopy(network).eval().requires_grad_(False)

    @property
    def step_count(self) -> int:
        return int(self._ema.optimization_step)

    def decay(self, step: int | None = None) -> float:
        """The decay applied at optimizer step `step` (default: the next update)."""
        return float(self._ema.get_decay(self.step_count + 1 if step is None else step))

    @torch.no_grad()
    def update(self, network: nn.Module, skipped: torch.Tensor | None = None) -> None:
        """One EMA step; `skipped` (a device flag, speed.sync_free_step) makes it the identity
        without a host sync."""
        if skipped is None:
            self._ema.step(network.parameters())
        else:
            from imagegen.training.fast import masked_ema_update

            masked_ema_update(self._ema, network.parameters(), skipped)

    @torch.no_grad()
    def refresh(self) -> nn.Module:
        """Copy the current averages into `averaged` and return it."""
        self._ema.copy_to(self.averaged.parameters())
        return self.averaged

    def save(self, folder: Path) -> None:
        tensors = {f"p{i:05d}": p.detach().cpu().contiguous() for i, p in enumerate(self._ema.shadow_params)}
        save_file(tensors, str(folder / EMA_FILE), metadata={"step": str(self.step_count)})

    def load(self, folder: Path, step: int) -> None:
        tensors = load_file(str(folder / EMA_FILE))
        if len(tensors) != len(self._ema.shadow_params):
            raise ValueError(
                f"{folder / EMA_FILE}: {len(tensors)} tensors, model has "
                f"{len(self._ema.shadow_params)} parameters"
            )
        for i, shadow in enumerate(self._ema.shadow_params):
            shadow.copy_(tensors[f"p{i:05d}"].to(shadow.device, shadow.dtype))
        self._ema.optimization_step = step

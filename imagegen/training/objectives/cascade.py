"""A whole cascade as one training objective (Saharia et al. 2022, §2.5: the stages are trained
independently; here they share one run and one batch).

`CascadeObjective` trains every stage of `cascade.stages` in one run: one phase, one optimizer and
one EMA per stage network, all on the same batch of `data.resolution` images, each stage seeing
them at its own resolution. This is the "train unet1 and unet2 in one loop" that imagen-pytorch
users asked for (#110, #241, #354). The config rules of a joint cascade live in
`imagegen.config.stages`.
"""

from __future__ import annotations

import torch

from imagegen.config import RunConfig
from imagegen.diffusion import sample_stage
from imagegen.training.objectives.base import PhaseSpec
from imagegen.training.objectives.diffusion import DiffusionObjective, images_at


class CascadeObjective:
    """Every stage of `cascade.stages` in one run: phase = stage = one optimizer, one EMA."""

    def __init__(self, cfg: RunConfig, stages: dict[str, DiffusionObjective]):
        self.cfg = cfg
        self.stages = stages  # stage name -> its single-stage objective, lowest resolution first
        self.phases = tuple(stages)
        self.networks = {name: stage.networks["model"] for name, stage in stages.items()}
        self.ema_networks = {name: cfg.train.ema_max_decay for name in stages}
        last = cfg.cascade.stages[-1].superres
        self.source, self.mode = last.lowres_source, last.downsample  # the same for every stage

    def phase_spec(self, phase: str) -> PhaseSpec:
        spec = self.stages[phase].phase_spec(phase)
        return PhaseSpec(phase, spec.lr, spec.betas, spec.weight_decay)

    def loss(self, phase, batch, text, null_text, generator):
        stage = self.stages[phase]
        # the trainer may have wrapped the network (accelerate.prepare): the stage must use that one
        stage.networks["model"] = self.networks[phase]
        image = images_at(batch, stage.cfg.data.resolution, self.source, self.mode)  # [B, 3, R, R]
        return stage.loss("denoiser", {**batch, "image": image}, text, null_text, generator)

    @torch.no_grad()
    def sample(self, averaged, text, null_text, generator):
        """The whole cascade from text: [B, 3, R_last, R_last] in [-1, 1]."""
        images = None
        for name, stage in self.stages.items():
            size = stage.cfg.model.image_size
            images = sample_stage(
                averaged[name], stage.diffusion, stage.cfg.sample, text, null_text, size, generator, images
            )
        return images

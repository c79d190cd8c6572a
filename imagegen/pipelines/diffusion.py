"""One diffusion run as a pipeline: text encoder + EMA U-Net + `sample_stage`.

    pipe = imagegen.load_pipeline("runs/shapes-cpu-20261123-101500")
    images = pipe("a red circle above a blue square", guidance_scale=5.0, seed=0)   # list[PIL.Image]
    bigger = imagegen.load_pipeline("runs/shapes-sr64-cpu-...")("a red circle", lowres_image=small)

A single-stage run is a one-stage cascade: it samples exactly as that stage would inside a
cascade folder (the run's `sample` section, then the call's arguments), and a standalone
super-resolution run takes the low-res image it super-resolves (`lowres_image`, noised at the
run's `sample.aug_level`). Sampling uses the EMA weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from imagegen import factory
from imagegen.config import RunConfig, SampleConfig, read_saved_config, stage_sample_config
from imagegen.diffusion import NonFiniteOutputError, sample_stage
from imagegen.pipelines.base import (
    check_count,
    check_guidance,
    check_images,
    check_output_type,
    check_sampler,
    check_seed,
    check_thresholding,
    lowres_tensor,
    make_generator,
    normalize_prompts,
    repeat_negatives,
    resolve_device,
    sample_batches,
    to_output,
)
from imagegen.pipelines.fast_sampling import sampling_network


class DiffusionPipeline:
    """One text-conditioned diffusion stage (text-to-image, or super-resolution from `lowres_image`)."""

    def __init__(self, checkpoint: Path, device: str | torch.device | None = None):
        self.checkpoint = checkpoint
        self.cfg: RunConfig = read_saved_config(checkpoint / "config.yaml")
        self.device = resolve_device(device)
        self.encoder = factory.build_text_encoder(self.cfg.text, device=self.device)
        self.model = factory.load_unet(checkpoint / "ema" / "model", self.device)
        factory.check_prediction(self.model, self.cfg.diffusion, checkpoint / "ema" / "model")
        # eager on CPU; compiled or CUDA-graph replayed per the run's `speed` section on a GPU
        self.denoiser = sampling_network(self.model, self.cfg.speed, self.device)
        self.diffusion = factory.build_diffusion(self.cfg.diffusion)

    def __repr__(self) -> str:
        return f"DiffusionPipeline({self.checkpoint}, stage={self.cfg.stage}, device={self.device})"

    @property
    def is_superres(self) -> bool:
        return bool(self.model.config.lowres_cond)

    def settings(
        self,
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = None,
        thresholding: str | None = None,
    ) -> SampleConfig:
        """The run's sampling settings with each given argument in place of its default, checked."""
        sample = stage_sample_config(self.cfg)
        given = {
            "guidance_scale": None if guidance_scale is None else check_guidance(guidance_scale),
            "num_steps": None
            if num_steps is None
            else check_count(num_steps, "num_steps", limit=self.diffusion.num_timesteps),
            "sampler": None if sampler is None else check_sampler(sampler),
            "thresholding": None if thresholding is None else check_thresholding(thresholding),
        }
        sample = dataclasses.replace(sample, **{k: v for k, v in given.items() if v is not None})
        check_guidance(sample.guidance_scale)
        check_thresholding(sample.thresholding)  # the run's own value is checked too
        return sample

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = None,
        seed: int | None = 0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        thresholding: str | None = None,
        lowres_image: Any = None,
        output_type: str = "pil",
    ) -> list[Image.Image] | torch.Tensor:
        """Images for `prompt`; None for guidance_scale, num_steps, sampler and thresholding means
        the run's `sample` config (what the run was tuned with, e.g. configs/shapes-cpu.yaml).

        `lowres_image` (super-resolution runs only, and required by them): a PIL image, a list of
        them (one per prompt), or a float tensor [3, h, w] / [N, 3, h, w] in [-1, 1], h the run's
        `superres.lowres_size`. `output_type`: "pil" or "pt" (float32 [B, 3, H, W] in [-1, 1], CPU).
        """
        prompts = normalize_prompts(prompt)
        check_images(prompts, num_images_per_prompt)
        seed = check_seed(seed)
        check_output_type(output_type)
        settings = self.settings(guidance_scale, num_steps, sampler, thresholding)
        lowres = self._lowres(lowres_image, len(prompts), num_images_per_prompt)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = repeat_negatives(negative_prompt, len(prompts), num_images_per_prompt)
        generator = make_generator(seed, self.device)
        images = []
        for piece in sample_batches(len(prompts), f"sampling {self.cfg.stage}"):  # a bar when > 1 batch
            batch_negatives = negatives if len(negatives) == 1 else negatives[piece]
            batch_lowres = None if lowres is None else lowres[piece]
            images.append(self._sample(prompts[piece], batch_negatives, settings, generator, batch_lowres))
        return to_output(torch.cat(images), output_type)

    def _lowres(self, lowres_image: Any, num_prompts: int, repeat: int) -> torch.Tensor | None:
        """The checked low-res input [B, 3, h, h] of a super-resolution run; None for a base run."""
        if not self.is_superres:
            if lowres_image is not None:
                raise ValueError(f"lowres_image: {self.checkpoint} is a text-to-image run; it takes none")
            return None
        if lowres_image is None:
            raise ValueError(
                f"lowres_image: {self.checkpoint} is a super-resolution run ({self.cfg.superres.lowres_size} "
                f"-> {self.cfg.model.image_size} px); give the {self.cfg.superres.lowres_size} px image to "
                "super-resolve, or assemble it behind a base stage into a cascade"
            )
        lowres = lowres_tensor(lowres_image, num_prompts, repeat)
        if lowres.shape[-1] != self.cfg.superres.lowres_size:
            raise ValueError(
                f"lowres_image is {lowres.shape[-1]}x{lowres.shape[-1]} px; this run super-resolves "
                f"{self.cfg.superres.lowres_size} px images"
            )
        return lowres

    def _sample(
        self,
        prompts: list[str],
        negatives: list[str],
        settings: SampleConfig,
        generator: torch.Generator,
        lowres: torch.Tensor | None,
    ) -> torch.Tensor:
        """One batch [B, C, H, W] in [-1, 1]; a NaN/inf model output raises NonFiniteOutputError
        naming the stage."""
        text = self.encoder.encode(prompts).to(self.device)
        null = self.encoder.encode(negatives).to(self.device)
        model = self.cfg.model
        try:
            return sample_stage(
                self.denoiser,
                self.diffusion,
                settings,
                text,
                null,
                model.image_size,
                generator,
                lowres=lowres,
                channels=model.out_channels,
            )
        except NonFiniteOutputError as error:
            raise NonFiniteOutputError(f"stage {self.cfg.stage} ({self.checkpoint}): {error}") from None

"""One diffusion stage as a training objective: text-to-image, or super-resolution.

`DiffusionObjective` is Imagen's denoising objective on one stage (Saharia et al. 2022, §2): one
phase (`denoiser`), the U-Net. Its `denoiser_inputs(batch, generator)` hook says what the U-Net
denoises and which conditioning it gets beside the text; a text-to-image stage adds none.

`SuperResObjective` is Imagen's super-resolution stage (§2.5 and App. B): the same objective on the
high-res image; the hook adds the low-res version of the same image, corrupted by noise
conditioning augmentation (a random level per sample, `imagegen.diffusion.noise_aug`), and its
level. Conditioning dropout replaces the text only. With `superres.random_crop` the stage trains
on random crops and, being fully convolutional, samples at full size (Imagen's 256 -> 1024 stage).

The low-res input comes from the training image itself: area (box) or antialiased bicubic
downsampling, or, for Shapes, the same scene rendered at the low resolution from the batch's
`spec`s (`superres.lowres_source: render`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imagegen import factory
from imagegen.config import RunConfig
from imagegen.diffusion import sample_stage
from imagegen.diffusion.common import randint
from imagegen.diffusion.noise_aug import noise_augment, random_aug_levels
from imagegen.training.objectives.base import PhaseSpec
from imagegen.utils.images import from_uint8

PREVIEW_SEARCH = 5000  # dataset items searched for captions equal to the sample prompts


# ------------------------------------------------------------------------------------------------
# Images at another resolution, crops
# ------------------------------------------------------------------------------------------------


def downsample(images: torch.Tensor, size: int, mode: str = "area") -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size], antialiased: "area" averages boxes (exact for integer
    factors), "bicubic" is torch's antialiased bicubic. Computed in fp32, returned in images' dtype."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if mode == "area":
        out = F.interpolate(images.float(), size=(size, size), mode="area")
    else:
        out = F.interpolate(
            images.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False
        )
    return out.clamp(-1, 1).to(images.dtype)


def render_specs(specs: list[dict[str, Any]], size: int, device: torch.device) -> torch.Tensor:
    """Shapes scenes (full-truth specs) rendered at `size`: [B, 3, size, size] float32 in [-1, 1]."""
    from imagegen.data.shapes import render_scene

    pixels = np.stack([render_scene(spec, size) for spec in specs])  # [B, size, size, 3] uint8
    return from_uint8(pixels).to(device)  # [B, 3, size, size]


def images_at(batch: dict[str, Any], size: int, source: str, mode: str) -> torch.Tensor:
    """The batch's images at `size` [B, 3, size, size]: downsampled, or re-rendered from `spec`."""
    image = batch["image"]  # [B, 3, H, W]
    if image.shape[-1] == size:
        return image
    if source == "render":
        return render_specs(batch["spec"], size, image.device).to(image.dtype)
    return downsample(image, size, mode)


def random_crop(
    x0: torch.Tensor, lowres: torch.Tensor, crop: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random crop of side `crop` from x0 and lowres, both [B, C, H, W] -> [B, C, crop, crop].

    lowres must already be upsampled to H x W (bilinearly, as the U-Net upsamples it), so a crop
    of it is exactly what the model sees of the full image at sampling time, away from the border.
    """
    batch, _, height, width = x0.shape
    top = randint(height - crop + 1, [batch], generator, torch.device("cpu")).tolist()
    left = randint(width - crop + 1, [batch], generator, torch.device("cpu")).tolist()
    windows = [(slice(None), slice(y, y + crop), slice(x, x + crop)) for y, x in zip(top, left)]
    return (
        torch.stack([x0[i][window] for i, window in enumerate(windows)]),
        torch.stack([lowres[i][window] for i, window in enumerate(windows)]),
    )


# ------------------------------------------------------------------------------------------------
# Objectives
# ------------------------------------------------------------------------------------------------


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

    def denoiser_inputs(
        self, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(x0 [B, C, H, W], conditioning beside the text) for one step: the image, nothing."""
        return batch["image"], {}

    def loss(self, phase, batch, text, null_text, generator):
        x0, extra = self.denoiser_inputs(batch, generator)
        per_sample = self.loss_fn(
            self.networks["model"],
            x0,
            {**text.as_cond(), **extra},
            null_cond=null_text.as_cond(),  # text keys only: the extra conditioning is never dropped
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


class SuperResObjective(DiffusionObjective):
    """One super-resolution stage: denoise the high-res image given text + noise-augmented low-res."""

    def __init__(self, cfg: RunConfig, unet: nn.Module, diffusion: Any, loss_fn: Any):
        super().__init__(cfg, unet, diffusion, loss_fn)
        self._preview: torch.Tensor | None = None

    def lowres_input(self, batch: dict[str, Any]) -> torch.Tensor:
        """The clean low-res input [B, 3, h, w] of a batch of target images [B, 3, H, W]."""
        sr = self.cfg.superres
        return images_at(batch, sr.lowres_size, sr.lowres_source, sr.downsample)

    def training_inputs(
        self, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x0 [B, 3, S, S], lowres [B, 3, s, s], aug_level long [B]) for one training step.

        S, s = H, h without cropping; both = superres.random_crop with it (lowres is then the
        bilinear upsampling of the noised low-res image, cropped with x0).
        """
        x0 = batch["image"]  # [B, 3, H, W]
        lowres = self.lowres_input(batch)  # [B, 3, h, w]
        batch_size, device = x0.shape[0], x0.device
        if self.cfg.noise_aug.enabled:
            level = random_aug_levels(
                batch_size, self.cfg.noise_aug.max_level, self.diffusion, generator, device
            )
            lowres = noise_augment(lowres, level, self.diffusion, generator)
        else:
            level = torch.zeros(batch_size, dtype=torch.long, device=device)
        crop = self.cfg.superres.random_crop
        if crop and crop < x0.shape[-1]:
            lowres = F.interpolate(lowres, size=x0.shape[-2:], mode="bilinear", align_corners=False)
            x0, lowres = random_crop(x0, lowres, crop, generator)
        return x0, lowres, level

    def denoiser_inputs(self, batch, generator):
        """(x0, {lowres, aug_level}): the low-res hook of `DiffusionObjective.loss`."""
        x0, lowres, level = self.training_inputs(batch, generator)
        return x0, {"lowres": lowres, "aug_level": level}

    @torch.no_grad()
    def sample(self, averaged, text, null_text, generator, lowres: torch.Tensor | None = None):
        """Super-resolve `lowres` [B, 3, h, w] (default: low-res versions of training scenes whose
        captions are the trainer's sample prompts) at sample.aug_level -> [B, 3, H, W]."""
        if lowres is None:
            lowres = self.preview_lowres(text.tokens.shape[0], text.tokens.device)
        size = self.cfg.model.image_size
        return sample_stage(
            averaged["model"], self.diffusion, self.cfg.sample, text, null_text, size, generator, lowres
        )

    def preview_lowres(self, count: int, device: torch.device) -> torch.Tensor:
        """Low-res inputs for the trainer's sample grid [count, 3, h, w]: for each sample prompt, the
        first training item with that caption (else item i), prepared as in training (no noise)."""
        if self._preview is None or self._preview.shape[0] != count:
            dataset = factory.build_dataset(self.cfg.data)
            first_with = {}
            for i in range(min(len(dataset), PREVIEW_SEARCH)):
                first_with.setdefault(dataset.caption(i), i)
            prompts = self.cfg.train.sample_prompts
            indices = [
                first_with.get(prompts[i], i % len(dataset)) if i < len(prompts) else i % len(dataset)
                for i in range(count)
            ]
            items = [dataset[i] for i in indices]
            batch = {"image": torch.stack([item["image"] for item in items])}
            if "spec" in items[0]:
                batch["spec"] = [item["spec"] for item in items]
            self._preview = self.lowres_input(batch)
        return self._preview.to(device)

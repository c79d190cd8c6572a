"""Super-resolution stages and whole cascades as training objectives.

`SuperResObjective` is Imagen's super-resolution stage (Saharia et al. 2022, §2.5 and App. B):
the denoising objective of `DiffusionObjective` on the high-res image, conditioned on the text and
on the low-res version of the same image, which is corrupted by noise conditioning augmentation
(a random level per sample, `imagegen.diffusion.noise_aug`) and given with its level. Conditioning
dropout replaces the text only. With `superres.random_crop` the stage trains on random crops and,
being fully convolutional, samples at full size (Imagen's 256 -> 1024 stage).

`CascadeObjective` trains every stage of `cascade.stages` in one run: one phase, one optimizer and
one EMA per stage network, all on the same batch of `data.resolution` images, each stage seeing
them at its own resolution. This is the "train unet1 and unet2 in one loop" that imagen-pytorch
users asked for (#110, #241, #354).

The low-res input comes from the training image itself: area (box) or antialiased bicubic
downsampling, or, for Shapes, the same scene rendered at the low resolution from the batch's
`spec`s (`superres.lowres_source: render`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imagegen import factory
from imagegen.cascade.manifest import check_stage_chain
from imagegen.config import RunConfig, stage_run_config
from imagegen.diffusion import sample_stage
from imagegen.diffusion.common import randint
from imagegen.diffusion.noise_aug import noise_augment, random_aug_levels
from imagegen.training.objectives import DiffusionObjective, PhaseSpec

log = logging.getLogger("imagegen.train")

LOWRES_SOURCES = ("downsample", "render")
DOWNSAMPLE_MODES = ("area", "bicubic")
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
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [B, 3, size, size]
    return images.to(device)


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
# Config checks (run before any compute)
# ------------------------------------------------------------------------------------------------


def check_stage_config(cfg: RunConfig, where: str = "") -> None:
    """ValueError naming the key when a single stage's super-resolution settings cannot work."""
    model, sr = cfg.model, cfg.superres
    if model.lowres_cond != (sr.lowres_size > 0):
        raise ValueError(
            f"{where}superres.lowres_size is {sr.lowres_size} but {where}model.lowres_cond is "
            f"{model.lowres_cond}: a super-resolution stage needs both (the low-res side > 0), a "
            "text-to-image stage neither"
        )
    for name, level in (
        ("noise_aug.max_level", cfg.noise_aug.max_level),
        ("sample.aug_level", cfg.sample.aug_level),
    ):
        if not 0 <= level <= 1:
            raise ValueError(f"{where}{name}: a fraction of the schedule in [0, 1], got {level}")
    if not model.lowres_cond:
        if sr.random_crop:
            raise ValueError(f"{where}superres.random_crop: only super-resolution stages train on crops")
        return
    if sr.lowres_size >= cfg.data.resolution:
        raise ValueError(
            f"stage resolutions must increase: {where}superres.lowres_size {sr.lowres_size} is not below "
            f"the stage's resolution {cfg.data.resolution}"
        )
    if model.image_size != cfg.data.resolution:
        raise ValueError(
            f"{where}model.image_size {model.image_size} must equal the stage's resolution "
            f"{cfg.data.resolution} (a super-resolution stage samples at full size)"
        )
    if sr.lowres_source not in LOWRES_SOURCES:
        raise ValueError(
            f"{where}superres.lowres_source: {sr.lowres_source!r}; allowed: {', '.join(LOWRES_SOURCES)}"
        )
    if sr.downsample not in DOWNSAMPLE_MODES:
        raise ValueError(
            f"{where}superres.downsample: {sr.downsample!r}; allowed: {', '.join(DOWNSAMPLE_MODES)}"
        )
    if sr.lowres_source == "render" and cfg.data.kind != "shapes":
        raise ValueError(
            f"{where}superres.lowres_source=render re-renders Shapes scenes; data.kind {cfg.data.kind!r} has "
            "none (use downsample)"
        )
    factor = 2 ** (len(model.channels) - 1)
    if sr.random_crop and not (0 < sr.random_crop <= cfg.data.resolution and sr.random_crop % factor == 0):
        raise ValueError(
            f"{where}superres.random_crop {sr.random_crop}: must be at most {cfg.data.resolution} and a "
            f"multiple of {factor} (the U-Net's downsampling factor)"
        )


def check_cascade_config(cfg: RunConfig) -> None:
    """ValueError when `cascade.stages` cannot train jointly on the run's data."""
    stages = cfg.cascade.stages
    if not stages:
        raise ValueError("train.objective=cascade needs cascade.stages (lowest resolution first)")
    for i, stage in enumerate(stages):
        check_stage_config(stage_run_config(cfg, stage), where=f"cascade.stages[{i}] ({stage.stage}): ")
    check_stage_chain([(s.stage, s.model.image_size, s.superres.lowres_size) for s in stages])
    if cfg.data.resolution != stages[-1].model.image_size:
        raise ValueError(
            f"data.resolution {cfg.data.resolution} must be the last stage's resolution "
            f"({stages[-1].stage}: {stages[-1].model.image_size}); lower stages see it downsampled"
        )
    ways = {(s.superres.lowres_source, s.superres.downsample) for s in stages}
    if len(ways) > 1:
        raise ValueError(
            "cascade.stages must agree on superres.lowres_source and superres.downsample (how the "
            f"data.resolution images are brought to each stage's resolution); got {sorted(ways)}"
        )


def check_run_config(cfg: RunConfig) -> None:
    """Every super-resolution / cascade check of a run, before any data, text or network is built."""
    if cfg.train.objective == "cascade":
        check_cascade_config(cfg)
    elif cfg.train.objective == "diffusion":
        if cfg.cascade.stages:
            raise ValueError("cascade.stages is set: train it with train.objective=cascade")
        check_stage_config(cfg)


# ------------------------------------------------------------------------------------------------
# Objectives
# ------------------------------------------------------------------------------------------------


class SuperResObjective(DiffusionObjective):
    """One super-resolution stage: denoise the high-res image given text + noise-augmented low-res."""

    def __init__(self, cfg: RunConfig, unet: torch.nn.Module, diffusion: Any, loss_fn: Any):
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

    def loss(self, phase, batch, text, null_text, generator):
        x0, lowres, level = self.training_inputs(batch, generator)
        cond = {**text.as_cond(), "lowres": lowres, "aug_level": level}
        per_sample = self.loss_fn(
            self.networks["model"],
            x0,
            cond,
            null_cond=null_text.as_cond(),  # text keys only: lowres and aug_level are never dropped
            cond_drop_prob=self.cfg.diffusion.cond_drop_prob,
            generator=generator,
        )  # [B]
        loss = per_sample.mean()
        return loss, {"loss": loss}

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

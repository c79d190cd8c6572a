"""Run a cascade folder: text -> base stage -> super-resolution stages, with per-stage settings.

    pipe = imagegen.load_pipeline("runs/shapes-cascade")            # a folder with manifest.json
    images = pipe("a red circle above a blue square", seed=0)        # 128 px PIL images
    small = pipe("a red circle", stop_after="base32")                # 32 px: stop after any stage
    images = pipe("a red circle", stage_overrides={"sr64": {"num_steps": 10, "guidance_scale": 3}})
    bigger = pipe("a red circle", lowres_image=Image.open("mine.png"))   # super-resolve a user's image

Each stage samples with its manifest defaults (written from its training config), then the
call-wide `guidance_scale` / `num_steps` / `sampler` when given, then `stage_overrides[stage]`.
A super-resolution stage gets the previous stage's output, corrupted at its fixed noise level
`aug_level` (Imagen §2.5; `imagegen.diffusion.noise_aug`), and the same prompt: text guidance
applies in every stage, the low-res input is shared by both guidance branches. Stage i samples
with its own generator seeded `seed + i`, so stopping early or starting from a given low-res
image reproduces exactly the stages a full call would have run.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from imagegen import factory
from imagegen.cascade.manifest import MODEL_DIR, Manifest, StageEntry, read_manifest
from imagegen.cascade.pipeline import (
    DiffusionPipeline,
    check_count,
    check_guidance,
    check_images,
    check_sampler,
    check_seed,
    normalize_prompts,
    resolve_device,
)
from imagegen.config import RunConfig, SampleConfig, read_saved_config
from imagegen.data.transforms import pil_to_tensor, to_rgb
from imagegen.diffusion import NonFiniteOutputError
from imagegen.utils.images import tensor_to_pil

log = logging.getLogger("imagegen.generate")

OUTPUT_TYPES = ("pil", "pt")


# ------------------------------------------------------------------------------------------------
# One stage's sampling (shared with the training objectives' sample grids)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageSettings:
    """How one stage samples; `stage_overrides` may change any of these fields."""

    sampler: str
    num_steps: int
    guidance_scale: float
    thresholding: str
    threshold_percentile: float
    aug_level: float  # noise level of the low-res input, a fraction of num_timesteps (SR stages only)

    @classmethod
    def from_sample_config(cls, sample: SampleConfig) -> StageSettings:
        return cls(**{field.name: getattr(sample, field.name) for field in dataclasses.fields(cls)})

    @classmethod
    def from_entry(cls, entry: StageEntry) -> StageSettings:
        return cls(**{field.name: getattr(entry, field.name) for field in dataclasses.fields(cls)})

    def override(self, changes: dict[str, Any], where: str = "") -> StageSettings:
        """A copy with `changes`; ValueError naming `where` and the key for unknown keys or bad values."""
        allowed = [field.name for field in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise ValueError(f"{where}: unknown setting(s) {unknown}; allowed: {', '.join(allowed)}")
        prefix = f"{where}." if where else ""
        if "num_steps" in changes:
            check_count(changes["num_steps"], f"{prefix}num_steps")
        if "guidance_scale" in changes:
            try:
                changes = {**changes, "guidance_scale": check_guidance(changes["guidance_scale"])}
            except ValueError as error:
                raise ValueError(f"{prefix}{error}") from None
        level = changes.get("aug_level", 0.0)
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= 1:
            raise ValueError(f"{prefix}aug_level: a fraction of the schedule in [0, 1], got {level!r}")
        return dataclasses.replace(self, **changes)


@torch.no_grad()
def sample_stage(
    model: torch.nn.Module,
    diffusion: Any,
    settings: StageSettings,
    text: Any,
    null_text: Any,
    resolution: int,
    generator: torch.Generator | None,
    lowres: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample one stage: [B, 3, resolution, resolution] float32 in [-1, 1].

    text / null_text: `TextEncoding`s (batch B, and 1 or B). lowres [B, 3, h, w] in [-1, 1] for a
    super-resolution stage (None for a text-to-image stage): it is noised at `settings.aug_level`
    (noise drawn from `generator` first) and given with that level to the model.
    """
    from imagegen.diffusion import sample_images
    from imagegen.diffusion.noise_aug import aug_timestep, noise_augment

    cond = text.as_cond()
    batch = text.tokens.shape[0]
    if lowres is not None:
        level = aug_timestep(settings.aug_level, diffusion.num_timesteps)
        levels = torch.full((batch,), level, dtype=torch.long, device=text.tokens.device)  # [B]
        lowres = lowres.to(text.tokens.device, torch.float32)
        cond = {**cond, "lowres": noise_augment(lowres, levels, diffusion, generator), "aug_level": levels}
    return sample_images(
        model,
        (batch, 3, resolution, resolution),
        cond,
        null_text.as_cond(),
        diffusion,
        sampler=settings.sampler,
        num_steps=settings.num_steps,
        guidance_scale=settings.guidance_scale,
        thresholding=settings.thresholding,
        percentile=settings.threshold_percentile,
        generator=generator,
    )


# ------------------------------------------------------------------------------------------------
# The cascade pipeline
# ------------------------------------------------------------------------------------------------


@dataclass
class LoadedStage:
    entry: StageEntry
    cfg: RunConfig
    model: torch.nn.Module
    diffusion: Any


class CascadePipeline:
    """Every stage of a cascade folder (see `imagegen.cascade.manifest`), loaded once."""

    def __init__(self, folder: str | Path, device: str | torch.device | None = None):
        self.folder = Path(folder)
        self.checkpoint = self.folder  # what `python -m imagegen.generate` prints as the model
        self.manifest: Manifest = read_manifest(self.folder)  # all checks before any weights load
        self.device = resolve_device(device)
        self.stages = [self._load_stage(entry) for entry in self.manifest.stages]
        self.encoder = factory.build_text_encoder(self.stages[0].cfg.text, device=self.device)
        if self.encoder.identity != self.manifest.text_encoder:
            raise ValueError(
                f"cascade {self.folder}: the text encoder loaded now, {self.encoder.identity}, is not the "
                f"one the stages were trained with, {self.manifest.text_encoder}"
            )

    def __repr__(self) -> str:
        return f"CascadePipeline({self.folder}, stages={self.stage_names}, device={self.device})"

    @property
    def stage_names(self) -> list[str]:
        return self.manifest.stage_names()

    def _load_stage(self, entry: StageEntry) -> LoadedStage:
        stage_dir = self.folder / entry.name
        cfg = read_saved_config(stage_dir / "config.yaml")
        model = factory.load_unet(stage_dir / MODEL_DIR, self.device)
        if model.config.lowres_cond != entry.is_superres:
            raise ValueError(
                f"cascade {self.folder}: stage {entry.name!r} has lowres_size {entry.lowres_size} in the "
                f"manifest but its model has lowres_cond={model.config.lowres_cond}"
            )
        return LoadedStage(entry, cfg, model, factory.build_diffusion(cfg.diffusion))

    # -- arguments --------------------------------------------------------------------------

    def stage_settings(
        self,
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = None,
        stage_overrides: dict[str, dict[str, Any]] | None = None,
    ) -> list[StageSettings]:
        """Per stage: manifest defaults <- call-wide arguments <- stage_overrides[stage]."""
        from imagegen.diffusion import THRESHOLDING_MODES

        if not isinstance(stage_overrides or {}, dict):
            raise ValueError(
                f"stage_overrides: expected {{stage: {{setting: value}}}}, got {stage_overrides!r}"
            )
        overrides = dict(stage_overrides or {})
        unknown = sorted(set(overrides) - set(self.stage_names))
        if unknown:
            raise ValueError(f"stage_overrides: unknown stage(s) {unknown}; stages: {self.stage_names}")
        call_wide = {
            key: value
            for key, value in (
                ("guidance_scale", guidance_scale),
                ("num_steps", num_steps),
                ("sampler", sampler),
            )
            if value is not None
        }
        settings = []
        for stage in self.stages:
            changes = overrides.get(stage.entry.name, {})
            if not isinstance(changes, dict):
                raise ValueError(f"stage_overrides[{stage.entry.name!r}]: expected a dict, got {changes!r}")
            where = f"stage_overrides[{stage.entry.name!r}]"
            merged = StageSettings.from_entry(stage.entry).override(call_wide)
            merged = merged.override(changes, where)
            check_sampler(merged.sampler)
            if merged.thresholding not in THRESHOLDING_MODES:
                raise ValueError(
                    f"{where}.thresholding: {merged.thresholding!r}; allowed: {', '.join(THRESHOLDING_MODES)}"
                )
            if not 0 < merged.threshold_percentile <= 1:
                raise ValueError(
                    f"{where}.threshold_percentile: in (0, 1], got {merged.threshold_percentile}"
                )
            settings.append(merged)
        return settings

    def stage_span(self, lowres_size: int | None, stop_after: str | None) -> tuple[int, int]:
        """Indices (first, last) of the stages to run."""
        first = 0
        if lowres_size is not None:
            takes = {
                stage.entry.lowres_size: i for i, stage in enumerate(self.stages) if stage.entry.is_superres
            }
            if lowres_size not in takes:
                accepted = ", ".join(f"{size} px ({self.stages[i].entry.name})" for size, i in takes.items())
                raise ValueError(
                    f"lowres_image is {lowres_size}x{lowres_size} px; this cascade's super-resolution stages "
                    f"take {accepted or 'nothing (it has none)'}"
                )
            first = takes[lowres_size]
        last = len(self.stages) - 1
        if stop_after is not None:
            if stop_after not in self.stage_names:
                raise ValueError(f"stop_after: unknown stage {stop_after!r}; stages: {self.stage_names}")
            last = self.stage_names.index(stop_after)
            if last < first:
                raise ValueError(
                    f"stop_after={stop_after!r} comes before {self.stage_names[first]!r}, the stage that "
                    "takes the lowres_image"
                )
        return first, last

    # -- generation -------------------------------------------------------------------------

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
        stage_overrides: dict[str, dict[str, Any]] | None = None,
        stop_after: str | None = None,
        lowres_image: Any = None,
        output_type: str = "pil",
    ) -> list[Image.Image] | torch.Tensor:
        """Text (and optionally a low-res image) -> images of the last stage run.

        `guidance_scale`, `num_steps`, `sampler`: None = each stage's default, a value = every stage;
        `stage_overrides`: {stage: {setting: value}} over both (settings: the `StageSettings`
        fields, e.g. num_steps, guidance_scale, sampler, aug_level); `stop_after`: a stage name;
        `lowres_image`: a PIL image, a list of them (one per prompt), or a float tensor [3, h, w] /
        [N, 3, h, w] in [-1, 1]; the run starts at the stage whose low-res input is h x h.
        `output_type`: "pil" (list of PIL images) or "pt" (float32 [B, 3, H, W] in [-1, 1], CPU).
        Every argument is checked before any network runs.
        """
        prompts = normalize_prompts(prompt)
        check_images(prompts, num_images_per_prompt)
        seed = check_seed(seed)
        if guidance_scale is not None:
            check_guidance(guidance_scale)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type: expected one of {OUTPUT_TYPES}, got {output_type!r}")
        settings = self.stage_settings(guidance_scale, num_steps, sampler, stage_overrides)
        lowres = _lowres_tensor(lowres_image, len(prompts), num_images_per_prompt)
        first, last = self.stage_span(None if lowres is None else lowres.shape[-1], stop_after)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = DiffusionPipeline._negatives(negative_prompt, len(prompts), num_images_per_prompt)
        text = self.encoder.encode(prompts).to(self.device)
        null = self.encoder.encode(negatives).to(self.device)
        base_seed = seed if seed is not None else int(torch.randint(0, 2**62, ()).item())
        images = lowres
        for index in range(first, last + 1):
            stage = self.stages[index]
            generator = torch.Generator(device=self.device).manual_seed((base_seed + index) % 2**63)
            try:
                images = sample_stage(
                    stage.model,
                    stage.diffusion,
                    settings[index],
                    text,
                    null,
                    stage.entry.resolution,
                    generator,
                    lowres=images,
                )  # [B, 3, R, R] in [-1, 1]
            except NonFiniteOutputError as error:
                raise NonFiniteOutputError(f"stage {stage.entry.name} of {self.folder}: {error}") from None
        return images.cpu() if output_type == "pt" else tensor_to_pil(images)


def _lowres_tensor(lowres_image: Any, num_prompts: int, repeat: int) -> torch.Tensor | None:
    """lowres_image (PIL, list of PIL, tensor [3, h, w] or [N, 3, h, w]) -> [B, 3, h, h] float32."""
    if lowres_image is None:
        return None
    if isinstance(lowres_image, Image.Image):
        lowres_image = [lowres_image]
    if (
        isinstance(lowres_image, (list, tuple))
        and lowres_image
        and all(isinstance(image, Image.Image) for image in lowres_image)
    ):
        sizes = {image.size for image in lowres_image}
        if len(sizes) != 1:
            raise ValueError(f"lowres_image: every image must have the same size; got {sorted(sizes)}")
        tensor = torch.stack([pil_to_tensor(to_rgb(image)) for image in lowres_image])  # [N, 3, h, w]
    elif isinstance(lowres_image, torch.Tensor):
        tensor = lowres_image[None] if lowres_image.ndim == 3 else lowres_image
        if tensor.ndim != 4 or tensor.shape[1] != 3 or not tensor.is_floating_point():
            raise ValueError(
                f"lowres_image: a float tensor [3, h, w] or [N, 3, h, w] in [-1, 1] expected; got "
                f"{tensor.dtype} of shape {tuple(lowres_image.shape)}"
            )
        low, high = float(tensor.min()), float(tensor.max())
        if low < -1.001 or high > 1.001:
            raise ValueError(f"lowres_image: tensor values must be in [-1, 1]; got [{low:.3g}, {high:.3g}]")
        tensor = tensor.detach().float().cpu()
    else:
        raise ValueError(
            f"lowres_image: expected a PIL image, a list of them, or a tensor; got {lowres_image!r}"
        )
    if tensor.shape[-1] != tensor.shape[-2]:
        raise ValueError(f"lowres_image: must be square; got {tensor.shape[-1]}x{tensor.shape[-2]} (w x h)")
    if tensor.shape[0] not in (1, num_prompts):
        raise ValueError(
            f"lowres_image: give one image or one per prompt ({num_prompts}), got {tensor.shape[0]}"
        )
    tensor = tensor.expand(num_prompts, -1, -1, -1) if tensor.shape[0] == 1 else tensor
    return tensor.repeat_interleave(repeat, dim=0)  # [B, 3, h, h], prompt-major like the prompts


# ------------------------------------------------------------------------------------------------
# Module-level entry points (dispatched to by imagegen.cascade.pipeline)
# ------------------------------------------------------------------------------------------------

_LOADED: dict[tuple[str, str], CascadePipeline] = {}


def load_cascade(folder: str | Path, device: str | torch.device | None = None) -> CascadePipeline:
    return CascadePipeline(folder, device=device)


def generate_cascade(prompt: str | list[str], model: str | Path, device: str | None = None, **kwargs) -> Any:
    """`imagegen.generate(..., model=CASCADE)`: load the cascade once per (folder, device), then call it."""
    normalize_prompts(prompt)
    key = (str(Path(model).resolve()), str(device))
    if key not in _LOADED:
        _LOADED[key] = CascadePipeline(Path(key[0]), device=device)
    return _LOADED[key](prompt, **kwargs)

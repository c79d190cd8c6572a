"""Run a cascade folder: text -> base stage -> super-resolution stages, with per-stage settings.

    pipe = imagegen.load_pipeline("runs/shapes-cascade")            # a folder with manifest.json
    images = pipe("a red circle above a blue square", seed=0)        # 128 px PIL images
    small = pipe("a red circle", stop_after="base32")                # 32 px: stop after any stage
    images = pipe("a red circle", stage_overrides={"sr64": {"num_steps": 10, "guidance_scale": 3}})
    bigger = pipe("a red circle", lowres_image=Image.open("mine.png"))   # super-resolve a user's image

Each stage samples with its manifest defaults (written from its training config), then the
call-wide `guidance_scale` / `num_steps` / `sampler` / `thresholding` when given, then
`stage_overrides[stage]`.
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
from tqdm.auto import tqdm

from imagegen import factory
from imagegen.cascade.manifest import MODEL_DIR, SAMPLE_KEYS, Manifest, StageEntry, read_manifest
from imagegen.config import RunConfig, SampleConfig, read_saved_config
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
    normalize_prompts,
    repeat_negatives,
    resolve_device,
    to_output,
)

log = logging.getLogger("imagegen.generate")


# ------------------------------------------------------------------------------------------------
# One stage's settings: the manifest's SampleConfig (entry.sample), with overrides
# ------------------------------------------------------------------------------------------------


def override_settings(settings: SampleConfig, changes: dict[str, Any], where: str = "") -> SampleConfig:
    """A copy with `changes`, every field checked; ValueError naming `where` and the key for an
    unknown key or a bad value (the manifest's own values included: a folder is untrusted input)."""
    unknown = sorted(set(changes) - set(SAMPLE_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; allowed: {', '.join(SAMPLE_KEYS)}")
    merged = dataclasses.replace(settings, **changes)
    checks = {
        "num_steps": lambda value: check_count(value, "num_steps"),
        "guidance_scale": check_guidance,
        "sampler": check_sampler,
        "thresholding": check_thresholding,
        "aug_level": _check_fraction("aug_level", "a fraction of the schedule in [0, 1]", closed=True),
        "threshold_percentile": _check_fraction("threshold_percentile", "in (0, 1]", closed=False),
    }
    checked = {}
    for key, check in checks.items():
        try:
            checked[key] = check(getattr(merged, key))
        except ValueError as error:
            raise ValueError(f"{where}.{error}" if where else str(error)) from None  # names the key
    return dataclasses.replace(merged, **checked)


def _check_fraction(name: str, expected: str, closed: bool):
    def check(value: Any) -> float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not (0 <= value <= 1 if closed else 0 < value <= 1):
            raise ValueError(f"{name}: {expected}, got {value!r}")
        return float(value)

    return check


# ------------------------------------------------------------------------------------------------
# The cascade pipeline
# ------------------------------------------------------------------------------------------------


@dataclass
class LoadedStage:
    entry: StageEntry
    cfg: RunConfig
    model: torch.nn.Module
    diffusion: Any


def load_stage(stage_dir: Path, entry: StageEntry, device: torch.device) -> LoadedStage:
    """A stage folder (config.yaml, model/) as a cascade or an unCLIP folder keeps it: its EMA
    U-Net on `device`, checked against its config's prediction, and its diffusion."""
    cfg = read_saved_config(stage_dir / "config.yaml")
    model = factory.load_unet(stage_dir / MODEL_DIR, device)
    factory.check_prediction(model, cfg.diffusion, stage_dir / MODEL_DIR)
    return LoadedStage(entry, cfg, model, factory.build_diffusion(cfg.diffusion))


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
        stage = load_stage(self.folder / entry.name, entry, self.device)
        model = stage.model
        if model.config.lowres_cond != entry.is_superres:
            raise ValueError(
                f"cascade {self.folder}: stage {entry.name!r} has lowres_size {entry.lowres_size} in the "
                f"manifest but its model has lowres_cond={model.config.lowres_cond}"
            )
        return stage

    # -- arguments --------------------------------------------------------------------------

    def stage_settings(
        self,
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = None,
        thresholding: str | None = None,
        stage_overrides: dict[str, dict[str, Any]] | None = None,
    ) -> list[SampleConfig]:
        """Per stage: manifest defaults <- call-wide arguments <- stage_overrides[stage]."""
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
                ("thresholding", thresholding),
            )
            if value is not None
        }
        settings = []
        for stage in self.stages:
            changes = overrides.get(stage.entry.name, {})
            if not isinstance(changes, dict):
                raise ValueError(f"stage_overrides[{stage.entry.name!r}]: expected a dict, got {changes!r}")
            where = f"stage_overrides[{stage.entry.name!r}]"
            merged = override_settings(stage.entry.sample, call_wide)  # a copy: the entry is kept
            merged = override_settings(merged, changes, where)
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
        thresholding: str | None = None,
        stage_overrides: dict[str, dict[str, Any]] | None = None,
        stop_after: str | None = None,
        lowres_image: Any = None,
        output_type: str = "pil",
    ) -> list[Image.Image] | torch.Tensor:
        """Text (and optionally a low-res image) -> images of the last stage run.

        `guidance_scale`, `num_steps`, `sampler`, `thresholding`: None = each stage's default, a
        value = every stage;
        `stage_overrides`: {stage: {setting: value}} over both (settings: the `SampleConfig`
        fields, e.g. num_steps, guidance_scale, sampler, thresholding, aug_level); `stop_after`: a stage name;
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
        check_output_type(output_type)
        settings = self.stage_settings(guidance_scale, num_steps, sampler, thresholding, stage_overrides)
        lowres = lowres_tensor(lowres_image, len(prompts), num_images_per_prompt)
        first, last = self.stage_span(None if lowres is None else lowres.shape[-1], stop_after)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = repeat_negatives(negative_prompt, len(prompts), num_images_per_prompt)
        text = self.encoder.encode(prompts).to(self.device)
        null = self.encoder.encode(negatives).to(self.device)
        base_seed = seed if seed is not None else int(torch.randint(0, 2**62, ()).item())
        images = lowres
        stages = range(first, last + 1)  # a bar, one tick per stage, when there are several
        for index in tqdm(stages, desc="cascade", unit="stage", disable=len(stages) <= 1, leave=False):
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
        return to_output(images, output_type)

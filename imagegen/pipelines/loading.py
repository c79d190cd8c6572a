"""Load a trained model once, generate many times: `load_pipeline(path)` and `generate(...)`.

    pipe = imagegen.load_pipeline("runs/shapes-cpu-20261123-101500")
    images = pipe("a red circle above a blue square", guidance_scale=5.0, seed=0)   # list[PIL.Image]
    images = imagegen.generate(["a red circle", "two blue squares"], num_images_per_prompt=4)

`path` may be a run directory (its newest intact checkpoint is used), one checkpoint folder, a
cascade folder (manifest.json), an unCLIP folder (unclip.json: CLIP + prior + decoder), None or
"default" (the bundled model that ships with the package: imagegen/assets/default, a Shapes base
32 px stage) or "latest" (the newest run under `runs/`). Which folder a name meant is logged
once. A checkpoint's `train.objective` picks the pipeline: diffusion or GAN.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from imagegen.cascade.manifest import is_cascade_folder
from imagegen.cascade.unclip import is_unclip_folder
from imagegen.config import read_saved_config
from imagegen.pipelines.base import Pipeline, check_guidance, check_images, check_seed, normalize_prompts
from imagegen.pipelines.cascade import CascadePipeline
from imagegen.pipelines.diffusion import DiffusionPipeline
from imagegen.pipelines.gan import GANPipeline
from imagegen.pipelines.unclip import UnclipPipeline
from imagegen.utils.runs import model_folder, resolve_checkpoint

log = logging.getLogger("imagegen.generate")


def load_pipeline(path: str | Path | None = None, device: str | torch.device | None = None) -> Pipeline:
    """Load a run, checkpoint or cascade folder (manifest.json), or the model a name stands for
    (None / "default": the bundled model; "latest": the newest run), for repeated generation."""
    folder = model_folder(path)
    if is_cascade_folder(folder):
        return CascadePipeline(folder, device=device)
    if is_unclip_folder(folder):
        return UnclipPipeline(folder, device=device)
    return open_checkpoint(resolve_checkpoint(folder), device=device)


def open_checkpoint(checkpoint: Path, device: str | torch.device | None = None) -> Pipeline:
    """The pipeline of one checkpoint folder, by its config's `train.objective`: diffusion or GAN."""
    objective = read_saved_config(checkpoint / "config.yaml").train.objective
    if objective == "cascade":
        raise ValueError(
            f"{checkpoint} is a checkpoint of a joint cascade run: assemble it into a cascade folder "
            f"first (python -m imagegen.cascade assemble {checkpoint.parent.parent} --out CASCADE_DIR), "
            "then load or generate with that folder"
        )
    if objective == "clip":
        raise ValueError(
            f"{checkpoint} is a checkpoint of a CLIP run, which draws no images; its CLIP "
            f"({checkpoint / 'ema' / 'clip'}) conditions other runs as text.encoder=clip "
            "text.name_or_path=THAT_FOLDER (docs/unclip.md)"
        )
    if objective in ("prior", "decoder"):
        raise ValueError(
            f"{checkpoint} is a checkpoint of an unCLIP {objective} run: join a prior and a decoder "
            "into an unCLIP folder first (python -m imagegen.cascade unclip --prior PRIOR_RUN "
            "--decoder DECODER_RUN --out UNCLIP_DIR), then load or generate with that folder"
        )
    if objective == "gan":
        return GANPipeline(checkpoint, device=device)
    return DiffusionPipeline(checkpoint, device=device)


_LOADED: dict[tuple[str, str], Pipeline] = {}


def _loaded(model: str | Path | None, device: str | None) -> tuple[str, Pipeline]:
    """The pipeline of `model` on `device`, loaded on first use and kept for later calls."""
    folder = model_folder(model)
    cascade, unclip = is_cascade_folder(folder), is_unclip_folder(folder)
    whole = cascade or unclip  # a folder loaded as a whole, not a run's checkpoint
    key = (str((folder if whole else resolve_checkpoint(folder)).resolve()), str(device))
    if key not in _LOADED:
        path = Path(key[0])
        if cascade:
            _LOADED[key] = CascadePipeline(path, device=device)
        elif unclip:
            _LOADED[key] = UnclipPipeline(path, device=device)
        else:
            _LOADED[key] = open_checkpoint(path, device)
    return key[0], _LOADED[key]


def generate(
    prompt: str | list[str],
    guidance_scale: float | None = None,
    num_steps: int | None = None,
    sampler: str | None = None,
    seed: int | None = 0,
    negative_prompt: str | list[str] | None = None,
    model: str | Path | None = None,
    num_images_per_prompt: int = 1,
    device: str | None = None,
    truncation: float | None = None,
    **options: Any,
) -> list[Image.Image] | torch.Tensor:
    """Text -> images with a trained model (loaded once per path and device, kept for later calls).

    `prompt`: a string or a list of strings ("" = unconditional); `guidance_scale` w >= 0
    (1 = conditional only; None = the run's `sample.guidance_scale`, or each stage's default for a
    cascade); `num_steps`/`sampler` default to the run's `sample` config; `negative_prompt`
    replaces the unconditional branch;
    `model`: run dir, checkpoint, cascade folder; None or "default" for the bundled model (a
    Shapes base 32 px stage shipped with the package); "latest" for the newest run under runs/.
    `options`: `thresholding`, `output_type`, `lowres_image` (cascades and super-resolution runs);
    for cascade folders also `stage_overrides`, `stop_after` (see `CascadePipeline.__call__`); for
    unCLIP folders `prior_guidance_scale`, `prior_num_steps`, `image_embed_source`, `stop_after`
    (see `UnclipPipeline.__call__`).
    `truncation` (GAN runs only; None = the run's gan.truncation): a diffusion model ignores it
    with a warning, and a GAN ignores guidance_scale, num_steps, sampler, thresholding and
    negative_prompt with a warning. Returns len(prompt) * num_images_per_prompt PIL images.
    """
    prompts = normalize_prompts(prompt)
    check_images(prompts, num_images_per_prompt)
    if guidance_scale is not None:
        check_guidance(guidance_scale)
    check_seed(seed)
    folder = model_folder(model)
    if "stage_overrides" in options and not is_cascade_folder(folder):
        raise ValueError("stage_overrides: only a cascade folder (with manifest.json) takes it")
    if "stop_after" in options and not (is_cascade_folder(folder) or is_unclip_folder(folder)):
        raise ValueError(
            "stop_after: only a cascade folder (manifest.json) or an unCLIP folder (unclip.json) takes it"
        )
    unclip_only = sorted({"prior_guidance_scale", "prior_num_steps", "image_embed_source"} & set(options))
    if unclip_only and not is_unclip_folder(folder):
        raise ValueError(f"{unclip_only}: only an unCLIP folder (with unclip.json) takes these")
    name, pipe = _loaded(model, device)
    if isinstance(pipe, GANPipeline):
        options = {**options, "truncation": truncation}
    else:
        ignore_truncation(truncation, name)
    return pipe(
        prompt,
        guidance_scale=guidance_scale,
        num_steps=num_steps,
        sampler=sampler,
        seed=seed,
        negative_prompt=negative_prompt,
        num_images_per_prompt=num_images_per_prompt,
        **options,
    )


_WARNED_TRUNCATION: set[str] = set()


def ignore_truncation(truncation: float | None, model: str) -> None:
    """A diffusion model ignores `truncation` with a warning (once per model), as a GAN ignores
    guidance_scale: one call site can sweep both kinds of model."""
    if truncation is not None and model not in _WARNED_TRUNCATION:
        _WARNED_TRUNCATION.add(model)
        log.warning("truncation applies only to a GAN; ignored by the diffusion model %s", model)

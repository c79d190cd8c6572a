"""The rules of stages and cascades: a super-resolution stage's settings, a joint cascade, and the
chain every cascade (a config's `cascade.stages` or a cascade folder's manifest) must form.

Run by `imagegen.config.validate` on every config loaded, and by `imagegen.cascade.manifest` on
every manifest read. Errors are ValueErrors naming the key (prefixed `cascade.stages[i] (name): `
inside a joint cascade). No torch import.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from imagegen.config.sections import RunConfig, stage_run_config

LOWRES_SOURCES = ("downsample", "render")
DOWNSAMPLE_MODES = ("area", "bicubic")
STAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a folder name on every OS


def check_stage_chain(stages: Sequence[tuple[str, int, int]]) -> None:
    """ValueError unless (name, resolution, lowres_size) rows form a cascade.

    Rules: at least one stage; unique, folder-safe names; the first stage has no low-res input
    (lowres_size 0) and every later one has the previous stage's resolution as its low-res input;
    resolutions strictly increase.
    """
    if not stages:
        raise ValueError("a cascade needs at least one stage")
    names = [name for name, _, _ in stages]
    for name in names:
        if not isinstance(name, str) or not STAGE_NAME_RE.match(name):
            raise ValueError(f"stage name {name!r} must be a folder name (letters, digits, '_', '-', '.')")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"stage names must be unique; repeated: {duplicated} (stages: {names})")
    first, first_resolution, first_lowres = stages[0]
    if first_lowres:
        raise ValueError(
            f"the first stage {first!r} is a super-resolution stage (lowres_size {first_lowres}); a "
            "cascade starts with a text-to-image stage"
        )
    previous, previous_resolution = first, first_resolution
    for name, resolution, lowres_size in stages[1:]:
        if resolution <= previous_resolution:
            raise ValueError(
                f"stage resolutions must increase: {previous!r} makes {previous_resolution} px and the "
                f"next stage {name!r} makes {resolution} px (order: {names})"
            )
        if not lowres_size:
            raise ValueError(f"stage {name!r} follows {previous!r} but is not a super-resolution stage")
        if lowres_size != previous_resolution:
            raise ValueError(
                f"stage {name!r} takes {lowres_size} px low-res input but {previous!r} makes "
                f"{previous_resolution} px"
            )
        previous, previous_resolution = name, resolution


def check_stage_config(cfg: RunConfig, where: str = "") -> None:
    """ValueError naming the key when a single stage's super-resolution settings cannot work."""
    model, sr = cfg.model, cfg.superres
    if model.lowres_cond != (sr.lowres_size > 0):
        raise ValueError(
            f"{where}superres.lowres_size is {sr.lowres_size} but {where}model.lowres_cond is "
            f"{model.lowres_cond}: a super-resolution stage needs both (the low-res side > 0), a "
            "text-to-image stage neither"
        )
    # noise_aug.max_level and sample.aug_level in [0, 1]: validate's range table, checked before
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
    """Every super-resolution / cascade rule of a run (called by `validate`, after the ranges)."""
    if cfg.train.objective == "cascade":
        check_cascade_config(cfg)
    elif cfg.train.objective == "diffusion":
        if cfg.cascade.stages:
            raise ValueError("cascade.stages is set: train it with train.objective=cascade")
        check_stage_config(cfg)

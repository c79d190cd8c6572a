"""A cascade on disk: `manifest.json` plus one folder per stage; the rules a cascade must follow.

    CASCADE/manifest.json        stages in order, resolutions, sampling defaults, text encoder
    CASCADE/base32/config.yaml   the stage's single-stage RunConfig
    CASCADE/base32/model/        its EMA U-Net (diffusers save_pretrained: config.json + safetensors)
    CASCADE/sr64/...

The layout follows DeepFloyd IF's stage I / stage II split (one folder and one set of sampling
defaults per stage) with Imagen's noise-augmentation level recorded per super-resolution stage.
Everything here is checked before any weights are read: a cascade whose resolutions do not
increase, whose stage folders are missing, whose manifest lacks a key, or whose stages were trained
with different text encoders fails with an error naming the stage and the key. No torch import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"  # the EMA weights of a stage, inside its folder
CONFIG_FILE = "config.yaml"
FORMAT = "imagegen-cascade"
VERSION = 1
STAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a folder name on every OS


@dataclass
class StageEntry:
    """One stage in the manifest: what it makes and how it samples by default."""

    name: str  # stage name and folder name, e.g. "base32", "sr64"
    resolution: int  # side of the images it outputs
    lowres_size: int  # side of its low-res input; 0 for the first (text-to-image) stage
    sampler: str
    num_steps: int
    guidance_scale: float
    thresholding: str
    threshold_percentile: float
    aug_level: float  # noise level of the low-res input, a fraction of num_timesteps (SR stages)

    @property
    def is_superres(self) -> bool:
        return self.lowres_size > 0


STAGE_KEYS = tuple(StageEntry.__dataclass_fields__)
# a stage's sampling defaults: the fields of `imagegen.config.SampleConfig`, by the same names
SAMPLE_KEYS = ("sampler", "num_steps", "guidance_scale", "thresholding", "threshold_percentile", "aug_level")


@dataclass
class Manifest:
    stages: list[StageEntry]
    text_encoder: dict[str, Any]  # the encoder identity every stage was trained with

    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "text_encoder": self.text_encoder,
            "stages": [asdict(stage) for stage in self.stages],
        }


# ------------------------------------------------------------------------------------------------
# Rules
# ------------------------------------------------------------------------------------------------


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


def check_same_text_encoder(identities: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The one text-encoder identity shared by every stage; ValueError naming those that differ."""
    stages = list(identities)
    reference = identities[stages[0]]
    for stage in stages[1:]:
        if identities[stage] != reference:
            differing = sorted(
                key
                for key in set(reference) | set(identities[stage])
                if reference.get(key) != identities[stage].get(key)
            )
            raise ValueError(
                f"stages were trained with different text encoders: {stages[0]!r} used "
                f"{_describe(reference)} and {stage!r} used {_describe(identities[stage])} "
                f"(differing: {', '.join(differing)}); retrain one stage with the other's text config"
            )
    return reference


def _describe(identity: dict[str, Any]) -> str:
    keys = ("kind", "name", "max_length", "dim", "fingerprint")
    return "(" + ", ".join(f"{key}={identity.get(key)!r}" for key in keys if key in identity) + ")"


# ------------------------------------------------------------------------------------------------
# Reading and writing
# ------------------------------------------------------------------------------------------------


def is_cascade_folder(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / MANIFEST_FILE).is_file()


def manifest_from_dict(data: Any, source: str = MANIFEST_FILE) -> Manifest:
    """Strict: a missing or unknown key is a ValueError naming the stage and the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: top level must be a JSON object")
    if data.get("format") != FORMAT:
        raise ValueError(f"{source}: 'format' must be {FORMAT!r}, got {data.get('format')!r}")
    for key in ("stages", "text_encoder"):
        if key not in data:
            raise ValueError(f"{source}: missing key {key!r}")
    if not isinstance(data["stages"], list) or not isinstance(data["text_encoder"], dict):
        raise ValueError(f"{source}: 'stages' must be a list and 'text_encoder' an object")
    stages = [_stage_from_dict(row, i, source) for i, row in enumerate(data["stages"])]
    check_stage_chain([(stage.name, stage.resolution, stage.lowres_size) for stage in stages])
    return Manifest(stages=stages, text_encoder=data["text_encoder"])


def _stage_from_dict(row: Any, index: int, source: str) -> StageEntry:
    label = f"{source}: stages[{index}]"
    if not isinstance(row, dict):
        raise ValueError(f"{label} must be an object")
    label = f"{label} ({row.get('name', '?')})"
    missing = [key for key in STAGE_KEYS if key not in row]
    unknown = sorted(set(row) - set(STAGE_KEYS))
    if missing or unknown:
        raise ValueError(
            f"{label}: missing keys {missing}, unknown keys {unknown}; expected {list(STAGE_KEYS)}"
        )
    numbers = {"resolution": int, "lowres_size": int, "num_steps": int}
    for key, kind in numbers.items():
        if isinstance(row[key], bool) or not isinstance(row[key], kind) or row[key] < 0:
            raise ValueError(f"{label}: {key!r} must be a non-negative integer, got {row[key]!r}")
    return StageEntry(**row)


def read_manifest(folder: str | Path) -> Manifest:
    """Read and check `folder/manifest.json` and that every stage folder holds a config and weights."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a cascade: no {MANIFEST_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    manifest = manifest_from_dict(data, str(path))
    for stage in manifest.stages:
        stage_dir = folder / stage.name
        for needed in (stage_dir, stage_dir / CONFIG_FILE, stage_dir / MODEL_DIR / "config.json"):
            if not needed.exists():
                raise FileNotFoundError(
                    f"cascade {folder}: stage {stage.name!r} is listed in {MANIFEST_FILE} but {needed} "
                    "is missing"
                )
    return manifest


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return path

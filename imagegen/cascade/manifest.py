"""A cascade on disk: `manifest.json` plus one folder per stage, checked when read.

    CASCADE/manifest.json        stages in order, resolutions, sampling defaults, text encoder
    CASCADE/base32/config.yaml   the stage's single-stage RunConfig
    CASCADE/base32/model/        its EMA U-Net (diffusers save_pretrained: config.json + safetensors)
    CASCADE/sr64/...

The layout follows DeepFloyd IF's stage I / stage II split (one folder and one set of sampling
defaults per stage) with Imagen's noise-augmentation level recorded per super-resolution stage.
Everything here is checked before any weights are read: a cascade whose resolutions do not
increase, whose stage folders are missing, whose manifest lacks a key, or whose stages were trained
with different text encoders fails with an error naming the stage and the key. The chain rule
(`check_stage_chain`) is shared with configs and lives in `imagegen.config.stages`. No torch import.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imagegen.config import SampleConfig
from imagegen.config.stages import check_stage_chain

MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"  # the EMA weights of a stage, inside its folder
CONFIG_FILE = "config.yaml"
FORMAT = "imagegen-cascade"
VERSION = 1


@dataclass
class StageEntry:
    """One stage in the manifest: what it makes and how it samples by default.

    On disk a stage is one flat row: name, resolution, lowres_size, then the fields of `sample`
    under SampleConfig's own names (the format of every manifest written so far).
    """

    name: str  # stage name and folder name, e.g. "base32", "sr64"
    resolution: int  # side of the images it outputs
    lowres_size: int  # side of its low-res input; 0 for the first (text-to-image) stage
    sample: SampleConfig  # its sampling defaults; aug_level: noise level of the low-res input

    @property
    def is_superres(self) -> bool:
        return self.lowres_size > 0

    def to_row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resolution": self.resolution,
            "lowres_size": self.lowres_size,
            **asdict(self.sample),
        }


SAMPLE_KEYS = tuple(SampleConfig.__dataclass_fields__)  # a stage's sampling defaults, by field name
STAGE_KEYS = ("name", "resolution", "lowres_size", *SAMPLE_KEYS)  # the keys of one manifest row


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
            "stages": [stage.to_row() for stage in self.stages],
        }


# ------------------------------------------------------------------------------------------------
# Rules
# ------------------------------------------------------------------------------------------------


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
    stages = [stage_from_dict(row, i, source) for i, row in enumerate(data["stages"])]
    check_stage_chain([(stage.name, stage.resolution, stage.lowres_size) for stage in stages])
    return Manifest(stages=stages, text_encoder=data["text_encoder"])


def stage_from_dict(row: Any, index: int, source: str, key: str = "stages") -> StageEntry:
    label = f"{source}: {key}[{index}]"
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
    sample = SampleConfig(**{key: row[key] for key in SAMPLE_KEYS})
    return StageEntry(row["name"], row["resolution"], row["lowres_size"], sample)


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

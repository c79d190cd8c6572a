"""Join trained stages into one cascade folder (layout: `imagegen.cascade.manifest`).

    python -m imagegen.cascade assemble runs/base32-... runs/sr64-... --out runs/shapes-cascade
    assemble(["runs/base32-...", "runs/sr64-..."], "runs/shapes-cascade")

Each argument is a run directory (its newest checkpoint is used) or one checkpoint folder, of a
single-stage diffusion run (its `ema/model` weights) or of a joint cascade run (every stage of
`cascade.stages`, from `ema/<stage>`); they may be mixed. The stages are taken in the order given.
Every check (resolution chain, text encoders, weights present) runs before anything is written;
the folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imagegen.cascade.manifest import (
    CONFIG_FILE,
    MODEL_DIR,
    Manifest,
    StageEntry,
    check_same_text_encoder,
    write_manifest,
)
from imagegen.config import RunConfig, config_from_dict, save_config, stage_run_config, stage_sample_config
from imagegen.config.stages import check_stage_chain
from imagegen.utils.runs import resolve_checkpoint

# training/ema.py keeps the raw EMA shadow beside the averaged weights for --resume only
RESUME_ONLY_FILES = ("ema_shadow.safetensors",)


@dataclass
class StageSource:
    """One stage found in a run: its single-stage config and where its EMA weights are."""

    name: str
    cfg: RunConfig
    weights: Path  # a diffusers save_pretrained folder
    text_identity: dict[str, Any]
    checkpoint: Path

    def entry(self) -> StageEntry:
        return StageEntry(
            name=self.name,
            resolution=self.cfg.model.image_size,
            lowres_size=self.cfg.superres.lowres_size,
            sample=stage_sample_config(self.cfg),  # aug_level 0 for a stage never trained on noisy input
        )


def stages_of(path: str | Path) -> list[StageSource]:
    """The stages a run (or checkpoint) holds: one for a diffusion run, all for a joint cascade run."""
    checkpoint = resolve_checkpoint(path)
    cfg = config_from_dict(yaml.safe_load((checkpoint / CONFIG_FILE).read_text()))
    identity = json.loads((checkpoint / "trainer.json").read_text())["text_identity"]
    if cfg.train.objective == "cascade":
        found = [
            StageSource(s.stage, stage_run_config(cfg, s), checkpoint / "ema" / s.stage, identity, checkpoint)
            for s in cfg.cascade.stages
        ]
    elif cfg.train.objective == "diffusion":
        found = [StageSource(cfg.stage, cfg, checkpoint / "ema" / "model", identity, checkpoint)]
    else:
        raise ValueError(
            f"{path}: a {cfg.train.objective!r} run is not a diffusion stage; it cannot join a cascade"
        )
    for source in found:
        if not (source.weights / "config.json").is_file():
            raise FileNotFoundError(f"{path}: stage {source.name!r} has no EMA weights at {source.weights}")
    return found


def plan_cascade(runs: list[str | Path]) -> tuple[list[StageSource], Manifest]:
    """Every check of a cascade made of `runs`, in order; nothing is written."""
    if not runs:
        raise ValueError("assemble: give at least one run")
    sources = [source for run in runs for source in stages_of(run)]
    check_stage_chain([(s.name, s.cfg.model.image_size, s.cfg.superres.lowres_size) for s in sources])
    identity = check_same_text_encoder({s.name: s.text_identity for s in sources})
    return sources, Manifest(stages=[s.entry() for s in sources], text_encoder=identity)


def assemble(runs: list[str | Path], out: str | Path, overwrite: bool = False) -> Path:
    """Write the cascade folder `out` from `runs` (in stage order); returns `out`."""
    sources, manifest = plan_cascade(runs)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out {out} already exists; remove it or pass --overwrite")
    tmp = out.with_name(f".tmp-{out.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for source in sources:
        stage_dir = tmp / source.name
        shutil.copytree(
            source.weights, stage_dir / MODEL_DIR, ignore=shutil.ignore_patterns(*RESUME_ONLY_FILES)
        )
        save_config(source.cfg, stage_dir / CONFIG_FILE)
    write_manifest(tmp, manifest)  # written last: a folder without it is not a cascade
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out

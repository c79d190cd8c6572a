"""Which run folder and checkpoint a training invocation writes to or resumes from.

`--resume latest` picks the newest intact checkpoint of this config's runs, `--resume RUN` that
run's newest intact one (each corrupt newer checkpoint is skipped with a warning naming the bad
file), and `--resume CHECKPOINT` exactly that one, verified. `check_resumable` refuses a checkpoint
whose networks differ from the config's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from imagegen.config import RunConfig, config_from_dict, config_to_dict
from imagegen.training import checkpoint as ckpt
from imagegen.utils.integrity import CorruptCheckpointError, verify_checkpoint
from imagegen.utils.runs import intact_checkpoint, newest_first


def new_run_dir(cfg: RunConfig) -> Path:
    name = cfg.train.run_name or f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.train.output_dir) / name


def resume_candidates(cfg: RunConfig, resume: str) -> list[Path]:
    """The run folders `find_resume` may pick from."""
    if resume != "latest":
        path = Path(resume)
        return [path.parent.parent if ckpt.CHECKPOINT_RE.match(path.name) else path]
    root = Path(cfg.train.output_dir)
    prefix = cfg.train.run_name or f"{cfg.name}-"
    return [p for p in root.glob(f"{prefix}*") if p.is_dir()] if root.is_dir() else []


def find_resume(cfg: RunConfig, resume: str) -> tuple[Path, Path] | None:
    """`resume` is "latest" (newest checkpoint of this config's runs), a run dir, or a checkpoint."""
    path = Path(resume)
    if resume != "latest":
        if ckpt.CHECKPOINT_RE.match(path.name) and path.is_dir():
            verify_checkpoint(path)  # named explicitly: no fallback, the error names the bad file
            return path.parent.parent, path
        if (found := intact_checkpoint(path)) is not None:
            return path, found
        if ckpt.latest_checkpoint(path) is not None:
            raise CorruptCheckpointError(f"--resume {resume}: every checkpoint is corrupt (see warnings)")
        raise FileNotFoundError(f"--resume {resume}: no checkpoint-N folder found there")
    runs = newest_first(resume_candidates(cfg, resume))  # the same "newest run" as generation's
    if not runs:
        return None
    for run in runs:
        if (found := intact_checkpoint(run)) is not None:  # newest intact; corrupt ones are named
            return run, found
    raise CorruptCheckpointError(
        f"--resume latest: every checkpoint of {[str(p) for p in runs]} is corrupt (see the warnings)"
    )


# Config sections that must match for a checkpoint to load into the networks being built.
ARCHITECTURE_KEYS = ("model", "gan", "clip", "stage", "superres", "cascade")


def check_resumable(saved: dict[str, Any], cfg: RunConfig) -> None:
    current = config_to_dict(cfg)
    try:  # fields added since the checkpoint was written take their defaults (e.g. gan.output)
        saved = config_to_dict(config_from_dict(saved))
    except (TypeError, ValueError):
        pass  # a key this version no longer knows: compare as written, so the diff names it
    differing = []
    for key in ARCHITECTURE_KEYS + ("text",):
        if key == "text":
            old = {k: saved["text"].get(k) for k in ("encoder", "name_or_path", "max_length")}
            new = {k: current["text"][k] for k in old}
        elif key == "cascade":  # each stage's networks; its sampling defaults and lr may change
            old, new = (
                {
                    f"stages.{i}": {k: stage.get(k) for k in ("stage", "model", "superres")}
                    for i, stage in enumerate(cfg_["stages"])
                }
                for cfg_ in (saved.get("cascade") or {"stages": []}, current["cascade"])
            )
        else:
            old, new = saved.get(key), current[key]
        differing += ckpt.diff_keys({key: old}, {key: new})
    if saved["train"]["objective"] != cfg.train.objective:
        differing.append(f"train.objective: {saved['train']['objective']!r} -> {cfg.train.objective!r}")
    if differing:
        raise ValueError(
            "cannot resume: the model config differs from the checkpoint's in " + "; ".join(differing)
        )

"""Crash-safe checkpoint folders: written under a temporary name, then renamed into place.

A run directory holds

    RUN/config.yaml                       resolved config of the run
    RUN/checkpoints/checkpoint-000500/    one complete checkpoint
        config.yaml                       resolved config at that step
        trainer.json                      step, data position, counters (written last)
        model/, ema/ (diffusion)          diffusers save_pretrained folders (safetensors)
        state/                            accelerate save_state: optimizer, LR scheduler, RNG
    RUN/checkpoints/.tmp-checkpoint-...   a checkpoint being written (never read)

Only folders named `checkpoint-N` are complete: the rename is the commit point, so a kill at any
moment leaves the previous checkpoint intact. Weights for generation are safetensors only; the
optimizer/RNG files that accelerate writes are read back only on `--resume` of one's own run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from imagegen.utils.runs import CHECKPOINT_RE, checkpoint_name, latest_checkpoint, list_checkpoints

__all__ = ["CHECKPOINT_RE", "checkpoint_name", "latest_checkpoint", "list_checkpoints"]

TMP_PREFIX = ".tmp-"


def temporary_path(run_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of `step` is written before it is committed by `commit`."""
    return Path(run_dir) / "checkpoints" / f"{TMP_PREFIX}{checkpoint_name(step)}"


def make_empty_dir(path: Path) -> Path:
    """Create `path` empty (a stale half-written one is removed first)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, step: int, keep_last: int) -> Path:
    """Rename a finished temporary folder into place, then prune to the newest `keep_last`."""
    final = tmp.parent / checkpoint_name(step)
    if final.exists():  # re-saving the same step (e.g. the final save right after a periodic one)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(tmp.parent)
    if keep_last > 0:
        for old in list_checkpoints(tmp.parent.parent)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def remove_stale_temporaries(run_dir: str | Path) -> int:
    """Delete half-written checkpoints left by a killed run; returns how many."""
    root = Path(run_dir) / "checkpoints"
    stale = [p for p in root.glob(f"{TMP_PREFIX}*")] if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / "trainer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (no trainer.json)")
    return json.loads(path.read_text())


def diff_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = sorted(set(old) | set(new))
    differing: list[str] = []
    for key in keys:
        dotted = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differing += diff_keys(a, b, dotted + ".")
        elif a != b:
            differing.append(f"{dotted}: {a!r} -> {b!r}")
    return differing

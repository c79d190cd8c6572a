"""Crash-safe checkpoint folders: written under a temporary name, then renamed into place.

A run directory holds

    RUN/config.yaml                       resolved config of the run
    RUN/checkpoints/checkpoint-000500/    one complete checkpoint
        config.yaml                       resolved config at that step
        trainer.json                      step, data position, counters (written last)
        model/, ema/ (diffusion)          diffusers save_pretrained folders (safetensors)
        state/                            accelerate save_state: optimizer, LR scheduler, RNG
    RUN/checkpoints/.tmp-checkpoint-...   a checkpoint being written (never read)
    RUN/checkpoints/.old-checkpoint-...   a checkpoint being replaced by a re-save of its step
    RUN/checkpoints/.pruned-checkpoint-... a checkpoint being deleted by `train.keep_last`
    RUN/abandoned/<time>-after-checkpoint-N/   newer checkpoints set aside by a resume from N

Only folders named `checkpoint-N` are complete: the rename is the commit point, so a kill at any
moment leaves the previous checkpoint intact, and `recover_interrupted` (run at every start)
finishes or undoes a commit a kill interrupted. `trainer.json` records the SHA-256 of every other
file of the folder and the run directory that wrote it: loading verifies the hashes
(`imagegen.utils.integrity`), and pruning deletes only what this run directory wrote. Weights for
generation are safetensors only; the optimizer/RNG files that accelerate writes are read back
only on `--resume`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from imagegen.utils.integrity import read_checked_json
from imagegen.utils.runs import CHECKPOINT_RE, checkpoint_name, latest_checkpoint, list_checkpoints

__all__ = ["CHECKPOINT_RE", "checkpoint_name", "latest_checkpoint", "list_checkpoints"]

TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"  # a checkpoint being replaced by a re-save of its step
PRUNED_PREFIX = ".pruned-"  # a checkpoint being deleted by pruning: never put back
ABANDONED_DIR = "abandoned"  # newer checkpoints set aside by a resume from an older one


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


def commit(tmp: Path, step: int, keep_last: int, run_dir: Path | None = None) -> Path:
    """Rename a finished temporary folder into place, then prune to the newest `keep_last`.

    Re-saving a step whose folder exists first renames the old folder to `.old-checkpoint-N`, so
    that at every instant one complete copy of the step exists under a name that
    `recover_interrupted` puts back. Pruning deletes only checkpoints this run directory wrote
    (`owned_by`), older than `step`; the one just committed is never deleted.
    """
    final = tmp.parent / checkpoint_name(step)
    previous = tmp.parent / f"{OLD_PREFIX}{final.name}"
    if final.exists():  # re-saving the same step (e.g. the final save right after a periodic one)
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(final, previous)
    os.replace(tmp, final)
    _fsync_dir(tmp.parent)
    if previous.exists():
        shutil.rmtree(previous, ignore_errors=True)
    if keep_last > 0:
        prune(run_dir or tmp.parent.parent, step, keep_last)
    return final


def owned_by(checkpoint: Path, run_dir: Path) -> bool:
    """Did a trainer writing into `run_dir` (this folder, not a copy of it) write `checkpoint`?"""
    try:
        return read_trainer_state(checkpoint).get("run_dir") == str(Path(run_dir).resolve())
    except (OSError, ValueError):
        return False


def prune(run_dir: Path, step: int, keep_last: int) -> None:
    """Delete this run's own checkpoints older than the newest `keep_last` (counting `step`'s)."""
    checkpoints = list_checkpoints(run_dir)
    kept = [p for p in checkpoints if int(CHECKPOINT_RE.match(p.name).group(1)) <= step][-keep_last:]
    for old in checkpoints:
        if old not in kept and int(CHECKPOINT_RE.match(old.name).group(1)) < step and owned_by(old, run_dir):
            delete(old)


def delete(checkpoint: Path) -> None:
    """Delete a checkpoint folder; renamed to `.pruned-checkpoint-N` first, so that a kill during
    the deletion never leaves a half-deleted folder under the complete name `checkpoint-N`."""
    doomed = checkpoint.with_name(f"{PRUNED_PREFIX}{checkpoint.name}")
    if doomed.exists():
        shutil.rmtree(doomed, ignore_errors=True)
    os.replace(checkpoint, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def recover_interrupted(run_dir: str | Path) -> int:
    """Finish or undo commits that a kill interrupted; returns how many folders were touched.

    A complete `.tmp-checkpoint-N` (its trainer.json exists: written last) whose `checkpoint-N` is
    missing is renamed into place; a `.old-checkpoint-N` goes back when `checkpoint-N` is missing
    and is deleted otherwise; a `.pruned-checkpoint-N` (a deletion cut short) and every other
    temporary folder (half-written) are deleted.
    """
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return 0
    touched = 0
    for prefix in (TMP_PREFIX, OLD_PREFIX, PRUNED_PREFIX):
        for path in sorted(root.glob(f"{prefix}*")):
            final = root / path.name[len(prefix) :]
            complete = prefix != PRUNED_PREFIX and (path / "trainer.json").is_file()
            complete = complete and CHECKPOINT_RE.match(final.name)
            if complete and not final.exists():
                os.replace(path, final)
            else:
                shutil.rmtree(path, ignore_errors=True)
            touched += 1
    _fsync_dir(root)
    return touched


def set_aside_newer(run_dir: Path, checkpoint: Path) -> Path | None:
    """Resuming from `checkpoint` while newer ones exist: move those, oldest first, into
    `RUN/abandoned/<time>-after-<name>/` so they are never "latest" and never pruned; returns
    that folder (None when there was nothing newer)."""
    step = int(CHECKPOINT_RE.match(checkpoint.name).group(1))
    newer = [p for p in list_checkpoints(run_dir) if int(CHECKPOINT_RE.match(p.name).group(1)) > step]
    if not newer:
        return None
    target = Path(run_dir) / ABANDONED_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-after-{checkpoint.name}"
    target.mkdir(parents=True, exist_ok=True)
    for path in newer:
        os.replace(path, target / path.name)
    _fsync_dir(path.parent)
    return target


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
    return read_checked_json(path)


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

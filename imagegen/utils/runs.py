"""Where a run keeps its checkpoints, shared by the trainer (writes) and the pipeline (reads).

A checkpoint is complete exactly when its folder is named `checkpoint-N`: the trainer writes it
under a temporary name and renames it into place as the last act (training/checkpoint.py).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("imagegen.runs")

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
CHECKPOINTS_DIR = "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_RE.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def is_checkpoint(path: str | Path) -> bool:
    return Path(path).is_dir() and CHECKPOINT_RE.match(Path(path).name) is not None


def intact_checkpoint(run_dir: str | Path, parts: tuple[str, ...] = ()) -> Path | None:
    """The newest checkpoint of a run that passes `verify_checkpoint`; each newer one that fails is
    skipped with a warning naming the bad file. None when the run has no intact checkpoint.
    `parts`: check only those files (see `verify_checkpoint`)."""
    from imagegen.utils.integrity import CorruptCheckpointError, verify_checkpoint

    for checkpoint in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(checkpoint, parts)
        except CorruptCheckpointError as error:
            log.warning("skipping corrupt checkpoint %s: %s", checkpoint, error)
            continue
        return checkpoint
    return None

"""Where a run keeps its checkpoints, shared by the trainer (writes, resumes) and the pipelines
and `imagegen.cascade assemble` (read): checkpoint names, the newest run, checkpoint resolution,
and the model names `"default"` (the bundled model, package data) and `"latest"` (the newest run).

A checkpoint is complete exactly when its folder is named `checkpoint-N`: the trainer writes it
under a temporary name and renames it into place as the last act (training/checkpoint.py).
No torch import.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("imagegen.runs")

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
CHECKPOINTS_DIR = "checkpoints"
DEFAULT_RUNS_DIR = Path("runs")  # where `python -m imagegen.train` writes runs by default
# The model that ships with the package (imagegen/assets/, written by `python -m imagegen.bundle`):
# what `generate` and `load_pipeline` use when given no model, or model="default".
BUNDLED_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "default"
DEFAULT_MODEL = "default"
LATEST_MODEL = "latest"  # the newest run under runs/: used only when asked for by name


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


def newest_first(runs: Iterable[str | Path]) -> list[Path]:
    """The runs among `runs` that hold a complete checkpoint, the one with the newest checkpoint
    (by its folder's modification time) first: "the newest run", for `--resume latest` and for
    generating with no model given."""
    found = [(checkpoint, Path(run)) for run in runs if (checkpoint := latest_checkpoint(run)) is not None]
    found.sort(key=lambda pair: pair[0].stat().st_mtime, reverse=True)
    return [run for _, run in found]


def newest_run(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> Path:
    """The run under `runs_dir` with the newest complete checkpoint; FileNotFoundError if none."""
    runs_dir = Path(runs_dir)
    runs = newest_first(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    if not runs:
        raise FileNotFoundError(
            f"no trained run under {runs_dir}/ (train one with `python -m imagegen.train --config ...` "
            "or pass model=PATH)"
        )
    return runs[0]


_SAID: set[str] = set()  # which model a name resolved to is said once per process


def _say_once(message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        log.warning(message)


def describe_bundled_model() -> str:
    """One line naming the bundled model: its folder and, from its trainer.json, what it is."""
    from imagegen.utils.integrity import read_checked_json

    about = read_checked_json(BUNDLED_MODEL_DIR / "trainer.json").get("bundle", {})
    return f"{BUNDLED_MODEL_DIR} ({about.get('summary', 'no description')})"


def model_folder(model: str | Path | None) -> Path:
    """The folder a `model` argument names: None or "default" -> the bundled model; "latest" ->
    the newest run under runs/ (FileNotFoundError naming `model` when there is none); anything
    else is a path (a folder literally called default or latest: write ./default). Which folder a
    name meant is logged once per process."""
    if model is None or (isinstance(model, str) and model == DEFAULT_MODEL):
        given = "no model given" if model is None else f'model="{DEFAULT_MODEL}"'
        _say_once(f"{given}: using the bundled default model, {describe_bundled_model()}")
        return BUNDLED_MODEL_DIR
    if isinstance(model, str) and model == LATEST_MODEL:
        try:
            run = newest_run()
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f'model="{LATEST_MODEL}": {error}; with no model (or model="{DEFAULT_MODEL}") the '
                "bundled model is used"
            ) from None
        _say_once(f'model="{LATEST_MODEL}": using the newest run, {run}')
        return run
    if not isinstance(model, (str, Path)):
        raise ValueError(
            f'model: expected a path, "{DEFAULT_MODEL}", "{LATEST_MODEL}" or None, got {model!r:.100}'
        )
    return Path(model)


def resolve_checkpoint(path: str | Path | None) -> Path:
    """A run dir (its newest intact checkpoint), a checkpoint folder (verified, no fallback), the
    bundled model (None or "default": every file checked against its recorded hash) or "latest"
    (the newest run under runs/) -> a checkpoint folder holding what generation reads.
    FileNotFoundError / CorruptCheckpointError name what is missing or bad."""
    from imagegen.utils.integrity import (
        GENERATION_FILES,
        CorruptCheckpointError,
        verify_bundle,
        verify_checkpoint,
    )

    path = model_folder(path)
    if path == BUNDLED_MODEL_DIR:
        verify_bundle(path)
        return path
    if is_checkpoint(path) or (path / "trainer.json").is_file():
        verify_checkpoint(path, GENERATION_FILES)  # named explicitly: no fallback; names the bad file
        return path
    if not path.exists():
        raise FileNotFoundError(f"model path {path} does not exist")
    if latest_checkpoint(path) is None:
        raise FileNotFoundError(f"{path} holds no complete checkpoint (checkpoints/checkpoint-N/)")
    checkpoint = intact_checkpoint(path, GENERATION_FILES)  # newest intact; skipped ones are named
    if checkpoint is None:
        raise CorruptCheckpointError(f"{path}: every checkpoint is corrupt (see the warnings above)")
    return checkpoint

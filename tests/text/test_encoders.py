"""Frozen text encoders: mask/shape contract, independence from batch-mates, pooling, truncation,
identity, and the offline loading rules. T5 and CLIP run on tiny random models (see conftest)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from imagegen.text import (
    ALLOW_DOWNLOAD_ENV,
    BUNDLED_MINILM_NAME,
    TextEncoderNotFoundError,
    build_text_encoder,
)

PROMPTS = ["a red circle", "", "three small blue squares above a green star"]
MEDIUM = "three small blue squares above a green star and two yellow triangles"  # fits 16 tokens
LONG = "a red circle above a blue square to the left of a green star and two yellow triangles"


@pytest.fixture(scope="module")
def t5(tiny_t5_dir):
    return build_text_encoder("t5", str(tiny_t5_dir), max_length=16)


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):
    return build_text_encoder("clip", str(tiny_clip_dir), max_length=16)


@pytest.fixture(params=["minilm", "t5", "clip"])
def encoder(request):
    return request.getfixturevalue(request.param)


def test_shapes_dtypes_and_mask_marks_real_tokens(encoder):
    encoding = encoder.encode(PROMPTS)
    length, dim = encoder.max_length, encoder.dim
    assert encoding.tokens.shape == (3, length, dim) and encoding.tokens.dtype == torch.float32
    assert encoding.mask.shape == (3, length) and encoding.mask.dtype == torch.bool
    assert encoding.pooled.shape == (3, dim)
    token_counts = [len(ids) for ids in encoder.tokenizer(PROMPTS)["input_ids"]]
    assert encoding.mask.sum(dim=1).tolist() == token_counts
    prefix = torch.arange(length)[None, :] < torch.tensor(token_counts)[:, None]
    assert torch.equal(encoding.mask, prefix)
    assert torch.all(encoding.tokens[~encoding.mask] == 0)
    assert encoding.mask[1].sum() >= 1  # the null condition "" has real (special) tokens


def test_embedding_does_not_depend_on_batch_mates(encoder):
    alone = encoder.encode(["a red circle"])
    together = encoder.encode(["", MEDIUM, "a red circle", "two"])[2]
    assert torch.equal(alone.mask, together.mask)
    torch.testing.assert_close(alone.tokens, together.tokens, rtol=0, atol=1e-5)
    torch.testing.assert_close(alone.pooled, together.pooled, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["minilm", "t5"])
def test_pooled_is_the_masked_mean_of_tokens(kind, request):
    encoding = request.getfixturevalue(kind).encode(PROMPTS)
    counts = encoding.mask.sum(dim=1, keepdim=True)
    torch.testing.assert_close(encoding.pooled, encoding.tokens.sum(dim=1) / counts, rtol=0, atol=1e-5)


def test_clip_pooled_is_the_end_of_text_state(clip):
    encoding = clip.encode(PROMPTS)
    last = encoding.mask.sum(dim=1) - 1
    torch.testing.assert_close(encoding.pooled, encoding.tokens[torch.arange(3), last], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["minilm", "clip"])
def test_matches_a_padded_reference_forward(kind, request):
    """Same numbers as the usual padded, attention-masked forward (sentence-transformers' pooling)."""
    encoder = request.getfixturevalue(kind)
    batch = encoder.tokenizer(
        PROMPTS, padding="max_length", max_length=encoder.max_length, return_tensors="pt"
    )
    with torch.no_grad():
        output = encoder.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    mask = batch["attention_mask"].bool()
    encoding = encoder.encode(PROMPTS)
    torch.testing.assert_close(encoding.tokens[mask], output.last_hidden_state[mask], rtol=0, atol=1e-5)
    if kind == "minilm":
        hidden = output.last_hidden_state * mask[..., None]
        reference = hidden.sum(dim=1) / mask.sum(dim=1, keepdim=True)
    else:
        reference = output.pooler_output
    torch.testing.assert_close(encoding.pooled, reference, rtol=0, atol=1e-5)


def test_frozen_deterministic_and_usable_in_autograd(t5):
    first, second = t5.encode(PROMPTS), t5.encode(PROMPTS)
    assert torch.equal(first.tokens, second.tokens) and torch.equal(first.pooled, second.pooled)
    assert not t5.model.training
    assert not any(parameter.requires_grad for parameter in t5.model.parameters())
    layer = torch.nn.Linear(t5.dim, 2)
    layer(first.tokens).sum().backward()  # fails for inference-mode tensors
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_truncation_warns_once_and_counts_every_prompt(tiny_clip_dir, recwarn):
    encoder = build_text_encoder("clip", str(tiny_clip_dir), max_length=6)
    first = encoder.encode([LONG, "a red circle", LONG])
    encoder.encode([LONG])
    truncation_warnings = [w for w in recwarn if "truncated" in str(w.message)]
    assert len(truncation_warnings) == 1 and "2 of 3" in str(truncation_warnings[0].message)
    assert encoder.num_truncated == 3
    assert first.mask[0].all()
    ids = encoder.tokenizer([LONG], truncation=True, max_length=6)["input_ids"][0]
    assert ids[-1] == encoder.tokenizer.eos_token_id  # the end-of-text token survives truncation
    torch.testing.assert_close(first.pooled[0], first.tokens[0, -1], rtol=0, atol=1e-6)


def test_prompt_with_no_tokens_gets_one_fallback_token(tmp_path, tiny_savers):
    from transformers import AutoTokenizer

    folder = tiny_savers[0](tmp_path / "t5-nospecials")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.backend_tokenizer.post_processor = None  # adds no "</s>": "" becomes zero tokens
    tokenizer.save_pretrained(folder)
    encoder = build_text_encoder("t5", str(folder), max_length=8)
    assert encoder.tokenizer([""])["input_ids"] == [[]]
    encoding = encoder.encode(["", "red"])
    assert encoding.mask.sum(dim=1).tolist() == [1, 1]
    assert torch.isfinite(encoding.pooled).all()


def test_identity_is_json_and_tracks_the_weights(tiny_t5_dir, tmp_path, tiny_savers):
    copy = shutil.copytree(tiny_t5_dir, tmp_path / "copy")
    before = build_text_encoder("t5", str(copy), max_length=16).identity
    assert json.loads(json.dumps(before)) == before
    assert before["kind"] == "t5" and before["dim"] == 16 and before["max_length"] == 16
    assert before["name"] == str(copy.resolve())
    torch.manual_seed(1)
    tiny_savers[0](copy)  # new random weights, same architecture and file sizes
    after = build_text_encoder("t5", str(copy), max_length=16).identity
    assert after["fingerprint"] != before["fingerprint"]
    assert {key: value for key, value in after.items() if key != "fingerprint"} == {
        key: value for key, value in before.items() if key != "fingerprint"
    }


def test_minilm_is_the_bundled_default(minilm):
    assert minilm.identity["name"] == BUNDLED_MINILM_NAME
    assert minilm.dim == 384 and minilm.max_length == 16


def test_unknown_kind_names_the_allowed_kinds():
    with pytest.raises(ValueError, match="kind='bert'.*clip.*minilm.*t5"):
        build_text_encoder("bert")


def test_max_length_beyond_positions_is_refused(tiny_clip_dir):
    with pytest.raises(ValueError, match="max_length=30.*<= 24"):
        build_text_encoder("clip", str(tiny_clip_dir), max_length=30)


def test_missing_hub_name_fails_fast_with_instructions(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    name = "imagegen-tests/no-such-text-encoder"
    with pytest.raises(TextEncoderNotFoundError) as caught:
        build_text_encoder("t5", name)
    message = str(caught.value)
    assert name in message and "does not download" in message
    assert (
        f"huggingface-cli download {name} --local-dir DIR" in message and "text.name_or_path=DIR" in message
    )
    if huggingface_hub.constants.HF_HUB_OFFLINE:  # download allowed but hub offline: still a clear error
        monkeypatch.setenv(ALLOW_DOWNLOAD_ENV, "1")
        with pytest.raises(TextEncoderNotFoundError, match="download failed"):
            build_text_encoder("clip", name)


@pytest.mark.parametrize("kind", ["t5", "clip"])
def test_empty_or_invalid_paths_are_clear_errors(kind, tmp_path):
    with pytest.raises(TextEncoderNotFoundError, match="name_or_path is empty"):
        build_text_encoder(kind, "")
    with pytest.raises(TextEncoderNotFoundError, match="is not a model folder"):
        build_text_encoder(kind, str(tmp_path / "does-not-exist"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(TextEncoderNotFoundError, match="is not a model folder"):
        build_text_encoder(kind, str(tmp_path / "weights.bin"))
    with pytest.raises(TextEncoderNotFoundError, match="no config.json"):
        build_text_encoder(kind, str(tmp_path))


def test_empty_prompt_list_gives_an_empty_batch(t5):
    encoding = t5.encode([])
    assert encoding.tokens.shape == (0, 16, t5.dim) and encoding.pooled.shape == (0, t5.dim)
    with pytest.raises(TypeError, match=r"\[prompt\]"):
        t5.encode("a red circle")


def test_hub_name_found_in_the_local_hub_cache(tiny_t5_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    commit = "0" * 40
    repo = tmp_path / "models--imagegen-tests--tiny-t5"
    shutil.copytree(tiny_t5_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    encoder = build_text_encoder("t5", "imagegen-tests/tiny-t5", max_length=16)
    assert encoder.identity["name"] == "imagegen-tests/tiny-t5" and encoder.dim == 16
    assert encoder.encode(["a red circle"]).mask.sum() == 4


def test_encoders_share_a_model_that_is_freed_with_the_last_one(tiny_t5_dir, tmp_path):
    import gc
    import weakref

    folder = shutil.copytree(tiny_t5_dir, tmp_path / "t5")  # a folder no other test's encoder holds
    first = build_text_encoder("t5", str(folder), max_length=8)
    second = build_text_encoder("t5", str(folder), max_length=12)
    assert second.model is first.model and second.max_length == 12
    model = weakref.ref(first.model)
    del first, second
    gc.collect()
    assert model() is None  # e.g. training frees the encoder once the cache is built

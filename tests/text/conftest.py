"""Tiny random T5 and CLIP text models saved into temporary folders, with word-level tokenizers
built locally (no sentencepiece, no network), and the bundled MiniLM encoder."""

from __future__ import annotations

from pathlib import Path

import pytest

WORDS = (
    "a an the red green blue yellow purple orange pink circle square triangle star diamond cross "
    "above below left right of to and one two three small large"
).split()


def _word_tokenizer(specials: list[str], template: str, **special_names: str):
    """A whitespace word-level tokenizer whose post-processor adds `template`'s special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate([*specials, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=special_names["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(token, vocab[token]) for token in specials if token in template]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special_names), len(vocab)


def save_tiny_t5(folder: Path) -> Path:
    """Random 2-layer T5 encoder (d_model 16) + tokenizer adding "</s>"; returns the folder."""
    from transformers import T5Config, T5EncoderModel

    tokenizer, vocab_size = _word_tokenizer(
        ["<pad>", "</s>", "<unk>"], "$A </s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    config = T5Config(
        vocab_size=vocab_size, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    T5EncoderModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_clip(folder: Path, max_positions: int = 24) -> Path:
    """Random 2-layer CLIP text model (width 16) + tokenizer adding start/end of text."""
    from transformers import CLIPTextConfig, CLIPTextModel

    specials = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
    tokenizer, vocab_size = _word_tokenizer(
        specials, "<|startoftext|> $A <|endoftext|>",
        bos_token=specials[0], eos_token=specials[1], pad_token=specials[1], unk_token="<unk>",
    )  # fmt: skip
    config = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=max_positions, bos_token_id=0, eos_token_id=1,
        pad_token_id=1, projection_dim=16,
    )  # fmt: skip
    CLIPTextModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_savers():
    """(save_tiny_t5, save_tiny_clip) for tests that need a fresh folder (importlib mode: no imports)."""
    return save_tiny_t5, save_tiny_clip


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    return save_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def minilm():
    from imagegen.text import build_text_encoder

    return build_text_encoder("minilm", max_length=16)

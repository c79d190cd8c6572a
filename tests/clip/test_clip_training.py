"""The CLIP objective behind the shared trainer: it learns, resumes exactly, keeps its temperature
in bounds, and refuses bad settings by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imagegen import factory
from imagegen.clip import (
    MAX_LOGIT_SCALE,
    CaptionTokenizer,
    caption_groups,
    embed_images,
    embed_texts,
    load_clip,
    recall_at_1,
)
from imagegen.config import ConfigError
from imagegen.training.objectives import clip as clip_objective
from imagegen.training.trainer import Trainer

OVERFIT_STEPS = 150  # R@1 = 1 was reached by 120 (fp32) and by 150 (bf16) on the dev machine


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = load_file(str(checkpoint / "state" / "model.safetensors"))
    shadow = load_file(str(checkpoint / "ema" / "clip" / "ema_shadow.safetensors"))
    return {**state, **{f"ema.{k}": v for k, v in shadow.items()}}


def test_the_clip_overfits_64_pairs_to_recall_at_1_of_1(tiny_clip_config):
    """64 Shapes (image, caption) pairs, one full batch per step: after a bounded number of steps
    the saved CLIP retrieves every pair's caption from its image and its image from its caption
    (a retrieval counts when it lands on the same caption: duplicates are equally right)."""
    cfg = tiny_clip_config(
        "data.length=64", "train.batch_size=64", f"train.max_steps={OVERFIT_STEPS}",
        "train.checkpoint_every=0", "train.ema_max_decay=0", "train.lr_schedule=constant",
        "train.warmup_steps=10", "train.lr=2e-3", "train.log_every=50",
    )  # fmt: skip
    summary = Trainer(cfg).fit()
    model, tokenizer = load_clip(summary.checkpoint / "ema" / "clip")
    dataset = factory.build_dataset(cfg.data)
    items = [dataset[i] for i in range(64)]
    captions = [item["caption"] for item in items]
    with torch.no_grad():
        image_emb = embed_images(model, torch.stack([item["image"] for item in items]))
        text_emb = embed_texts(model, CaptionTokenizer(tokenizer, cfg.clip.max_length)(captions))
    labels = caption_groups(captions)
    assert recall_at_1(image_emb, text_emb, labels, labels) == (1.0, 1.0)
    # and the untrained CLIP does not already retrieve them (the test measures learning)
    fresh = factory.build_clip(cfg.clip, factory.build_clip_tokenizer(cfg.clip)).eval()
    with torch.no_grad():
        before = recall_at_1(
            embed_images(fresh, torch.stack([item["image"] for item in items])),
            embed_texts(fresh, CaptionTokenizer(tokenizer, cfg.clip.max_length)(captions)),
            labels,
            labels,
        )
    assert max(before) < 0.5


def test_resume_continues_exactly(tiny_clip_config):
    straight = Trainer(tiny_clip_config("train.run_name=straight")).fit()
    half = Trainer(tiny_clip_config("train.run_name=halves"))
    half.fit(stop_at=3)
    resumed = Trainer(tiny_clip_config("train.run_name=halves"), resume="latest").fit()
    assert straight.step == resumed.step == 6
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys() and "logit_scale" in a
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    first = _weights(straight.run_dir / "checkpoints" / "checkpoint-000003")
    assert any(not torch.equal(a[k], first[k]) for k in a)  # steps 4-6 changed the weights


def test_the_logit_scale_clamp_holds_during_training(tiny_clip_config, monkeypatch):
    """A loss that only wants larger logits drives logit_scale up by about lr per Adam step
    (2.66 + 6 x 1.0 unclamped); the trainer's after-step clamp keeps it at ln 100, in the
    weights and in every logged value."""
    monkeypatch.setattr(clip_objective, "contrastive_loss", lambda logits, groups: -logits.abs().mean())
    summary = Trainer(tiny_clip_config("train.lr=1.0", "train.warmup_steps=0", "train.grad_clip=0")).fit()
    scale = load_file(str(summary.checkpoint / "state" / "model.safetensors"))["logit_scale"]
    assert scale.item() == pytest.approx(MAX_LOGIT_SCALE)
    logged = [json.loads(line) for line in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    values = [row["logit_scale"] for row in logged if "logit_scale" in row]
    assert len(values) == 6 and max(values) <= MAX_LOGIT_SCALE + 1e-6
    assert values[-1] == pytest.approx(MAX_LOGIT_SCALE)  # it did reach the bound


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("clip.patch_size=5", r"clip\.patch_size: 5 does not divide clip\.image_size 16"),
        ("clip.vision_heads=3", r"clip\.vision_heads: 3 heads do not divide clip\.vision_width 32"),
        ("clip.text_heads=5", r"clip\.text_heads: 5 heads do not divide clip\.text_width 32"),
        ("clip.duplicates=ignore", r"clip\.duplicates: 'ignore' is unknown; allowed: mask, none"),
        ("clip.init_temperature=0.001", r"clip\.init_temperature: expected a number in \[0\.01, 100\]"),
        ("clip.max_length=1", r"clip\.max_length: expected a number in \[2, 4096\]"),
        ("clip.embed_dim=0", r"clip\.embed_dim: expected a number"),
    ],
)
def test_bad_clip_values_are_refused_when_the_config_loads(tiny_clip_config, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_clip_config(override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("clip.image_size=32", r"clip\.image_size is 32 but data\.resolution is 16"),
        ("train.sample_every=5", r"train\.sample_every is 5, but train\.objective clip draws no images"),
    ],
)
def test_settings_a_clip_cannot_train_with_are_refused_before_compute(tiny_clip_config, override, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(tiny_clip_config(override))


def test_a_missing_tokenizer_folder_is_named(tiny_clip_config, tmp_path):
    trainer = Trainer(tiny_clip_config(f"clip.tokenizer={tmp_path / 'no-tokenizer'}"))
    with pytest.raises(ValueError, match=r"clip\.tokenizer: .*no-tokenizer.* is not a folder"):
        trainer.setup()


def test_resume_refuses_a_changed_clip_architecture(tiny_clip_config):
    Trainer(tiny_clip_config("train.run_name=changed")).fit(stop_at=3)
    with pytest.raises(ValueError, match=r"clip\.text_width"):
        Trainer(tiny_clip_config("train.run_name=changed", "clip.text_width=64"), resume="latest").setup()

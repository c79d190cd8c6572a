"""Fixtures for CLIP tests: tiny CLIP run configs (configs/tiny-clip-test.yaml) and one CLIP
trained for a few steps by the real trainer, whose EMA folder the text-encoder tests load."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegen.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[2]
TINY_CLIP = REPO / "configs" / "tiny-clip-test.yaml"


@pytest.fixture
def tiny_clip_config(tmp_path):
    """A factory of tiny CLIP run configs writing under this test's tmp_path (mixed precision
    "auto" like every trainer test: accelerate's state is per process and cannot change)."""

    def make(*overrides: str) -> RunConfig:
        return load_config(TINY_CLIP, [f"train.output_dir={tmp_path / 'runs'}", *overrides])

    return make


@pytest.fixture(scope="session")
def trained_clip_dir(tmp_path_factory) -> Path:
    """checkpoint-N/ema/clip of a 3-step tiny CLIP run: a saved CLIP folder with its tokenizer."""
    from imagegen.training.trainer import Trainer

    runs = tmp_path_factory.mktemp("clip-runs")
    cfg = load_config(TINY_CLIP, [f"train.output_dir={runs}", "train.max_steps=3"])
    return Trainer(cfg).fit().checkpoint / "ema" / "clip"

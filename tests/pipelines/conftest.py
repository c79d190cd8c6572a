"""Tiny trained checkpoints shared by the pipeline tests (bounded requests, untrusted files, the
fuzz test): trained once per session on the session's text cache. Tests that edit a checkpoint
copy it first."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegen.config import load_config
from imagegen.training import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[2]


def _train(root: Path, cache: Path, config: str) -> Path:
    """Two steps of `configs/<config>` into `root/runs/run`; returns its checkpoint (step 2)."""
    from imagegen.training.trainer import train

    cfg = load_config(
        REPO / "configs" / config,
        [
            f"train.output_dir={root / 'runs'}",
            f"text.cache_dir={cache}",
            "train.run_name=run",
            "train.max_steps=2",
            "train.checkpoint_every=2",
        ],
    )
    return ckpt.latest_checkpoint(train(cfg).run_dir)


@pytest.fixture(scope="session")
def tiny_diffusion_checkpoint(tmp_path_factory, text_cache_dir) -> Path:
    """A 16 px diffusion checkpoint of configs/tiny-test.yaml (do not edit: copy it)."""
    return _train(tmp_path_factory.mktemp("tiny-diffusion"), text_cache_dir, "tiny-test.yaml")


@pytest.fixture(scope="session")
def tiny_gan_checkpoint(tmp_path_factory, text_cache_dir) -> Path:
    """A GAN checkpoint of configs/tiny-gan-test.yaml (do not edit: copy it)."""
    return _train(tmp_path_factory.mktemp("tiny-gan"), text_cache_dir, "tiny-gan-test.yaml")

"""Shared test fixtures: the ../shared/data folder (skipped when absent) and deterministic torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; tests that need real data skip with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (only on the project's machines)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def text_cache_dir(tmp_path_factory) -> Path:
    """One embedding cache for the whole session: MiniLM runs once per caption."""
    return tmp_path_factory.mktemp("text-cache")


# ------------------------------------------------------------------------------------------------
# unCLIP: one tiny CLIP, prior and decoder per session, trained by the real trainer
# ------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def unclip_overrides(part: str, clip_dir: Path, runs: Path, cache: Path) -> list[str]:
    """What every tiny prior / decoder test run sets: its CLIP (a prior's text encoder too),
    where runs and text caches go."""
    text = [f"text.name_or_path={clip_dir}"] if part == "prior" else []
    return [f"unclip.clip={clip_dir}", *text, f"text.cache_dir={cache}", f"train.output_dir={runs}"]


@pytest.fixture(scope="session")
def unclip_clip_dir(tmp_path_factory) -> Path:
    """checkpoint-N/ema/clip of a 3-step tiny CLIP run (configs/tiny-clip-test.yaml, 16 px, 32-d)."""
    from imagegen.config import load_config
    from imagegen.training.trainer import Trainer

    runs = tmp_path_factory.mktemp("unclip-clip-runs")
    cfg = load_config(
        REPO / "configs" / "tiny-clip-test.yaml", [f"train.output_dir={runs}", "train.max_steps=3"]
    )
    return Trainer(cfg).fit().checkpoint / "ema" / "clip"


@pytest.fixture(scope="session")
def unclip_config(unclip_clip_dir, tmp_path_factory):
    """A factory of tiny prior ("prior") or decoder ("decoder") configs tied to unclip_clip_dir."""
    from imagegen.config import load_config

    runs, cache = tmp_path_factory.mktemp("unclip-runs"), tmp_path_factory.mktemp("unclip-cache")

    def make(part: str, *overrides: str):
        path = REPO / "configs" / f"tiny-unclip-{part}-test.yaml"
        return load_config(path, [*unclip_overrides(part, unclip_clip_dir, runs, cache), *overrides])

    return make


@pytest.fixture(scope="session")
def unclip_folder(unclip_config, unclip_clip_dir, tmp_path_factory) -> Path:
    """An unCLIP folder (imagegen.cascade.unclip) of a 3-step tiny prior and decoder."""
    from imagegen.cascade.unclip import assemble_unclip
    from imagegen.training.trainer import Trainer

    prior = Trainer(unclip_config("prior", "train.max_steps=3", "train.run_name=fx-prior")).fit()
    decoder = Trainer(
        unclip_config("decoder", "train.max_steps=3", "train.sample_every=0", "train.run_name=fx-decoder")
    ).fit()
    out = tmp_path_factory.mktemp("unclip-folder") / "unclip"
    return assemble_unclip(prior.run_dir, decoder.run_dir, out)

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

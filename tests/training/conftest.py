"""Fixtures for trainer tests: tiny configs that train in seconds, on the session's text cache
(`text_cache_dir`, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegen.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny-test.yaml"


@pytest.fixture
def tiny_config(tmp_path, text_cache_dir):
    """A factory of tiny run configs writing under this test's tmp_path."""

    def make(*overrides: str) -> RunConfig:
        return load_config(
            TINY, [f"train.output_dir={tmp_path / 'runs'}", f"text.cache_dir={text_cache_dir}", *overrides]
        )

    return make

"""Strict config loading: unknown keys, types, presets, dotted overrides, every shipped config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagegen.config import ConfigError, RunConfig, config_from_dict, dump_config, load_config, save_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_unknown_key_names_the_key_and_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'.*valid keys: .*\blr\b"):
        load_config(None, ["train.lrr=1e-4"])
    with pytest.raises(ConfigError, match=r"unknown config key 'modle'"):
        config_from_dict({"modle": {}})


def test_overrides_are_typed():
    cfg = load_config(
        None, ["train.lr=1e-4", "train.max_steps=7", "data.exclude=[[red, star]]", "sample.guidance_scale=3"]
    )
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.max_steps == 7 and cfg.data.exclude == [["red", "star"]]
    assert cfg.sample.guidance_scale == 3.0 and isinstance(cfg.sample.guidance_scale, float)
    with pytest.raises(ConfigError, match=r"train\.max_steps: expected int"):
        load_config(None, ["train.max_steps=many"])
    with pytest.raises(ConfigError, match=r"data\.hflip: expected true/false"):
        load_config(None, ["data.hflip=3"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["train.lr"])


def test_preset_fills_fields_and_explicit_keys_win():
    cfg = load_config(None, ["model.preset=tiny16", "model.dropout=0.1"])
    assert cfg.model.channels == [32, 64] and cfg.model.dropout == 0.1
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*tiny16"):
        load_config(None, ["model.preset=huge"])


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.preset=tiny32", "train.lr=3e-4"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert "lr: 0.0003" in dump_config(cfg)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    assert isinstance(load_config(path), RunConfig)


def test_cli_reports_a_misspelt_key_without_a_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "imagegen.train", "--config", str(CONFIGS[0]), "--set", "train.lrr=1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown config key 'train.lrr'" in done.stderr and "Traceback" not in done.stderr


def test_import_is_light():
    code = (
        "import sys, imagegen; print(any(m in sys.modules for m in ('torch', 'diffusers', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"

"""Config values that would train nonsense or build an absurd network fail at load, naming the
key and the allowed range (issue 15, items 5, 7 and 10's run_name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegen.config import ConfigError, load_config

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny-test.yaml"

BAD_VALUES = [
    ("train.batch_size=-1", "train.batch_size"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.grad_accum_steps=0", "train.grad_accum_steps"),
    ("train.max_steps=0", "train.max_steps"),
    ("train.max_steps=-5", "train.max_steps"),
    ("train.log_every=0", "train.log_every"),
    ("train.lr=.nan", "train.lr"),
    pytest.param("train.lr=1" + "0" * 400, "train.lr", id="train.lr=1e400-int"),  # beyond float range
    ("train.keep_last=-1", "train.keep_last"),
    ("sample.guidance_scale=1e308", "sample.guidance_scale"),
    ("sample.num_steps=0", "sample.num_steps"),
    ("text.max_length=0", "text.max_length"),
    ("diffusion.num_timesteps=0", "diffusion.num_timesteps"),
    ("diffusion.cond_drop_prob=1.5", "diffusion.cond_drop_prob"),
    ("model.channels=[30000, 30000]", r"model.channels\[0\]"),
    ("model.channels=[8000, 8000, 8000]", "model.channels / num_res_blocks"),
    ("model.image_size=100000", "model.image_size"),
    ("gan.gen_channels=[30000, 30000, 30000]", r"gan.gen_channels\[0\]"),
    ("train.run_name=../../x", "train.run_name"),
    ("train.run_name=a/b", "train.run_name"),
    ("train.run_name=..", "train.run_name"),
]


@pytest.mark.parametrize(("override", "key"), BAD_VALUES)
def test_a_nonsense_value_fails_at_load_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(TINY, [override])


def test_a_value_at_the_edge_of_its_range_loads():
    cfg = load_config(TINY, ["train.batch_size=1", "train.max_steps=1", "train.log_every=1"])
    assert (cfg.train.batch_size, cfg.train.max_steps, cfg.train.log_every) == (1, 1, 1)


def test_a_diffusion_base_stage_at_another_resolution_than_its_model_is_refused():
    """data.resolution=64 with the 16 px tiny16 U-Net trained without complaint."""
    from imagegen.config import check_trainable

    with pytest.raises(ConfigError, match="data.resolution is 64 but model.image_size is 16"):
        check_trainable(load_config(TINY, ["data.resolution=64"]))


def test_the_trainer_refuses_before_any_compute(tmp_path):
    from imagegen.training.trainer import Trainer

    cfg = load_config(TINY, [f"train.output_dir={tmp_path}", "data.resolution=64"])
    with pytest.raises(ConfigError, match="data.resolution"):
        Trainer(cfg)
    assert not any(tmp_path.iterdir()), "nothing is written before the check"


def test_the_train_cli_exits_2_naming_the_key(capsys):
    from imagegen.cli.train import main

    with pytest.raises(SystemExit) as stop:
        main(["--config", str(TINY), "--set", "train.log_every=0"])
    assert stop.value.code == 2
    assert "train.log_every" in capsys.readouterr().err


def test_a_broken_stage_rule_fails_at_load_and_validate_runs_once(monkeypatch):
    """Super-resolution / cascade rules are part of the one `validate`, which loading runs once."""
    from imagegen.config import loading

    with pytest.raises(ValueError, match="superres.lowres_size is 0 but model.lowres_cond is True"):
        load_config(TINY, ["model.lowres_cond=true"])
    calls = []
    monkeypatch.setattr(loading, "validate", lambda cfg: calls.append(cfg) or cfg)
    load_config(TINY)
    assert len(calls) == 1

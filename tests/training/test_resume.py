"""Exact resume, refusal of a changed model config, crash-safe checkpoints."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imagegen.config import config_to_dict
from imagegen.training import checkpoint as ckpt
from imagegen.training.trainer import Trainer, check_resumable


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = load_file(str(checkpoint / "state" / "model.safetensors"))
    shadow = load_file(str(checkpoint / "ema" / "model" / "ema_shadow.safetensors"))
    return {**state, **{f"ema.{k}": v for k, v in shadow.items()}}


def test_resume_continues_exactly(tiny_config):
    straight = Trainer(tiny_config("train.run_name=straight")).fit()
    half = Trainer(tiny_config("train.run_name=halves"))
    half.fit(stop_at=3)
    resumed = Trainer(tiny_config("train.run_name=halves"), resume="latest").fit()
    assert straight.step == resumed.step == 6
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    # and the run did learn something: the weights moved from their initial values
    assert any(not torch.equal(a[k], _weights(ckpt.list_checkpoints(straight.run_dir)[0])[k]) for k in a)


def test_resume_refuses_a_changed_model_config(tiny_config):
    first = Trainer(tiny_config("train.run_name=changed"))
    first.fit(stop_at=3)
    with pytest.raises(ValueError, match=r"model\.channels"):
        Trainer(tiny_config("train.run_name=changed", "model.channels=[32, 96]"), resume="latest").setup()


def test_resume_of_a_missing_path_is_a_clear_error(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny_config(), resume=str(tmp_path / "nowhere"))


def test_keep_last_prunes_old_checkpoints(tiny_config):
    summary = Trainer(tiny_config("train.checkpoint_every=1", "train.keep_last=2")).fit()
    names = [p.name for p in ckpt.list_checkpoints(summary.run_dir)]
    assert names == ["checkpoint-000005", "checkpoint-000006"]


def _kill_runs(config_args: list[str], run_dir: Path, runs: int, seed: int) -> None:
    """Start `runs` training processes on one run dir; once each has committed a new checkpoint
    (start-up time varies with load), SIGKILL it at a random moment 0-2 s later."""
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for _ in range(runs):
        seen = set(ckpt.list_checkpoints(run_dir))
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagegen.train", *config_args, "--resume", "latest"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 300
        while (
            time.time() < deadline and proc.poll() is None and not set(ckpt.list_checkpoints(run_dir)) - seen
        ):
            time.sleep(0.05)
        try:
            proc.wait(timeout=rng.uniform(0.0, 2.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def _check_all_complete(run_dir: Path) -> int:
    from imagegen.models import EfficientUNet

    checkpoints = ckpt.list_checkpoints(run_dir)
    for checkpoint in checkpoints:
        state = ckpt.read_trainer_state(checkpoint)
        assert state["step"] == int(checkpoint.name.split("-")[1])
        load_file(str(checkpoint / "state" / "model.safetensors"))
        EfficientUNet.from_pretrained(str(checkpoint / "ema" / "model"))
    return len(checkpoints)


TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny-test.yaml"


def _sigkill_test(tmp_path: Path, text_cache_dir: Path, runs: int, seed: int) -> None:
    run_dir = tmp_path / "runs" / "killed"
    sets = [
        f"train.output_dir={tmp_path / 'runs'}",
        f"text.cache_dir={text_cache_dir}",
        "train.run_name=killed",
        "train.checkpoint_every=1",
        "train.keep_last=3",
        "train.max_steps=100000",
    ]
    args = ["--config", str(TINY)] + [arg for value in sets for arg in ("--set", value)]
    _kill_runs(args, run_dir, runs, seed)
    complete = _check_all_complete(run_dir)
    assert complete >= 1, "no checkpoint was ever completed: raise the kill delays"


def test_sigkill_at_random_moments_leaves_only_complete_checkpoints(tmp_path, text_cache_dir):
    _sigkill_test(tmp_path, text_cache_dir, runs=3, seed=1)


@pytest.mark.slow
def test_sigkill_ten_runs(tmp_path, text_cache_dir):
    _sigkill_test(tmp_path, text_cache_dir, runs=10, seed=2)


@pytest.mark.parametrize(
    ("field", "changed"),
    [("output", "linear"), ("disc_head", "projection"), ("contrastive_weight", "1.0")],
)
def test_a_field_added_since_the_checkpoint_takes_its_default_but_a_change_is_refused(
    tiny_config, field, changed
):
    """A checkpoint's config written before a gan field existed resumes with the default (tanh,
    concat head, no contrastive term), and is refused, naming the key, when the run now asks for
    another value."""
    cfg = tiny_config()
    saved = config_to_dict(cfg)
    del saved["gan"][field]  # as written by the version before the field
    check_resumable(saved, cfg)  # no error: missing = default
    with pytest.raises(ValueError, match=rf"gan\.{field}"):
        check_resumable(saved, tiny_config(f"gan.{field}={changed}"))

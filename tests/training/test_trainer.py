"""The training loop: NaN guard, EMA warm-up, data sharding, 2-process CPU training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imagegen.training import checkpoint as ckpt
from imagegen.training.data import DataPosition, ShardedBatchSampler, epoch_order
from imagegen.training.ema import EMA
from imagegen.training.objectives import DiffusionObjective
from imagegen.training.trainer import Trainer, TrainingStopped, TrainSummary

REPO = Path(__file__).resolve().parents[2]


def _poison_steps(monkeypatch, bad_calls):
    """Make the diffusion loss NaN on the given (1-based) calls."""
    original, calls = DiffusionObjective.loss, {"n": 0}

    def loss(self, *args, **kwargs):
        calls["n"] += 1
        value, logs = original(self, *args, **kwargs)
        if calls["n"] in bad_calls:
            value = value * float("nan")
        return value, logs

    monkeypatch.setattr(DiffusionObjective, "loss", loss)


def test_nan_steps_are_skipped_and_counted(tiny_config, monkeypatch):
    _poison_steps(monkeypatch, {2, 3})
    summary = Trainer(tiny_config()).fit()
    assert summary.step == 6 and summary.bad_steps == 2
    assert ckpt.read_trainer_state(summary.checkpoint)["bad_steps"] == 2
    logged = [json.loads(line) for line in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(entry["bad_steps"] for entry in logged) == 2
    assert all(np.isfinite(entry["loss"]) for entry in logged if "loss" in entry)


def test_ten_nan_steps_in_a_row_stop_the_run_and_keep_the_last_checkpoint(tiny_config, monkeypatch):
    _poison_steps(monkeypatch, set(range(4, 100)))
    trainer = Trainer(tiny_config("train.checkpoint_every=1", "train.max_steps=50"))
    with pytest.raises(TrainingStopped, match="10 consecutive steps.*checkpoint-000003"):
        trainer.fit()
    assert [p.name for p in ckpt.list_checkpoints(trainer.run_dir)][-1] == "checkpoint-000003"


def test_ema_warms_up_from_zero_toward_its_maximum():
    net = torch.nn.Linear(4, 4)
    ema = EMA(net, max_decay=0.999, inv_gamma=1.0, power=0.75)
    decays = [ema.decay(step) for step in range(1, 10_000, 50)]
    assert ema.decay(1) == 0.0  # the first update copies the model
    assert all(a <= b for a, b in zip(decays, decays[1:])) and max(decays) <= 0.999
    assert 0.9 < ema.decay(2_000) < 0.999
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert torch.equal(ema.refresh().weight, net.weight)  # decay 0 on the first update
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # second update: decay 1 - 2^-0.75 ~ 0.41
    expected = ema.decay(2)
    assert 0.3 < expected < 0.5


def test_short_runs_sample_from_trained_not_initial_weights(tiny_config):
    """After 6 steps the warmed-up EMA has moved most of the way from the initial weights to the
    model's; a constant 0.999 decay (no warm-up) would still be within 1% of the initial weights."""
    from imagegen import factory

    cfg = tiny_config()
    torch.manual_seed(cfg.train.seed)
    initial = factory.build_unet(cfg.model, 384)
    trainer = Trainer(cfg)
    trainer.fit()
    model = trainer.accelerator.unwrap_model(trainer.objective.networks["model"])
    averaged = trainer.emas["model"].refresh()

    def distance(a, b):
        return sum(((p - q) ** 2).sum() for p, q in zip(a.parameters(), b.parameters())).sqrt().item()

    travelled = distance(initial, model)
    assert travelled > 0
    assert distance(averaged, model) < 0.5 * travelled
    assert distance(initial, averaged) > 0.5 * travelled


def test_batches_are_sharded_not_duplicated():
    one = ShardedBatchSampler(100, batch_size=8, seed=3, rank=0, world_size=1)
    ranks = [ShardedBatchSampler(100, batch_size=4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    single, pairs = iter(one), [iter(s) for s in ranks]
    for _ in range(30):  # several epochs
        global_batch = next(single)
        a, b = next(pairs[0]), next(pairs[1])
        assert not set(a) & set(b)
        assert sorted(a + b) == sorted(global_batch)


def test_sampler_resumes_from_a_position():
    full = iter(ShardedBatchSampler(50, batch_size=5, seed=0, rank=0, world_size=1))
    seen = [next(full) for _ in range(23)]
    position = DataPosition()
    for _ in range(11):
        position.advance(5, 50)
    resumed = iter(ShardedBatchSampler(50, batch_size=5, seed=0, rank=0, world_size=1, start=position))
    assert [next(resumed) for _ in range(12)] == seen[11:]
    assert sorted(np.concatenate(seen[:10])) == list(range(50))  # an epoch covers every index once
    assert not np.array_equal(epoch_order(50, 0, 0), epoch_order(50, 0, 1))


def test_two_process_cpu_training(tmp_path, text_cache_dir):
    """Two CPU processes under `accelerate launch` (gloo): sharded data, main-only writes, loads in one.

    accelerate 1.x's `--cpu` launcher starts a single process; `--multi_gpu` starts torchrun, and
    with no GPU the trainer selects accelerate's MULTI_CPU (gloo) mode.
    """
    runs = tmp_path / "runs"
    sets = [
        f"train.output_dir={runs}",
        f"text.cache_dir={text_cache_dir}",
        "train.run_name=ddp",
        "train.max_steps=4",
        "train.checkpoint_every=2",
    ]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "imagegen.train",
        "--config",
        str(REPO / "configs" / "tiny-test.yaml"),
    ]
    cmd += [arg for value in sets for arg in ("--set", value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = runs / "ddp"
    state = ckpt.read_trainer_state(ckpt.latest_checkpoint(run_dir))
    assert state["num_processes"] == 2 and state["step"] == 4
    assert state["position"]["offset"] == 4 * 8 * 2  # 4 steps x batch 8 x 2 processes, none repeated
    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged)), "only the main process logs"
    assert done.stdout.count("done: 4 steps") == 1, "only the main process prints the summary"
    from imagegen.pipelines import load_pipeline

    images = load_pipeline(run_dir, device="cpu")(["a red circle"], num_steps=2, seed=0)
    assert images[0].size == (16, 16)


def _final_weights(summary) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    folder = summary.checkpoint / "ema" / "model"
    return load_file(str(next(folder.glob("*.safetensors"))))


def test_sync_free_step_trains_like_the_plain_step(tiny_config):
    """speed.sync_free_step (fused AdamW honouring a device found_inf flag, masked EMA) gives the
    same weights as the default guarded step when every loss is finite."""
    plain = Trainer(tiny_config("train.run_name=plain")).fit()
    fast = Trainer(tiny_config("train.run_name=fast", "speed.sync_free_step=true")).fit()
    a, b = _final_weights(plain), _final_weights(fast)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=2e-4)  # fused vs foreach rounding


def test_sync_free_step_skips_and_counts_non_finite_steps(tiny_config, monkeypatch):
    """A NaN loss changes no weight: the run stays finite, and the skipped steps are counted at log
    steps (the step counter advances over them, as with GradScaler)."""
    _poison_steps(monkeypatch, {2, 3})
    summary = Trainer(tiny_config("speed.sync_free_step=true", "train.log_every=1")).fit()
    assert summary.step == 6 and summary.bad_steps == 2
    assert all(torch.isfinite(t).all() for t in _final_weights(summary).values())


def test_sync_free_step_stops_after_too_many_skipped_steps(tiny_config, monkeypatch):
    _poison_steps(monkeypatch, set(range(4, 100)))
    trainer = Trainer(tiny_config("speed.sync_free_step=true", "train.log_every=1", "train.max_steps=50"))
    with pytest.raises(TrainingStopped, match="10 consecutive steps"):
        trainer.fit()


def test_summary_says_not_logged_rather_than_nan_when_no_log_step_was_reached():
    """A short resume that ends between log steps has no logged loss; the summary must not print
    'last loss nan', which reads as a diverged run."""
    summary = TrainSummary(Path("runs/x"), 2175, 0.0, 8.3, float("nan"), 0, None, None)
    assert "last loss not logged" in summary.line() and "nan" not in summary.line()
    logged = TrainSummary(Path("runs/x"), 10, 0.1, 8.3, 0.25, 0, None, None)
    assert "last loss 0.2500" in logged.line()


def test_a_second_trainer_in_one_process_may_use_another_precision(tiny_config):
    """accelerate refuses an Accelerator whose mixed_precision differs from the process's first;
    a notebook training a fp32 CLIP and then a bf16 decoder must not hit that."""
    first = Trainer(tiny_config("train.run_name=fp32", 'train.mixed_precision="no"', "train.max_steps=1"))
    assert first.precision == "no"
    second = Trainer(tiny_config("train.run_name=bf16", 'train.mixed_precision="bf16"', "train.max_steps=1"))
    assert second.precision == "bf16"
    assert second.fit().step == 1

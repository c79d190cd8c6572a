"""No checkpoint lost: resume from an older checkpoint, a re-save killed mid-commit, a copied run,
and a corrupt newest checkpoint (issue 15, items 1, 2, 3 and 8)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from imagegen.training import checkpoint as ckpt
from imagegen.training.trainer import Trainer


def _steps(run_dir: Path) -> list[int]:
    return [ckpt.read_trainer_state(p)["step"] for p in ckpt.list_checkpoints(run_dir)]


@pytest.fixture(scope="module")
def six_checkpoints(tmp_path_factory, text_cache_dir) -> Path:
    """A tiny run with a checkpoint at every step 1..6 (keep_last=0 keeps them all)."""
    from imagegen.config import load_config
    from tests.training.conftest import TINY

    root = tmp_path_factory.mktemp("six")
    cfg = load_config(
        TINY,
        [
            f"train.output_dir={root / 'runs'}",
            f"text.cache_dir={text_cache_dir}",
            "train.run_name=six",
            "train.checkpoint_every=1",
            "train.keep_last=0",
        ],
    )
    return Trainer(cfg).fit().run_dir


def _copy(run_dir: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "runs" / name))


@pytest.mark.parametrize("keep_last", [1, 2])
def test_resume_from_an_older_checkpoint_keeps_what_it_writes_and_becomes_latest(
    six_checkpoints, tmp_path, tiny_config, keep_last
):
    """Item 1: resuming from checkpoint 3 while 4..6 exist sets 4..6 aside (RUN/abandoned/), so
    the checkpoints this invocation writes are neither pruned nor shadowed by the old ones."""
    run = _copy(six_checkpoints, tmp_path, "older")
    for path in ckpt.list_checkpoints(run):  # make them this folder's own, as if trained here
        state = ckpt.read_trainer_state(path)
        ckpt.write_json_atomic(path / "trainer.json", {**state, "run_dir": str(run.resolve())})
    resume = run / "checkpoints" / "checkpoint-000003"
    cfg = tiny_config("train.run_name=older", "train.checkpoint_every=1", f"train.keep_last={keep_last}")
    Trainer(cfg, resume=str(resume)).fit(stop_at=5)
    assert _steps(run)[-1] == 5, "the checkpoint written last is the newest"
    assert _steps(run) == [4, 5][-keep_last:], "pruned by keep_last, but nothing it wrote is gone"
    (aside,) = (run / ckpt.ABANDONED_DIR).iterdir()
    assert sorted(p.name for p in aside.iterdir()) == [f"checkpoint-00000{i}" for i in (4, 5, 6)]
    latest = Trainer(tiny_config("train.run_name=older"), resume="latest")
    assert latest.resume_from.name == "checkpoint-000005"


class Killed(BaseException):
    """Stands for SIGKILL inside a commit: nothing after it runs."""


def test_a_resave_killed_between_the_renames_keeps_a_complete_checkpoint(tiny_config, monkeypatch):
    """Item 2: re-saving step 3 and dying right before the new folder is renamed into place leaves
    a complete step 3 that the next start recovers, instead of restarting from step 0."""
    run = Trainer(tiny_config("train.run_name=resave", "train.max_steps=3")).fit().run_dir
    final = run / "checkpoints" / "checkpoint-000003"
    tmp = ckpt.temporary_path(run, 3)
    shutil.copytree(final, tmp)
    real_replace = os.replace

    def dying_replace(src, dst):
        if Path(src) == tmp:
            raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(Killed):
        ckpt.commit(tmp, 3, 2)
    monkeypatch.setattr(os, "replace", real_replace)
    resumed = Trainer(tiny_config("train.run_name=resave", "train.max_steps=3"), resume="latest")
    resumed.setup()
    assert resumed.step == 3
    assert _steps(run) == [3]


def test_a_prune_killed_mid_delete_leaves_no_half_checkpoint_under_a_complete_name(
    six_checkpoints, tmp_path, monkeypatch
):
    """Pruning renames a checkpoint to `.pruned-checkpoint-N` before deleting it: a kill half-way
    through the deletion (found by tests/training/test_fault_injection.py) used to leave a
    `checkpoint-N` folder missing half its files, which every later start counted as complete."""
    from imagegen.utils.integrity import verify_checkpoint

    run = _copy(six_checkpoints, tmp_path, "pruned")
    for path in ckpt.list_checkpoints(run):  # this folder's own, so that prune may delete them
        state = ckpt.read_trainer_state(path)
        ckpt.write_json_atomic(path / "trainer.json", {**state, "run_dir": str(run.resolve())})

    def dying_rmtree(path, *args, **kwargs):
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        for file in files[: len(files) // 2]:
            file.unlink()
        raise Killed

    monkeypatch.setattr(shutil, "rmtree", dying_rmtree)
    with pytest.raises(Killed):
        ckpt.prune(run, 6, 2)
    monkeypatch.undo()
    for checkpoint in ckpt.list_checkpoints(run):
        verify_checkpoint(checkpoint)  # every folder under a complete name is complete
    ckpt.recover_interrupted(run)
    assert _steps(run) == [2, 3, 4, 5, 6]
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_resuming_a_copied_run_never_prunes_the_checkpoints_it_did_not_write(
    six_checkpoints, tmp_path, tiny_config
):
    """Item 3: `--resume PATH` of a copied run with keep_last=2 keeps the six copied checkpoints;
    pruning deletes only what this run folder wrote."""
    run = _copy(six_checkpoints, tmp_path, "copied")
    cfg = tiny_config(
        "train.run_name=copied", "train.checkpoint_every=1", "train.keep_last=2", "train.max_steps=9"
    )
    Trainer(cfg, resume=str(run)).fit()
    assert _steps(run) == [1, 2, 3, 4, 5, 6, 8, 9]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


CORRUPTIONS = {
    "truncated weights": ("ema/model/diffusion_pytorch_model.safetensors", _truncate),
    "zero-byte weights": ("ema/model/diffusion_pytorch_model.safetensors", lambda p: p.write_bytes(b"")),
    "random-byte trainer.json": ("trainer.json", lambda p: p.write_bytes(os.urandom(64))),
    "zero-byte config": ("config.yaml", lambda p: p.write_bytes(b"")),
    "flipped weights byte": ("ema/model/diffusion_pytorch_model.safetensors", _flip_last_byte),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_newest_checkpoint_is_named_and_skipped(
    six_checkpoints, tmp_path, tiny_config, caplog, corruption
):
    """Item 8: `--resume latest` / `--resume RUN` and `load_pipeline(RUN)` fall back to the newest
    intact checkpoint with a warning naming the bad file; naming the bad checkpoint itself raises
    a CorruptCheckpointError (a ValueError) naming the file."""
    import imagegen
    from imagegen.cli.generate import main as generate_main
    from imagegen.utils.integrity import CorruptCheckpointError

    run = _copy(six_checkpoints, tmp_path, "corrupt")
    relative, damage = CORRUPTIONS[corruption]
    bad = run / "checkpoints" / "checkpoint-000006"
    damage(bad / relative)
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(tiny_config("train.run_name=corrupt"), resume="latest")
        pipe = imagegen.load_pipeline(run, device="cpu")
    assert trainer.resume_from.name == pipe.checkpoint.name == "checkpoint-000005"
    assert str(bad / relative) in caplog.text
    assert Trainer(tiny_config(), resume=str(run)).resume_from.name == "checkpoint-000005"
    with pytest.raises(CorruptCheckpointError, match=relative.split("/")[-1]):
        imagegen.load_pipeline(bad, device="cpu")
    with pytest.raises(ValueError, match=relative.split("/")[-1]):
        Trainer(tiny_config(), resume=str(bad))
    assert generate_main(["a red circle", "--model", str(bad), "--out", str(tmp_path / "x.png")]) == 2


def test_a_corrupt_optimizer_state_is_skipped_by_resume_but_not_by_generation(
    six_checkpoints, tmp_path, tiny_config, caplog
):
    """Generation reads config.yaml and ema/ only, so a checkpoint whose optimizer state is
    damaged still generates; `--resume` falls back past it, naming the file."""
    import imagegen

    run = _copy(six_checkpoints, tmp_path, "optimizer")
    bad = run / "checkpoints" / "checkpoint-000006" / "state" / "optimizer.bin"
    _flip_last_byte(bad)
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(tiny_config("train.run_name=optimizer"), resume="latest")
    assert trainer.resume_from.name == "checkpoint-000005" and str(bad) in caplog.text
    assert imagegen.load_pipeline(run, device="cpu").checkpoint.name == "checkpoint-000006"

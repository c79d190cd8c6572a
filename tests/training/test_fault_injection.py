"""SIGKILL at seeded random moments, inside checkpoint commits and after resumes from an older
checkpoint: no committed step is ever lost, `--resume latest` continues from the newest, and the
run ends loadable (issue 15, fault-injection acceptance item).

Each invocation is a child forked from one server process (tests/training/killable_trainer.py)
that imported torch once, so twenty kills cost seconds, not twenty interpreter start-ups. The
child keeps a journal (`save N`, `committed N`, `ready S ...`) that these checks are held to.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imagegen.training import checkpoint as ckpt
from imagegen.utils.integrity import verify_checkpoint
from tests.training.conftest import REPO, TINY

SERVER = Path(__file__).with_name("killable_trainer.py")
HOOK_DEADLINE_S = 90  # a hooked child that has not reached its moment by then is a failure


class ForkServer:
    """The test's end of killable_trainer.py: start a child, wait for it, kill it."""

    def __init__(self, log_dir: Path):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        }
        self.stderr = open(log_dir / "server.err", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        self.buffer = b""
        assert self._message(timeout=300) == {"ready": True}, "the fork server did not start"

    def _message(self, timeout: float) -> dict | None:
        """The server's next message, or None when none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("the fork server died (see server.err)")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def start(self, argv: list[str], journal: Path, log: Path, kill: dict | None) -> int:
        request = {"argv": argv, "journal": str(journal), "log": str(log), "kill": kill}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        return self._message(timeout=60)["pid"]

    def wait(self, pid: int, timeout: float) -> int | None:
        """The child's exit code (-9 = SIGKILL), or None if it is still running after `timeout`."""
        message = self._message(timeout)
        if message is None:
            return None
        assert message["pid"] == pid
        return message["exit"]

    def kill(self, pid: int) -> int:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended on its own a moment ago
            pass
        return self.wait(pid, timeout=60)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.stderr.close()


@dataclass
class Journal:
    """What one child wrote: the step it resumed from, the checkpoints it then saw, its saves."""

    ready: int | None = None
    seen: list[int] = field(default_factory=list)
    saves: list[int] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    killed_at: str | None = None

    @classmethod
    def read(cls, path: Path) -> Journal:
        journal = cls()
        for line in path.read_text().splitlines() if path.exists() else []:
            event, _, rest = line.partition(" ")
            if event == "ready":
                step, _, seen = rest.partition(" ")
                journal.ready, journal.seen = int(step), [int(s) for s in seen.split(",") if s]
            elif event in ("save", "committed"):
                getattr(journal, "saves" if event == "save" else "committed").append(int(rest))
            elif event == "kill":
                journal.killed_at = rest
        return journal


def _step(folder: Path) -> int:
    return int(folder.name.rsplit("-", 1)[1])


def _check_complete(run_dir: Path) -> list[int]:
    """Every folder named checkpoint-N (in checkpoints/ or abandoned/) is complete: its files
    match the hashes in its trainer.json, whose step is N. Returns the steps in checkpoints/."""
    folders = ckpt.list_checkpoints(run_dir) + sorted((run_dir / ckpt.ABANDONED_DIR).glob("*/checkpoint-*"))
    for folder in folders:
        assert verify_checkpoint(folder)["step"] == _step(folder), f"{folder} is not step {_step(folder)}"
    return [_step(p) for p in ckpt.list_checkpoints(run_dir)]


def _recoverable(run_dir: Path) -> list[int]:
    """Steps of complete folders a start would use: checkpoint-N, and a `.tmp-`/`.old-` copy
    holding a complete checkpoint (verified) whose checkpoint-N is missing."""
    steps = [_step(p) for p in ckpt.list_checkpoints(run_dir)]
    for prefix in (ckpt.TMP_PREFIX, ckpt.OLD_PREFIX):
        for folder in (run_dir / "checkpoints").glob(f"{prefix}checkpoint-*"):
            final = folder.parent / folder.name[len(prefix) :]
            if not final.exists() and (folder / "trainer.json").exists():
                verify_checkpoint(folder)
                steps.append(_step(folder))
    return sorted(steps)


HOOKED = {  # run index (mod 20) -> the moment its child is killed at (killable_trainer.POINTS)
    1: "before-commit",
    3: "after-rename",
    5: "mid-prune",
    8: "before-trainer-json",
    9: "resave-between-renames",
    11: "mid-set-aside",
    13: "mid-prune",
    15: "before-commit",
    17: "after-rename",
}
BRANCHES = (6, 11, 15)  # run indices (mod 20) that resume from an older checkpoint


def _plan(rng: random.Random, kills: int) -> list[dict]:
    """`kills` runs: each moment of HOOKED at its 2nd or 3rd occurrence (seeded; so each such run
    commits something first), resumes from an older checkpoint at BRANCHES (which one is seeded;
    run 11 from the oldest, so that its kill falls between two moves to abandoned/), and the rest
    killed at a seeded random time 0.1-1.6 s after the fork, start-up and recovery included."""
    plan = []
    for index in range(kills):
        point = HOOKED.get(index % 20)
        nth = 1 if point == "mid-set-aside" else rng.randint(2, 3)
        delay, pick = rng.uniform(0.1, 1.6), rng.random()
        plan.append(
            {
                "kill": {"point": point, "nth": nth} if point else None,
                "delay": delay,
                "branch": index % 20 in BRANCHES,
                "pick": 0.0 if point == "mid-set-aside" else pick,  # which older checkpoint
            }
        )
    return plan


class History:
    """What the run has committed so far, as the journals tell it: `committed` is the newest step
    whose commit returned on the current branch, `begun` the newest step whose save began."""

    def __init__(self):
        self.committed = self.begun = 0

    def branch(self, step: int) -> None:
        self.committed = self.begun = step

    def add(self, journal: Journal) -> None:
        self.committed = max([self.committed, *journal.committed])
        self.begun = max([self.begun, *journal.saves, self.committed])


def _check_resumed(done: Journal, history: History, what: str) -> None:
    """`--resume latest` continued from the newest checkpoint on disk, which holds at least the
    newest committed step (and no step whose save never began): not a restart from 0."""
    assert done.ready == (done.seen[-1] if done.seen else 0), f"{what}: resumed {done.ready} of {done.seen}"
    assert history.committed <= done.ready <= history.begun, (
        f"{what}: --resume latest continued from step {done.ready}; the newest committed step "
        f"was {history.committed}, the newest save begun {history.begun}"
    )


def _sigkill_test(tmp_path: Path, text_cache_dir: Path, kills: int, seed: int) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "killed"
    sets = [
        f"train.output_dir={runs}",
        f"text.cache_dir={text_cache_dir}",
        "train.checkpoint_every=1",
        "train.keep_last=3",
        "train.max_steps=100000",
    ]
    args = ["--config", str(TINY)] + [arg for value in sets for arg in ("--set", value)]
    named = [*args, "--set", "train.run_name=killed"]
    history = History()
    server = ForkServer(tmp_path)
    try:
        warm = [*args, "--set", "train.run_name=warm", "--set", "train.max_steps=1"]  # the text cache
        pid = server.start(warm, tmp_path / "warm.journal", tmp_path / "warm.log", None)
        assert server.wait(pid, timeout=300) == 0, (tmp_path / "warm.log").read_text()[-3000:]
        for index, run in enumerate(_plan(random.Random(seed), kills)):
            older = _check_complete(run_dir)[:-1]
            resume = "latest"
            if run["branch"]:
                assert len(older) >= 2, f"run {index}: too few checkpoints to resume from an older one"
                step = older[int(run["pick"] * len(older))]
                resume = str(run_dir / "checkpoints" / ckpt.checkpoint_name(step))
            what = f"run {index} (kill {run['kill'] or round(run['delay'], 2)}, --resume {resume})"
            journal, log = tmp_path / f"run{index:02d}.journal", tmp_path / f"run{index:02d}.log"
            pid = server.start([*named, "--resume", resume], journal, log, run["kill"])
            code = server.wait(pid, timeout=HOOK_DEADLINE_S if run["kill"] else run["delay"])
            code = server.kill(pid) if code is None else code
            assert code == -signal.SIGKILL, f"{what} exited with {code}:\n{log.read_text()[-3000:]}"
            done = Journal.read(journal)
            if run["kill"]:
                assert done.killed_at == run["kill"]["point"], f"{what}: killed before its moment came"
            if run["branch"]:
                newer = [s for s in _recoverable(run_dir) if s > step]
                if done.ready is not None or not newer:  # the newer ones are in abandoned/
                    assert done.ready is None or done.ready == done.seen[-1] == step, (
                        f"{what}: resumed from {done.ready} with {done.seen} in checkpoints/"
                    )
                    assert list((run_dir / ckpt.ABANDONED_DIR).glob(f"*-after-checkpoint-{step:06d}"))
                    history.branch(step)
            elif done.ready is not None:
                _check_resumed(done, history, what)
            history.add(done)
            _check_complete(run_dir)
            assert max(_recoverable(run_dir), default=0) >= history.committed, (
                f"{what}: the committed step {history.committed} is gone: "
                f"{sorted(os.listdir(run_dir / 'checkpoints'))}"
            )
        # the run ends: one more start trains two steps past the newest save begun, and exits
        last = history.begun + 2
        journal, log = tmp_path / "final.journal", tmp_path / "final.log"
        pid = server.start(
            [*named, "--resume", "latest", "--set", f"train.max_steps={last}"], journal, log, None
        )
        assert server.wait(pid, timeout=300) == 0, log.read_text()[-3000:]
    finally:
        server.close()
    done = Journal.read(journal)
    _check_resumed(done, history, "the final run")
    assert history.committed > 0 and done.committed[-1] == last
    assert _check_complete(run_dir)[-1] == last
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not leftovers, f"interrupted commits left behind: {leftovers}"
    import imagegen

    pipe = imagegen.load_pipeline(run_dir, device="cpu")
    assert pipe.checkpoint.name == ckpt.checkpoint_name(last)
    (image,) = pipe("a red circle", num_steps=1)
    assert image.size == (16, 16)


def test_twenty_sigkills_lose_no_committed_checkpoint(tmp_path, text_cache_dir):
    """Twenty seeded kills (nine at named moments of a commit, prune or set-aside; eleven at
    random times); after each: every checkpoint-N folder complete, the newest committed step still
    there, and the next `--resume latest` continues from it; at the end the run loads."""
    _sigkill_test(tmp_path, text_cache_dir, kills=20, seed=15)


@pytest.mark.slow
def test_sixty_sigkills_lose_no_committed_checkpoint(tmp_path, text_cache_dir):
    _sigkill_test(tmp_path, text_cache_dir, kills=60, seed=16)

"""A fork server for tests/training/test_fault_injection.py (not a test module itself).

Python and torch start once here; each training invocation then runs in a forked child, so a
SIGKILL costs no interpreter start-up. The child runs `imagegen.cli.train.main(argv)` with

- a journal (one line per event, written with os.write so a kill never leaves half a buffer):
  `ready S N1,N2,..` after set-up (S = the step it resumes from, N = the complete checkpoints then
  on disk), `save N` when a save of step N begins, `committed N` once `commit` returned, and
  `kill POINT` right before a fault hook kills it;
- an optional fault hook that SIGKILLs the child at the `nth` occurrence of a named moment of the
  checkpoint code (POINTS below).

Protocol, one JSON object a line: the test writes {"argv", "journal", "log", "kill"} to stdin;
this server answers {"pid"} once forked and {"pid", "exit"} when the child ended (`exit` as
os.waitstatus_to_exitcode: -9 for SIGKILL). The child's stdout and stderr go to `log`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import traceback
from pathlib import Path

POINTS = {
    "before-trainer-json": "a temporary folder holds state/ and ema/ but not yet trainer.json",
    "before-commit": "the temporary folder is complete; it is not yet renamed into place",
    "after-rename": "a checkpoint was just renamed into place; older ones not yet pruned",
    "mid-prune": "an old checkpoint is half deleted by keep_last pruning",
    "resave-between-renames": "a re-save of step N moved the old folder aside, the new one not yet in",
    "mid-set-aside": "a resume from an older checkpoint moved one newer checkpoint to abandoned/",
}


def _install(journal: str, kill: dict | None) -> None:
    """Wrap the trainer's checkpoint code with the journal and the fault hook."""
    import shutil

    from imagegen.training import checkpoint as ckpt
    from imagegen.training.trainer import Trainer

    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    seen: dict[str, int] = {}
    resaving = [False]

    def note(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    def die(point: str) -> None:
        note(f"kill {point}")
        os.kill(os.getpid(), signal.SIGKILL)

    def at(point: str) -> bool:
        """Count one occurrence of `point`; True at the one the hook is armed for."""
        seen[point] = seen.get(point, 0) + 1
        return kill is not None and kill["point"] == point and seen[point] == kill["nth"]

    real_setup, real_save = Trainer.setup, Trainer.save

    def setup(self) -> None:
        real_setup(self)
        steps = [str(ckpt.read_trainer_state(p)["step"]) for p in ckpt.list_checkpoints(self.run_dir)]
        note(f"ready {self.step} {','.join(steps)}")

    def save(self):
        note(f"save {self.step}")
        if at("resave-between-renames"):
            real_save(self)  # step N committed; now re-save it and die between the two renames
            resaving[0] = True
        return real_save(self)

    Trainer.setup, Trainer.save = setup, save

    real_write_json, real_commit = ckpt.write_json_atomic, ckpt.commit

    def write_json_atomic(path, data):
        if Path(path).name == "trainer.json" and at("before-trainer-json"):
            die("before-trainer-json")
        real_write_json(path, data)

    def commit(tmp, step, *args, **kwargs):
        if at("before-commit"):
            die("before-commit")
        final = real_commit(tmp, step, *args, **kwargs)
        note(f"committed {step}")
        return final

    ckpt.write_json_atomic, ckpt.commit = write_json_atomic, commit

    class Os:  # os as seen by imagegen.training.checkpoint: renames can be hooked
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def replace(src, dst):
            src, dst = Path(src), Path(dst)
            if resaving[0] and src.name.startswith(ckpt.TMP_PREFIX):
                die("resave-between-renames")
            os.replace(src, dst)
            if src.name.startswith(ckpt.TMP_PREFIX) and at("after-rename"):
                die("after-rename")
            if dst.parent.parent.name == ckpt.ABANDONED_DIR and at("mid-set-aside"):
                die("mid-set-aside")

    class Shutil:  # shutil as seen by the checkpoint code: a prune can be cut off half-way
        def __getattr__(self, name):
            return getattr(shutil, name)

        @staticmethod
        def rmtree(path, *args, **kwargs):
            path = Path(path)
            pruned = re.search(r"checkpoint-\d+$", path.name) and not path.name.startswith(ckpt.TMP_PREFIX)
            if pruned and path.is_dir() and at("mid-prune"):
                files = sorted(p for p in path.rglob("*") if p.is_file())
                for file in files[: len(files) // 2]:
                    file.unlink()
                die("mid-prune")
            shutil.rmtree(path, *args, **kwargs)

    ckpt.os, ckpt.shutil = Os(), Shutil()


def _child(request: dict) -> int:
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    try:
        _install(request["journal"], request.get("kill"))
        from imagegen.cli.train import main

        return main(request["argv"])
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 2
    except BaseException:  # noqa: BLE001 - reported in the log, and by the exit code
        traceback.print_exc()
        return 3
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def serve() -> None:
    import torch

    import imagegen.cli.train  # noqa: F401 - imported once, before any fork
    import imagegen.models  # noqa: F401
    import imagegen.text  # noqa: F401
    import imagegen.training.trainer  # noqa: F401

    torch.set_num_threads(1)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                code = _child(request)
            finally:
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()

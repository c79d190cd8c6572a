"""The training bar counts whichever limit stops the run: steps or minutes (training/progress.py)."""

from __future__ import annotations

import pytest

from imagegen.training.progress import TrainProgress, time_binds
from imagegen.training.trainer import Trainer


@pytest.mark.parametrize(
    ("steps_done", "steps_allowed", "elapsed_s", "max_minutes", "expected"),
    [
        (50, 10_000_000, 60.0, 10.0, True),  # the default 10M steps: the 10 minutes stop it
        (900, 1000, 60.0, 10.0, False),  # 90% of the steps in 10% of the time: steps stop it
        (10, 100, 120.0, 10.0, True),  # 10% of the steps in 20% of the time
        (10, 100, 1e6, 0.0, False),  # no time limit
    ],
)
def test_the_limit_further_along_is_the_one_that_binds(
    steps_done, steps_allowed, elapsed_s, max_minutes, expected
):
    assert time_binds(steps_done, steps_allowed, elapsed_s, max_minutes) is expected


def test_the_bar_switches_between_steps_and_minutes_as_the_rate_says():
    progress = TrainProgress(max_steps=1000, max_minutes=10.0, start_step=200, disable=True)
    progress.update(step=600, elapsed_s=60.0)  # 400 of 800 steps in a tenth of the time
    assert (progress.unit, progress.bar.total, progress.bar.n) == ("steps", 1000, 600)
    progress.update(step=610, elapsed_s=360.0)  # 410 / 800 steps in 60% of the time: minutes bind
    assert (progress.unit, progress.bar.total, progress.bar.n) == ("min", 10.0, 6.0)
    progress.close()


def test_a_time_limited_run_shows_minutes_and_a_step_limited_run_steps(tiny_config):
    timed = Trainer(tiny_config("train.max_steps=10000000", "train.max_minutes=0.02", "train.run_name=timed"))
    timed.fit()
    assert timed.progress.unit == "min" and timed.progress.bar.total == 0.02
    assert timed.progress.bar.n == pytest.approx(0.02, abs=0.01)
    counted = Trainer(tiny_config("train.max_steps=3", "train.max_minutes=10", "train.run_name=counted"))
    counted.fit()
    assert (
        counted.progress.unit == "steps" and counted.progress.bar.total == 3 and counted.progress.bar.n == 3
    )

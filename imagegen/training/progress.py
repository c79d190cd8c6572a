"""The training progress bar, measured against whichever limit will stop the run.

A run stops at `train.max_steps` or after `train.max_minutes`, whichever comes first. At a steady
step rate, the limit that comes first is the one whose fraction is further along:

    steps done / steps allowed   vs   minutes elapsed / minutes allowed

so the bar shows steps (total max_steps) while the step fraction leads, and minutes (total
max_minutes, ETA = the time left) while the time fraction leads. A config with the default
10 million steps and a 10-minute limit therefore shows "3.2/10 min", not a 24-hour ETA.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

STEPS_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
)
REFRESH_S = 0.1  # tqdm's default mininterval
MINUTES_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:g} min [{elapsed}<{remaining}{postfix}]"


def time_binds(steps_done: int, steps_allowed: int, elapsed_s: float, max_minutes: float) -> bool:
    """True when `max_minutes` (> 0) will stop the run before `steps_allowed` more steps are done,
    judged at the rate so far: the elapsed fraction of the time exceeds the done fraction of the steps."""
    if max_minutes <= 0:
        return False
    return elapsed_s / (60 * max_minutes) > steps_done / max(steps_allowed, 1)


class TrainProgress:
    """tqdm bar of a training run: steps or minutes, whichever limit binds (module docstring)."""

    def __init__(self, max_steps: int, max_minutes: float, start_step: int, disable: bool = False):
        self.max_steps, self.max_minutes, self.start_step = max_steps, max_minutes, start_step
        self.bar = tqdm(
            total=max_steps,
            initial=start_step,
            disable=disable,
            desc="train",
            unit="step",
            bar_format=STEPS_FORMAT,
            dynamic_ncols=True,
        )
        self.unit = "steps"
        self.shown_at = 0.0

    def update(self, step: int, elapsed_s: float) -> None:
        """Show `step` (the run's step count) after `elapsed_s` seconds of this invocation."""
        done, allowed = step - self.start_step, self.max_steps - self.start_step
        bar = self.bar
        if time_binds(done, allowed, elapsed_s, self.max_minutes):
            # n / elapsed is 1/60 min per second, so tqdm's ETA is exactly the time left
            self.unit, bar.bar_format = "min", MINUTES_FORMAT
            bar.total, bar.initial, bar.n = self.max_minutes, 0, min(elapsed_s / 60, self.max_minutes)
        else:
            self.unit, bar.bar_format = "steps", STEPS_FORMAT
            bar.total, bar.initial, bar.n = self.max_steps, self.start_step, step
        now = time.monotonic()
        if not bar.disable and now - self.shown_at >= REFRESH_S:  # as often as tqdm's update() prints
            self.shown_at = now
            bar.refresh()  # n is set, not added (update() would smooth one rate over both units)

    def set_postfix(self, values: dict) -> None:
        self.bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        self.bar.close()

"""What a run writes besides checkpoints: scalars, sample grids and the summary line.

RUN/metrics.jsonl     one JSON object per logged step (always written; easy to plot or diff)
RUN/logs/             TensorBoard event files, through accelerate's tracker, when tensorboard is installed
RUN/samples/          labelled sample grids, step-NNNNNN.png (fixed prompts and seeds, EMA weights)
RUN/summary.txt       the final summary line
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import torch
from accelerate import Accelerator

from imagegen.config import RunConfig
from imagegen.utils.images import make_grid, tensor_to_pil

log = logging.getLogger("imagegen.train")


class RunLogger:
    """Main-process logging for one run."""

    def __init__(self, run_dir: Path, accelerator: Accelerator, cfg: RunConfig):
        self.run_dir = run_dir
        self.metrics = open(run_dir / "metrics.jsonl", "a")
        self.accelerator = accelerator
        self.tensorboard = importlib.util.find_spec("tensorboard") is not None
        if self.tensorboard:
            from accelerate.tracking import TensorBoardTracker

            self.tracker = TensorBoardTracker("logs", logging_dir=str(run_dir))
            self.tracker.start()
            self.tracker.store_init_configuration(_flat_scalars(cfg))
        else:
            log.warning(
                "tensorboard is not installed: scalars go to metrics.jsonl only "
                "(pip install 'imagegen[dev]' for TensorBoard)"
            )

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.metrics.write(json.dumps({"step": step, **values}) + "\n")
        self.metrics.flush()
        if self.tensorboard:
            self.tracker.log(values, step=step)

    def write_grid(self, images: torch.Tensor, prompts: list[str], step: int) -> Path:
        folder = self.run_dir / "samples"
        folder.mkdir(exist_ok=True)
        path = folder / f"step-{step:06d}.png"
        make_grid(tensor_to_pil(images), labels=prompts, columns=4).save(path)
        return path

    def close(self, summary: str) -> None:
        (self.run_dir / "summary.txt").write_text(summary + "\n")
        self.metrics.close()
        if self.tensorboard:
            self.tracker.finish()


def _flat_scalars(cfg: RunConfig) -> dict[str, float | int | str | bool]:
    """Config as flat key -> scalar (TensorBoard hparams take no lists)."""
    from imagegen.config import config_to_dict

    flat: dict[str, float | int | str | bool] = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (int, float, str, bool)):
                flat[f"{prefix}{key}"] = value

    walk(config_to_dict(cfg), "")
    return flat

"""Deterministic, resumable, process-sharded batches for the trainer.

The order of samples is a function of (seed, epoch) only, and the trainer records how far into
that order it got (`DataPosition`). Resuming rebuilds the same order and starts at the recorded
position, which is what makes `--resume` exact. With W processes, each global batch of
W * batch_size indices is split so that process r takes every W-th index starting at r: the data
is sharded, never duplicated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


@dataclass
class DataPosition:
    epoch: int = 0
    offset: int = 0  # global samples consumed in this epoch (all processes together)

    def advance(self, global_batch: int, length: int) -> None:
        self.offset += global_batch
        if self.offset + global_batch > length:  # the last incomplete global batch is dropped
            self.epoch, self.offset = self.epoch + 1, 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def epoch_order(length: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of dataset indices used in `epoch` (int64 [length])."""
    return np.random.default_rng([seed, epoch, 7919]).permutation(length)


class ShardedBatchSampler:
    """Yields this process's index lists forever, starting at a recorded position."""

    def __init__(
        self,
        length: int,
        batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
        start: DataPosition | None = None,
    ):
        if length < batch_size * world_size:
            raise ValueError(
                f"dataset has {length} samples, fewer than one global batch "
                f"(batch_size {batch_size} x {world_size} processes)"
            )
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.start = DataPosition(**(start.to_dict() if start else {}))

    def __iter__(self) -> Iterator[list[int]]:
        position = DataPosition(**self.start.to_dict())
        global_batch = self.batch_size * self.world_size
        order, order_epoch = None, -1
        while True:
            if position.epoch != order_epoch:
                order, order_epoch = epoch_order(self.length, self.seed, position.epoch), position.epoch
            window = order[position.offset : position.offset + global_batch]
            yield window[self.rank :: self.world_size].tolist()
            position.advance(global_batch, self.length)


def collate(samples: list[dict]) -> dict:
    """Stack images; keep captions (and specs, when present) as lists."""
    batch = {
        "image": torch.stack([torch.as_tensor(s["image"]) for s in samples]),  # [B, 3, H, W]
        "caption": [s["caption"] for s in samples],
    }
    if "spec" in samples[0]:
        batch["spec"] = [s["spec"] for s in samples]
    if "index" in samples[0]:
        batch["index"] = [s["index"] for s in samples]
    return batch


def make_loader(dataset: Dataset, sampler: ShardedBatchSampler, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        # page-locked batches: the trainer's non_blocking copy to a GPU then overlaps compute
        pin_memory=torch.cuda.is_available(),
    )

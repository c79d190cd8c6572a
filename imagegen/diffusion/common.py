"""Argument checks, seeded random draws and null-condition broadcasting shared by the diffusion modules.

Every public entry point of `imagegen.diffusion` validates its arguments with these helpers, so a
bad name or number fails with a ValueError that names the argument and the allowed values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def check_num_steps(num_steps: int, num_timesteps: int) -> int:
    """Sampling steps must be an integer in [1, num_timesteps]."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        raise ValueError(f"num_steps must be an integer, got {num_steps!r}")
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_timesteps}] (training timesteps), got {num_steps}")
    return num_steps


class NonFiniteOutputError(ValueError):
    """The model output NaN or inf while sampling (corrupt weights, or an extreme guidance scale)."""


def check_finite(output: torch.Tensor, where: str) -> torch.Tensor:
    """`output`, or NonFiniteOutputError naming `where` (e.g. "step 3/25 (t=880)") if any entry is
    NaN/inf. One host sync per call: sampling checks once per step, so all-black images are never
    returned as a success."""
    if not bool(torch.isfinite(output).all()):
        raise NonFiniteOutputError(f"{where}: the model output holds NaN/inf")
    return output


def check_guidance_scale(guidance_scale: float) -> float:
    """Guidance weights are finite and non-negative (0 = unconditional, 1 = conditional)."""
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise ValueError(f"guidance_scale must be a number, got {guidance_scale!r}")
    if not 0 <= guidance_scale < math.inf:  # NaN compares false; an int is compared, not cast
        raise ValueError(f"guidance_scale must be finite and >= 0, got {guidance_scale}")
    try:
        return float(guidance_scale)
    except OverflowError:  # an int beyond float range
        raise ValueError("guidance_scale must be finite and >= 0, got an int beyond float range") from None


def check_probability(argument: str, value: float, low_open: bool = False) -> float:
    """A probability in [0, 1] (or (0, 1] when `low_open`)."""
    number = isinstance(value, (int, float))
    if not (number and (0 < value if low_open else 0 <= value) and value <= 1):  # NaN compares false
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{argument} must be in {interval}, got {value!r}")
    return float(value)


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    # A generator only draws on its own device; the result is moved to `device` afterwards, so a
    # CPU generator gives the same numbers whatever device the model runs on.
    return generator.device if generator is not None else device


def randn(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal draws of `shape` on `device`, taken from `generator` (any device)."""
    draw = torch.randn(tuple(shape), generator=generator, device=_draw_device(generator, device), dtype=dtype)
    return draw.to(device)


def rand(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) float32 draws of `shape` on `device`, taken from `generator`."""
    return torch.rand(tuple(shape), generator=generator, device=_draw_device(generator, device)).to(device)


def randint(
    high: int, shape: Sequence[int], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Integers uniform in [0, high) (long) of `shape` on `device`, taken from `generator`."""
    draw = torch.randint(0, high, tuple(shape), generator=generator, device=_draw_device(generator, device))
    return draw.to(device)


def condition_batch(cond: dict[str, torch.Tensor]) -> int | None:
    """The common batch size of a conditioning dict (None when it is empty)."""
    sizes = {key: value.shape[0] for key, value in cond.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"conditioning tensors disagree on the batch size: {sizes}")
    return next(iter(sizes.values()), None)


def expand_null_condition(
    cond: dict[str, torch.Tensor], null_cond: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The null condition with the keys and batch size B of `cond`.

    cond: tensors with batch B. null_cond: a subset of cond's keys, each with batch 1 or B (e.g.
    the encoding of "" without `lowres`/`aug_level`); keys it lacks are taken from `cond`, so a
    super-resolution stage keeps its low-res input when the text is dropped.
    Returns a dict with cond's keys, each [B, ...] (batch-1 rows are broadcast, not copied).
    """
    extra = sorted(set(null_cond) - set(cond))
    if extra:
        raise ValueError(f"null/unconditional keys {extra} are not in the condition {sorted(cond)}")
    batch = condition_batch(cond)
    full = dict(cond)
    for key, null in null_cond.items():
        if null.shape[1:] != cond[key].shape[1:] or null.shape[0] not in (1, batch):
            raise ValueError(
                f"null/unconditional {key!r} has shape {tuple(null.shape)}; expected batch 1 or {batch} "
                f"and trailing shape {tuple(cond[key].shape[1:])}"
            )
        full[key] = null.expand_as(cond[key])
    return full

"""Argument checks shared across layers (diffusion, GAN): a bad name fails with a ValueError that
names the argument and lists what is allowed."""

from __future__ import annotations

from collections.abc import Sequence


def check_choice(argument: str, value: str, allowed: Sequence[str]) -> str:
    """Return `value` if it is one of `allowed`; otherwise raise a ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"unknown {argument} {value!r}; allowed: {', '.join(allowed)}")
    return value

"""Quiet loading of transformers models from local folders."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_hf_loading() -> Iterator[None]:
    """Hide transformers' per-load "Loading weights" progress bar and load report (a CLIP folder's
    vision tower is reported "unexpected" by CLIPTextModel); callers check missing weights instead.

    A CLI's one-line error must stay one line: the bar would otherwise print above it.
    """
    from transformers.utils import logging as hf_logging

    was_enabled, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()

"""Command-line pieces shared by every command: config + dotted overrides, logging set-up."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from imagegen.config import ConfigError, RunConfig, load_config
from imagegen.utils.cli_parser import one_line


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", required=required, help="YAML file in configs/ (see docs/training.md)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, repeatable: --set train.lr=1e-4 --set data.resolution=64",
    )


def resolve_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RunConfig:
    """Load the config; a schema or value error prints one line `error: ...` and exits 2."""
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"{parser.prog}: error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None


def setup_logging() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # imagegen never downloads at run time
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "accelerate", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user's mistake raises: ValueError (ConfigError, CorruptCheckpointError,
    NonFiniteOutputError and every argument check), OSError (a missing, unreadable, unwritable or
    full path) and safetensors' SafetensorError (a truncated or unwritable weights file)."""
    from safetensors import SafetensorError

    return (ValueError, OSError, SafetensorError)


def run_reporting_errors(command: Callable[[], int]) -> int:
    """Run `command`; a user's mistake prints one line `error: ...` on stderr and returns 2."""
    try:
        return command()
    except user_errors() as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2

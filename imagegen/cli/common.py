"""Command-line pieces shared by every command: config + dotted overrides, logging set-up."""

from __future__ import annotations

import argparse
import logging
import os

from imagegen.config import ConfigError, RunConfig, load_config


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
    """Load the config, turning schema errors into a clean usage error (exit code 2)."""
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as error:
        parser.error(str(error))


def setup_logging() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # imagegen never downloads at run time
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "accelerate", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

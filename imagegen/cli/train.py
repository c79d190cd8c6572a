"""`python -m imagegen.train --config configs/NAME.yaml [--set key=value ...] [--resume latest]`."""

from __future__ import annotations

import argparse
import sys

from imagegen.cli.common import add_config_arguments, resolve_config, run_reporting_errors, setup_logging
from imagegen.config import RunConfig
from imagegen.utils.cli_parser import CliParser


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="python -m imagegen.train",
        description="Train one stage (diffusion or GAN) on CPU, one GPU, or many under `accelerate launch`.",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        default=None,
        metavar="latest|RUN_DIR|CHECKPOINT",
        help="continue exactly from a checkpoint: 'latest' = newest checkpoint of this config's runs",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = resolve_config(args, parser)
    setup_logging()
    from imagegen.training.trainer import TrainingStopped

    try:
        return run_reporting_errors(lambda: _train(cfg, args.resume))
    except TrainingStopped as stop:
        print(f"error: {stop}", file=sys.stderr)
        return 1


def _train(cfg: RunConfig, resume: str | None) -> int:
    from imagegen.training.trainer import train

    train(cfg, resume=resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())

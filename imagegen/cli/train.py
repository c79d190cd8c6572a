"""`python -m imagegen.train --config configs/NAME.yaml [--set key=value ...] [--resume latest]`."""

from __future__ import annotations

import argparse
import sys

from imagegen.cli.common import add_config_arguments, resolve_config, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    from imagegen.training.trainer import TrainingStopped, train

    try:
        train(cfg, resume=args.resume)
    except TrainingStopped as stop:
        print(f"error: {stop}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m imagegen.bundle export CHECKPOINT`: write the bundled default model (package data).

    python -m imagegen.bundle export runs/x2-b32/checkpoints/checkpoint-008660
    python -m imagegen.bundle export RUN --out /tmp/bundle --set sample.num_steps=50

Reads the checkpoint's EMA U-Net, writes it as float16 safetensors with its config.json, the run's
config.yaml with the `sample` section of `--sample-from` (default configs/shapes-cpu.yaml, the
tuned settings) and `--set` overrides, and trainer.json with provenance and the SHA-256 of every
file (checked whenever the model loads), into `--out` (default imagegen/assets/default, which
pyproject.toml ships as package data). Then it samples a few prompts from the float16 bundle and
the float32 checkpoint with the same seed and prints how far apart they are (8-bit levels).
Layout and checks: imagegen/pipelines/bundle.py.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from imagegen.utils.cli_parser import CliParser

REPO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "shapes-cpu.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="python -m imagegen.bundle", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="export a diffusion run or checkpoint as the bundled model")
    export.add_argument(
        "checkpoint", help="run directory (its newest intact checkpoint) or checkpoint folder"
    )
    export.add_argument("--out", default=None, help="bundle folder (default: imagegen/assets/default)")
    export.add_argument(
        "--sample-from",
        default=str(REPO_CONFIG),
        help="config whose `sample` section the bundle ships (default: configs/shapes-cpu.yaml); "
        "'run' keeps the checkpoint's own",
    )
    export.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. sample.num_steps=50",
    )
    export.add_argument(
        "--no-check", action="store_true", help="skip sampling the float16 bundle against the float32 source"
    )
    return parser


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from imagegen.pipelines.bundle import CHECK_PROMPTS, MAX_BUNDLE_BYTES, export_bundle
    from imagegen.utils.runs import BUNDLED_MODEL_DIR

    out = Path(args.out) if args.out else BUNDLED_MODEL_DIR
    record = export_bundle(
        args.checkpoint,
        out,
        sample_from=None if args.sample_from == "run" else args.sample_from,
        overrides=args.overrides,
        check_prompts=() if args.no_check else CHECK_PROMPTS,
        command=shlex.join(["python", "-m", "imagegen.bundle", *argv]),
    )
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    about = record["bundle"]
    print(f"wrote {out}: {about['summary']}; {size / 2**20:.2f} MiB (limit {MAX_BUNDLE_BYTES >> 20} MiB)")
    print(f"sample: {about['sample']}")
    if about["fp32_agreement"]:
        agreement = about["fp32_agreement"]
        print(
            f"float16 vs float32 samples ({len(agreement['prompts'])} prompts, seed {agreement['seed']}): "
            f"max |diff| {agreement['max_abs_levels']} levels, mean {agreement['mean_abs_levels']} (of 255)"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from imagegen.cli.common import run_reporting_errors, setup_logging

    setup_logging()
    return run_reporting_errors(lambda: run(args, argv))


if __name__ == "__main__":
    sys.exit(main())

"""`python -m imagegen.cascade assemble | show | unclip`: build and inspect cascade and unCLIP folders.

    python -m imagegen.cascade assemble RUN1 RUN2 ... --out CASCADE [--overwrite]
    python -m imagegen.cascade show CASCADE
    python -m imagegen.cascade unclip --prior PRIOR_RUN --decoder DECODER_RUN --out UNCLIP [--clip CLIP]
        [--upsampler SR_RUN ...]

Generating is one command for runs and cascades alike: `python -m imagegen.generate PROMPT
--model CASCADE [--stop-after base32] [--lowres-image small.png] [--set sr64.num_steps=10]`.
Thin: parse, call `imagegen.cascade.assemble`, print. It lives here rather than in imagegen.cli
because the layers contract forbids imagegen.cascade importing imagegen.cli. No torch import.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from imagegen.utils.cli_parser import CliParser, one_line


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="python -m imagegen.cascade", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    assemble = commands.add_parser(
        "assemble", help="join trained runs (lowest resolution first) into a cascade"
    )
    assemble.add_argument("runs", nargs="+", help="run directories or checkpoint folders, in stage order")
    assemble.add_argument("--out", required=True, help="the cascade folder to write")
    assemble.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    unclip = commands.add_parser(
        "unclip", help="join a CLIP, a prior run and a decoder run into an unCLIP folder (docs/unclip.md)"
    )
    unclip.add_argument("--prior", required=True, help="the prior's run directory or checkpoint folder")
    unclip.add_argument("--decoder", required=True, help="the decoder's run directory or checkpoint folder")
    unclip.add_argument("--clip", default=None, help="the CLIP folder (default: the prior's unclip.clip)")
    unclip.add_argument(
        "--upsampler",
        action="append",
        default=[],
        metavar="SR_RUN",
        help="a super-resolution run (or a joint cascade run: its SR stages) to run after the decoder; "
        "repeat, lowest resolution first",
    )
    unclip.add_argument("--out", required=True, help="the unCLIP folder to write")
    unclip.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    moved = commands.add_parser("generate", help="moved: python -m imagegen.generate PROMPT --model CASCADE")
    moved.add_argument("rest", nargs=argparse.REMAINDER)
    show = commands.add_parser("show", help="print a cascade's manifest")
    show.add_argument("cascade")
    return parser


def run_show(args: argparse.Namespace) -> str:
    from imagegen.cascade.manifest import read_manifest

    manifest = read_manifest(args.cascade)
    lines = [f"text encoder: {manifest.text_encoder}"]
    for stage in manifest.stages:
        sample = stage.sample
        source = (
            f"from {stage.lowres_size} px, aug_level {sample.aug_level}" if stage.is_superres else "from text"
        )
        lines.append(
            f"{stage.name}: {stage.resolution} px {source}; {sample.sampler} x {sample.num_steps}, "
            f"guidance {sample.guidance_scale}, thresholding {sample.thresholding}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "assemble":
            from imagegen.cascade.assemble import assemble
            from imagegen.cascade.manifest import read_manifest

            out = assemble(args.runs, args.out, overwrite=args.overwrite)
            names = read_manifest(out).stage_names()
            message = f"wrote cascade {out}: {' -> '.join(names)}"
        elif args.command == "unclip":
            from imagegen.cascade.unclip import assemble_unclip, read_unclip, upsampler_entries

            out = assemble_unclip(
                args.prior,
                args.decoder,
                args.out,
                clip=args.clip,
                overwrite=args.overwrite,
                upsamplers=args.upsampler,
            )
            names = [entry.name for entry in upsampler_entries(read_unclip(out))]
            message = f"wrote unCLIP folder {out}: {' + '.join(['clip', 'prior', 'decoder', *names])}"
        elif args.command == "generate":
            raise ValueError(
                "generating moved to the one generate command for runs and cascades: python -m "
                "imagegen.generate PROMPT --model CASCADE [--stop-after S] [--lowres-image F] [--set S.K=V]"
            )
        else:
            message = run_show(args)
    except (ValueError, OSError) as error:  # FileNotFoundError, FileExistsError, PermissionError, ...
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m imagegen.cascade assemble | generate | show`: build, run and inspect cascade folders.

    python -m imagegen.cascade assemble RUN1 RUN2 ... --out CASCADE [--overwrite]
    python -m imagegen.cascade generate CASCADE "a red circle" --out out.png \\
        [--stop-after base32] [--lowres-image small.png] [--set sr64.num_steps=10] [--seed 0]
    python -m imagegen.cascade show CASCADE

Thin: parse, call `imagegen.cascade.assemble` / `CascadePipeline`, print. It lives here rather
than in imagegen.cli because the layers contract forbids imagegen.cascade importing imagegen.cli.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imagegen.cascade", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    assemble = commands.add_parser(
        "assemble", help="join trained runs (lowest resolution first) into a cascade"
    )
    assemble.add_argument("runs", nargs="+", help="run directories or checkpoint folders, in stage order")
    assemble.add_argument("--out", required=True, help="the cascade folder to write")
    assemble.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    generate = commands.add_parser("generate", help="run a cascade")
    generate.add_argument("cascade", help="cascade folder (holds manifest.json)")
    generate.add_argument("prompts", nargs="+")
    generate.add_argument("--out", default="out.png")
    generate.add_argument("--stop-after", default=None, help="a stage name: stop after it")
    generate.add_argument("--lowres-image", default=None, help="an image to super-resolve (square)")
    generate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        help="per-stage setting, repeatable: --set sr64.num_steps=10 --set sr64.guidance_scale=3",
    )
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--num-images", type=int, default=1)
    generate.add_argument("--device", default=None)
    show = commands.add_parser("show", help="print a cascade's manifest")
    show.add_argument("cascade")
    return parser


def parse_stage_overrides(items: list[str]) -> dict[str, dict]:
    """["sr64.num_steps=10", ...] -> {"sr64": {"num_steps": 10}} (values read as YAML)."""
    import yaml

    overrides: dict[str, dict] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        stage, dot, setting = key.partition(".")
        if not (sep and dot and stage and setting):
            raise ValueError(f"--set {item!r}: expected STAGE.KEY=VALUE, e.g. sr64.num_steps=10")
        overrides.setdefault(stage, {})[setting] = yaml.safe_load(raw)
    return overrides


def run_generate(args: argparse.Namespace) -> str:
    from PIL import Image

    from imagegen.cascade.cascade_pipeline import CascadePipeline
    from imagegen.utils.images import make_grid

    pipe = CascadePipeline(args.cascade, device=args.device)
    lowres = Image.open(args.lowres_image).convert("RGB") if args.lowres_image else None
    images = pipe(
        args.prompts,
        seed=args.seed,
        num_images_per_prompt=args.num_images,
        stage_overrides=parse_stage_overrides(args.overrides),
        stop_after=args.stop_after,
        lowres_image=lowres,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(images) == 1:
        images[0].save(out)
    else:
        make_grid(images, labels=[p for p in args.prompts for _ in range(args.num_images)]).save(out)
    return f"wrote {out} ({len(images)} image(s), {images[0].width} px)"


def run_show(args: argparse.Namespace) -> str:
    from imagegen.cascade.manifest import read_manifest

    manifest = read_manifest(args.cascade)
    lines = [f"text encoder: {manifest.text_encoder}"]
    for stage in manifest.stages:
        source = (
            f"from {stage.lowres_size} px, aug_level {stage.aug_level}" if stage.is_superres else "from text"
        )
        lines.append(
            f"{stage.name}: {stage.resolution} px {source}; {stage.sampler} x {stage.num_steps}, "
            f"guidance {stage.guidance_scale}, thresholding {stage.thresholding}"
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
        elif args.command == "generate":
            message = run_generate(args)
        else:
            message = run_show(args)
    except (ValueError, OSError) as error:  # FileNotFoundError, FileExistsError, PermissionError, ...
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())

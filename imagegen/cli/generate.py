"""`python -m imagegen.generate "a red circle" [more prompts] --model RUN_OR_CASCADE --out out.png`.

One command for every kind of model: a diffusion run, a GAN run, a checkpoint folder or a cascade
folder. One prompt and one image: the PNG itself. Several prompts or `--num-images` > 1: one
labelled grid (rows = prompts). With no `--model` (or `--model default`) the bundled model is
used (a Shapes base 32 px stage shipped with the package); `--model latest` is the newest run under
runs/. The model used is printed.

    python -m imagegen.generate "a red circle" --model runs/shapes-cascade --set sr64.num_steps=10
    python -m imagegen.generate "a red circle" --model runs/shapes-cascade --stop-after base32
    python -m imagegen.generate "a red circle" --model RUN_OR_CASCADE --lowres-image small.png
    python -m imagegen.generate "a red circle" --model UNCLIP --image-embed-source text
    python -m imagegen.generate --model UNCLIP --variations render.png --num-images 4
    python -m imagegen.generate --model UNCLIP --interpolate a.png b.png --interpolation-steps 6
    python -m imagegen.generate "a blue circle" --model UNCLIP --text-diff red.png "a red circle"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imagegen.utils.cli_parser import CliParser


def build_parser() -> argparse.ArgumentParser:
    summary = __doc__.split("\n")[0]
    parser = CliParser(prog="python -m imagegen.generate", description=summary, free_text="prompt")
    parser.add_argument(
        "prompts",
        nargs="*",
        help='one or more prompts ("" = unconditional; none with --variations/--interpolate)',
    )
    parser.add_argument(
        "--model",
        default=None,
        help="run directory, checkpoint or cascade folder; 'latest' = the newest run under runs/ "
        "(default: the bundled model, also called 'default')",
    )
    parser.add_argument("--out", default="out.png", help="output PNG (default: out.png)")
    parser.add_argument("--num-images", type=int, default=1, help="images per prompt")
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="classifier-free guidance (default: the run's sample.guidance_scale; a cascade: each "
        "stage's own; a GAN: not used)",
    )
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's config)")
    parser.add_argument("--sampler", default=None, help="ddpm | ddim | dpmpp_2m | dpmpp_2m_sde | unipc")
    parser.add_argument(
        "--thresholding", default=None, help="dynamic | static | none (default: the run's config)"
    )
    parser.add_argument(
        "--truncation", type=float, default=None, help="GAN only: noise truncation (4 = none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument(
        "--lowres-image",
        default=None,
        help="an image to super-resolve (square): a cascade starts at the stage that takes its size; "
        "a super-resolution run needs one",
    )
    parser.add_argument(
        "--stop-after", default=None, help="cascade or unCLIP folder: a stage name, stop after it"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        help="cascade only: per-stage setting, repeatable: --set sr64.num_steps=10 --set sr64.aug_level=0.1",
    )
    unclip = parser.add_argument_group("unCLIP folders only (docs/unclip.md)")
    unclip.add_argument(
        "--variations", default=None, metavar="IMAGE", help="draw --num-images variations of IMAGE"
    )
    unclip.add_argument(
        "--interpolate", nargs=2, default=None, metavar=("A", "B"), help="a strip from image A to B"
    )
    unclip.add_argument(
        "--text-diff",
        nargs=2,
        default=None,
        metavar=("IMAGE", "CAPTION"),
        help="a strip editing IMAGE (described by CAPTION) toward the prompt (unCLIP §3.3)",
    )
    unclip.add_argument(
        "--interpolation-steps", type=int, default=5, help="images in the --interpolate / --text-diff strip"
    )
    unclip.add_argument("--prior-guidance-scale", type=float, default=None, help="the prior's guidance scale")
    unclip.add_argument(
        "--image-embed-source", default=None, help="what the decoder is given: prior (default) | text | none"
    )
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from imagegen.cli.common import run_reporting_errors, setup_logging

    setup_logging()

    return run_reporting_errors(lambda: _run(args))


def _options(args: argparse.Namespace) -> dict:
    """The call's keyword arguments: only what was given (each kind of model has its own defaults)."""
    from imagegen.cascade.manifest import is_cascade_folder

    given = {
        "guidance_scale": args.guidance_scale,
        "num_steps": args.steps,
        "sampler": args.sampler,
        "thresholding": args.thresholding,
        "negative_prompt": args.negative_prompt,
        "truncation": args.truncation,
        "stop_after": args.stop_after,
        "stage_overrides": parse_stage_overrides(args.overrides) if args.overrides else None,
    }
    from imagegen.cascade.unclip import is_unclip_folder

    if args.overrides and not is_cascade_folder(args.model):
        raise ValueError("--set: only a cascade folder (with manifest.json) takes it")
    if args.stop_after and not (is_cascade_folder(args.model) or is_unclip_folder(args.model)):
        raise ValueError(
            "--stop-after: only a cascade folder (manifest.json) or an unCLIP folder (unclip.json) takes it"
        )
    unclip_flags = {
        "--variations": args.variations,
        "--interpolate": args.interpolate,
        "--text-diff": args.text_diff,
        "--prior-guidance-scale": args.prior_guidance_scale,
        "--image-embed-source": args.image_embed_source,
    }
    given_unclip = [flag for flag, value in unclip_flags.items() if value is not None]
    if given_unclip:
        if not is_unclip_folder(args.model):
            raise ValueError(
                f"{' / '.join(given_unclip)}: only an unCLIP folder (with unclip.json) takes these"
            )
    picked = [flag for flag in ("--variations", "--interpolate", "--text-diff") if unclip_flags[flag]]
    if len(picked) > 1:
        raise ValueError(f"{' / '.join(picked)}: give one of them")
    if args.lowres_image and is_unclip_folder(args.model):
        raise ValueError("--lowres-image: an unCLIP folder starts from text or images (--variations)")
    if picked:
        ignored = {
            "--negative-prompt": args.negative_prompt,
            "--thresholding": args.thresholding,
            "--truncation": args.truncation,
            "--prior-guidance-scale": args.prior_guidance_scale,
            "--image-embed-source": args.image_embed_source,
            "--num-images": None if args.variations or args.num_images == 1 else args.num_images,
        }
        dropped = [flag for flag, value in ignored.items() if value is not None]
        if dropped:
            raise ValueError(f"{' / '.join(dropped)}: not used with {picked[0]}; drop it")
    if args.text_diff and len(args.prompts) != 1:
        raise ValueError("--text-diff: give one prompt, the caption to edit the image toward")
    if not args.prompts and not (args.variations or args.interpolate):
        raise ValueError("prompts: give at least one prompt (or --variations IMAGE / --interpolate A B)")
    given["prior_guidance_scale"] = args.prior_guidance_scale
    given["image_embed_source"] = args.image_embed_source
    if args.lowres_image:
        from PIL import Image

        given["lowres_image"] = Image.open(args.lowres_image).convert("RGB")
    return {key: value for key, value in given.items() if value is not None}


def _run(args: argparse.Namespace) -> int:
    from imagegen.pipelines import GANPipeline, load_pipeline
    from imagegen.pipelines.loading import ignore_truncation
    from imagegen.utils.images import make_grid

    options = _options(args)  # checked before any weights load
    pipe = load_pipeline(args.model, device=args.device)
    print(f"model: {pipe.checkpoint}", flush=True)
    if args.variations or args.interpolate or args.text_diff:
        return _run_images(args, pipe, options)
    if "truncation" in options and not isinstance(pipe, GANPipeline):
        ignore_truncation(options.pop("truncation"), str(pipe.checkpoint))  # as generate() does
    images = pipe(args.prompts, seed=args.seed, num_images_per_prompt=args.num_images, **options)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(images) == 1:
        images[0].save(out)
    else:
        labels = [p for p in args.prompts for _ in range(args.num_images)]
        make_grid(images, labels=labels, columns=args.num_images if len(args.prompts) > 1 else None).save(out)
    print(f"wrote {out} ({len(images)} image{'s' if len(images) > 1 else ''})")
    return 0


def _run_images(args: argparse.Namespace, pipe, options: dict) -> int:
    """unCLIP variations of one image, an interpolation strip between two, or a text-diff strip,
    as one grid."""
    from PIL import Image

    from imagegen.utils.images import make_grid

    keys = ("guidance_scale", "num_steps", "sampler", "stop_after")
    sampling = {k: options[k] for k in keys if k in options}
    prompt = args.prompts[0] if args.prompts else ""
    if args.variations:
        source = Image.open(args.variations)
        images = pipe.variations(
            source, num_images_per_image=args.num_images, seed=args.seed, prompt=prompt, **sampling
        )
        labels = [f"variation {i + 1}" for i in range(len(images))]
    elif args.text_diff:
        path, caption = args.text_diff
        images = pipe.text_diff(
            Image.open(path),
            prompt,
            base_prompt=caption,
            steps=args.interpolation_steps,
            seed=args.seed,
            **sampling,
        )
        labels = [f"{i}/{len(images) - 1}" for i in range(len(images))]
    else:
        a, b = (Image.open(path) for path in args.interpolate)
        images = pipe.interpolate(
            a, b, steps=args.interpolation_steps, seed=args.seed, prompt=prompt, **sampling
        )
        labels = [f"{i}/{len(images) - 1}" for i in range(len(images))]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    make_grid(images, labels=labels).save(out)
    print(f"wrote {out} ({len(images)} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

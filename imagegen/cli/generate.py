"""`python -m imagegen.generate "a red circle" [more prompts] --model RUN --out out.png`.

One prompt and one image: the PNG itself. Several prompts or `--num-images` > 1: one labelled
grid (rows = prompts). With no `--model`, the newest run under runs/ is used, and named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imagegen.generate", description=__doc__.split("\n")[0])
    parser.add_argument("prompts", nargs="+", help='one or more prompts ("" = unconditional)')
    parser.add_argument("--model", default=None, help="run directory or checkpoint (default: newest run)")
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
    parser.add_argument("--sampler", default=None, help="ddpm | ddim | dpmpp_2m | unipc")
    parser.add_argument(
        "--truncation", type=float, default=None, help="GAN only: noise truncation (4 = none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from imagegen.cli.common import run_reporting_errors, setup_logging

    setup_logging()

    return run_reporting_errors(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    import inspect

    from imagegen.cascade.pipeline import ignore_truncation, load_pipeline
    from imagegen.utils.images import make_grid

    pipe = load_pipeline(args.model, device=args.device)
    print(f"model: {pipe.checkpoint}", flush=True)
    given = {
        "guidance_scale": args.guidance_scale,
        "num_steps": args.steps,
        "sampler": args.sampler,
        "negative_prompt": args.negative_prompt,
        "truncation": args.truncation,
    }  # only what was given: each kind of model has its own defaults
    options = {key: value for key, value in given.items() if value is not None}
    if "truncation" in options and "truncation" not in inspect.signature(pipe).parameters:
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


if __name__ == "__main__":
    sys.exit(main())

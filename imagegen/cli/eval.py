"""`python -m imagegen.eval --model RUN --suite all --out DIR`: GenEval-style pass rates on Shapes prompts.

Writes DIR/metrics.json (per-category pass rate with its Wilson 95 % interval, overall = mean over
categories, sample counts, sampling settings, model identity), DIR/metrics.md (the table),
DIR/samples.jsonl (one line per image: file, prompt, category, passed, reason), DIR/grids/<category>.png
and DIR/images/. With `--images DIR` instead of `--model`, existing images are scored: name them
`<prompt index>_<sample>.png` (e.g. 00012_3.png; index = 0-based non-blank line of the prompt file;
one subfolder per prompt file when there are several). See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imagegen.utils.cli_parser import CliParser


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="python -m imagegen.eval", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        help="run directory, checkpoint or cascade folder (load_pipeline); 'default' = the bundled "
        "model, 'latest' = the newest run under runs/",
    )
    source.add_argument("--images", help="score existing images instead (named <prompt index>_<sample>.png)")
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompts", action="append", help="JSONL prompt file, repeatable")
    prompts.add_argument("--suite", action="append", help="generate this suite on the fly, repeatable; 'all'")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--per-suite", type=int, default=100, help="prompts per generated suite")
    parser.add_argument("--prompt-seed", type=int, default=0, help="seed of generated suites (default 0)")
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="COLOR:SHAPE", help="held-out pair, repeatable"
    )
    parser.add_argument(
        "--categories", choices=("suite", "kind"), default="suite", help="group by prompt file / spec kind"
    )
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--guidance-scale", type=float, default=None, help="default: the pipeline's")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's config)")
    parser.add_argument("--sampler", default=None, help="ddpm | ddim | dpmpp_2m | unipc")
    parser.add_argument("--thresholding", default=None, help="dynamic | static | none (diffusion)")
    parser.add_argument("--truncation", type=float, default=None, help="GAN truncation (|z_i| <= t)")
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64, help="images per pipeline call")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--fd", action="store_true", help="also FD-shapes against renders of the same specs")
    parser.add_argument("--feature-nets", default="runs/feature-nets", help="where feature nets are cached")
    parser.add_argument("--no-images", action="store_true", help="do not write the individual images")
    return parser


def _records(args, out: Path):
    from imagegen.evaluation.runner import load_records, suite_files

    if args.suite:
        exclude = []
        for item in args.exclude:
            if item.count(":") != 1:
                raise ValueError(f"--exclude: expected COLOR:SHAPE, got {item!r}")
            exclude.append(tuple(item.split(":")))
        paths = suite_files(out / "prompts", args.suite, args.prompt_seed, args.per_suite, exclude)
    else:
        paths = [Path(p) for p in args.prompts]
    return load_records(paths, args.categories)


def _fd(args, records):
    """An fd(evaluation) callable: FD-shapes of the generated images against renders of their specs."""
    from imagegen.evaluation.fd import FrechetScorer, inception_status, render_references
    from imagegen.evaluation.feature_net import get_feature_net

    print(inception_status()[1], flush=True)
    specs = [r.spec for r in records]
    if any(spec is None for spec in specs):
        raise ValueError("--fd needs a spec on every prompt line (FD-shapes renders the specs)")
    net = get_feature_net("shapes", args.feature_nets)

    def fd(evaluation):
        side = evaluation.images[0][0].width
        reference = render_references(specs, args.images_per_prompt, side, seed=args.seed + 1)
        return FrechetScorer(net, reference)(evaluation.flat_images())

    return fd


def run(args) -> int:
    from imagegen.evaluation.runner import (
        SamplingSettings,
        describe_pipeline,
        evaluate_folder,
        evaluate_pipeline,
        write_outputs,
    )

    out = Path(args.out)
    records = _records(args, out)
    if args.images:
        if args.fd:
            raise ValueError("--fd: only with --model (the renders must match the generated prompts)")
        evaluation = evaluate_folder(args.images, records)
    else:
        from imagegen.pipelines import load_pipeline

        pipe = load_pipeline(args.model, device=args.device)
        print(f"model: {getattr(pipe, 'checkpoint', args.model)}", flush=True)
        settings = SamplingSettings(
            guidance_scale=args.guidance_scale,
            num_steps=args.steps,
            sampler=args.sampler,
            thresholding=args.thresholding,
            truncation=args.truncation,
            negative_prompt=args.negative_prompt,
        )
        model = {"path": str(args.model), **describe_pipeline(pipe)}
        evaluation = evaluate_pipeline(
            pipe,
            records,
            args.images_per_prompt,
            settings,
            args.seed,
            args.batch_size,
            model=model,
            fd=_fd(args, records) if args.fd else None,
        )
    written = write_outputs(evaluation, out, save_images=not args.no_images and not args.images)
    print(written["table"].read_text(), end="")
    grids = len(evaluation.metrics["grids"])
    print(f"wrote {written['metrics']}, {written['table']} and {grids} grids in {out / 'grids'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.images_per_prompt < 1 or args.batch_size < 1 or args.per_suite < 1:
        parser.error("--images-per-prompt, --batch-size and --per-suite must be positive")
    from imagegen.cli.common import run_reporting_errors, setup_logging

    setup_logging()
    return run_reporting_errors(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

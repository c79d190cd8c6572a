"""`make demo`: train configs/shapes-cpu.yaml (~10 minutes on 2 CPU cores), then draw and score.

After training it samples every single-object prompt of the Shapes grammar ("a red circle", ...:
8 colors x 6 shapes, 2 seeds each) with the run's EMA weights, scores each image with the Shapes
scorer (right color, right shape of the dominant object), writes a labelled grid and prints its
path and a one-line quality summary. Extra arguments are config overrides:

    python -m imagegen.cli.demo --set train.max_minutes=2
    python -m imagegen.cli.demo --model runs/RUN      # no training: score an existing run (GAN too)
    python -m imagegen.cli.demo --model default       # the bundled model (grid under runs/demo-default/)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from imagegen.utils.cli_parser import CliParser

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "shapes-cpu.yaml"
SHOWCASE = [
    "a red circle above a blue square",
    "a green star to the left of a yellow triangle",
    "three pink circles",
    "two cyan diamonds",
]


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m imagegen.cli.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--model", default=None, help="skip training: draw and score this run (diffusion or GAN) instead"
    )
    args = parser.parse_args(argv)
    if args.model is not None and args.overrides:
        parser.error("--set applies to training; with --model nothing is trained")
    from imagegen.cli.common import setup_logging
    from imagegen.config import load_config

    setup_logging()
    from imagegen.pipelines import load_pipeline
    from imagegen.training.trainer import train
    from imagegen.utils.images import make_grid
    from imagegen.utils.runs import DEFAULT_RUNS_DIR, is_checkpoint

    if args.model is None:
        cfg = load_config(DEMO_CONFIG, args.overrides)
        summary = train(cfg)
        run_dir, steps, minutes = summary.run_dir, summary.step, summary.minutes
    else:
        summary = None
    try:
        pipe = load_pipeline(run_dir if summary else args.model)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary is None:
        cfg, run_dir = pipe.cfg, pipe.checkpoint.parent.parent
        if not is_checkpoint(pipe.checkpoint):  # the bundled model: never write into the package
            run_dir = DEFAULT_RUNS_DIR / f"demo-{pipe.checkpoint.name}"
            run_dir.mkdir(parents=True, exist_ok=True)
        steps, minutes = json.loads((pipe.checkpoint / "trainer.json").read_text())["step"], None
    from imagegen.evaluation.single_objects import describe, evaluate_single_objects

    result = evaluate_single_objects(pipe)
    showcase = pipe(SHOWCASE, seed=0)
    grid_path = run_dir / "demo-grid.png"
    make_grid(result.pop("images") + showcase, labels=result.pop("labels") + SHOWCASE, columns=12).save(
        grid_path
    )
    result.update(
        run=str(run_dir),
        steps=steps,
        minutes=None if minutes is None else round(minutes, 2),
        grid=str(grid_path),
        objective=cfg.train.objective,
    )
    if cfg.train.objective != "gan":
        sample = cfg.sample
        result.update(
            guidance_scale=sample.guidance_scale,
            thresholding=sample.thresholding,
            sampler=sample.sampler,
            num_steps=sample.num_steps,
        )
    (run_dir / "demo.json").write_text(json.dumps(result, indent=2))
    print(f"grid: {grid_path}")
    print(
        f"quality: single-object prompts, {result['samples']} samples: {describe(result)} "
        "(goals: color 95%, shape 70%, one object 90%, each background 20%), scored by the Shapes "
        f"scorer; {steps} steps" + (f" in {minutes:.1f} min" if summary else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

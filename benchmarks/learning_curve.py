"""Learning curves: train a config for N minutes, score checkpoints along the way, plot each figure.

Trains with a constant checkpoint interval and keeps every checkpoint, then (after training, so
scoring costs no training time) scores each one: the single-object probe (right colour, right
shape, one object, background shares over 48 prompts x 2 seeds; imagegen/evaluation/single_objects.py),
optionally the six prompt suites' pass rates and FD-shapes. Minutes come from the run's
metrics.jsonl (images seen / images per second), so they count training time only.

    .venv/bin/python benchmarks/learning_curve.py train --config configs/shapes-cpu.yaml \
        --minutes 60 --every 250 --name curve-old --set train.lr_schedule=constant
    .venv/bin/python benchmarks/learning_curve.py score runs/curve-old --suites 8   # existing run
    .venv/bin/python benchmarks/learning_curve.py plot runs/curve-old/curve.json runs/curve-new/curve.json \
        --out docs/img/learning-curves.png

Writes RUN/curve.json (one entry per checkpoint) and, with `plot`, a PNG of every figure against
training minutes and a markdown table on stdout. A GAN run is scored the same way (its pipeline
takes no guidance or thresholding: they are then ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

FIGURES = ("color_accuracy", "shape_accuracy", "one_object", "suite_pass_rate", "fd")


def minutes_by_step(run: Path) -> dict[int, float]:
    """{logged step: training minutes so far} from RUN/metrics.jsonl (images / images_per_second)."""
    cfg = json.loads(json.dumps(_read_yaml(run / "config.yaml")))
    per_step = cfg["train"]["batch_size"] * cfg["train"].get("grad_accum_steps", 1)
    minutes = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry.get("images_per_second"):
            minutes[int(entry["step"])] = entry["step"] * per_step / entry["images_per_second"] / 60
    return minutes


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def checkpoint_minutes(step: int, table: dict[int, float]) -> float | None:
    """Minutes at `step`: the logged step at or just before it, scaled linearly to it."""
    before = [s for s in table if s <= step]
    if not before:
        return None
    nearest = max(before)
    return table[nearest] * step / nearest if nearest else 0.0


def swap_weights(pipe, checkpoint: Path, weights: str) -> None:
    """Point a loaded diffusion pipeline at another checkpoint's U-Net ('ema' or 'raw' weights)."""
    from safetensors.torch import load_file

    if weights == "ema":
        state = load_file(str(checkpoint / "ema" / "model" / "diffusion_pytorch_model.safetensors"))
    else:
        state = load_file(str(checkpoint / "state" / "model.safetensors"))
    pipe.model.load_state_dict(state)
    pipe.checkpoint = checkpoint


def score_run(run: Path, args) -> list[dict[str, Any]]:
    """Score every checkpoint of `run`; returns (and writes to RUN/curve.json) one entry each."""
    import torch

    from imagegen.evaluation.single_objects import describe, evaluate_single_objects
    from imagegen.pipelines import load_pipeline
    from imagegen.utils.runs import list_checkpoints

    torch.set_num_threads(args.threads) if args.threads else None
    checkpoints = list_checkpoints(run)
    if not checkpoints:
        raise SystemExit(f"error: {run} holds no checkpoint")
    table = minutes_by_step(run)
    pipe = load_pipeline(checkpoints[-1], device="cpu")
    is_gan = pipe.cfg.train.objective == "gan"
    sampling = (
        {}
        if is_gan
        else {
            "guidance_scale": args.guidance,  # None: the run's sample config
            "thresholding": args.thresholding,
            "sampler": args.sampler,
            "num_steps": args.steps,
        }
    )
    suites = _suite_scorer(args) if args.suites else None
    entries = []
    for checkpoint in checkpoints[:: args.stride] if args.stride > 1 else checkpoints:
        step = json.loads((checkpoint / "trainer.json").read_text())["step"]
        if is_gan:
            pipe = load_pipeline(checkpoint, device="cpu")
        else:
            swap_weights(pipe, checkpoint, args.weights)
        result = evaluate_single_objects(pipe, **sampling)
        result.pop("images"), result.pop("labels")
        entry = {"step": step, "minutes": checkpoint_minutes(step, table), **result}
        if suites is not None:
            entry.update(suites(pipe, is_gan))
        entries.append(entry)
        suite_text = f", suites {entry['suite_pass_rate']:.3f}, FD {entry['fd']:.0f}" if suites else ""
        print(f"step {step:6d} ({entry['minutes'] or 0:.1f} min): {describe(result)}{suite_text}", flush=True)
    settings = {"weights": args.weights, **sampling}
    out = run / (args.out_name or "curve.json")
    out.write_text(json.dumps({"run": str(run), "settings": settings, "points": entries}, indent=2))
    print(f"wrote {out}")
    return entries


def _suite_scorer(args):
    """A function pipe -> {suite_pass_rate, categories, fd} over `args.suites` prompts per suite."""
    from compare_gan_diffusion import Domain, evaluate_point

    from imagegen.evaluation.feature_net import load_feature_net
    from imagegen.evaluation.runner import SamplingSettings

    args.domain, args.out = "shapes", str(REPO / "runs" / "learning-curve")
    domain = Domain(args, load_feature_net())
    records = domain.records(args.suites)

    def score(pipe, is_gan: bool) -> dict[str, Any]:
        diffusion = {"guidance_scale": args.guidance, "thresholding": args.thresholding}
        diffusion.update(sampler=args.sampler, num_steps=args.steps)
        settings = SamplingSettings() if is_gan else SamplingSettings(**diffusion)
        point = evaluate_point(pipe, domain, records, 1, settings, 64)
        return {"suite_pass_rate": point["pass_rate"], "categories": point["categories"], "fd": point["fd"]}

    return score


def train_run(args) -> Path:
    """Train args.config for args.minutes with a checkpoint every args.every steps, all kept."""
    from imagegen.cli.common import setup_logging
    from imagegen.config import load_config
    from imagegen.training.trainer import train

    setup_logging()
    overrides = [
        *args.set,
        f"train.max_minutes={args.minutes}",
        f"train.checkpoint_every={args.every}",
        "train.keep_last=0",
        "train.sample_every=0",
    ]
    if args.name:
        overrides.append(f"train.run_name={args.name}")
    cfg = load_config(args.config, overrides)
    if cfg.train.max_steps < 10**6 and not args.keep_max_steps:
        cfg.train.max_steps = 10**7  # the time limit binds (an LR schedule over max_steps: --keep-max-steps)
    return train(cfg).run_dir


def _label(path: Path) -> str:
    """The run's name, plus the curve file's name when it is not curve.json (another scoring)."""
    name = Path(json.loads(path.read_text())["run"]).name
    return name if path.name == "curve.json" else f"{name} ({path.stem.removeprefix('curve-')})"


def plot(paths: list[Path], out: Path) -> None:
    """One panel per figure present, every curve against training minutes; a table on stdout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {_label(p): json.loads(p.read_text())["points"] for p in paths}
    present = [f for f in FIGURES if any(f in point for pts in curves.values() for point in pts)]
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.5), squeeze=False)
    for ax, figure in zip(axes[0], present):
        for name, points in curves.items():
            xs = [p["minutes"] for p in points if figure in p and p["minutes"] is not None]
            ys = [p[figure] for p in points if figure in p and p["minutes"] is not None]
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
        ax.set_xlabel("training minutes")
        ax.set_title(figure.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    for name, points in curves.items():
        print(f"\n{name}\n| minutes | step | " + " | ".join(present) + " |")
        print("| ---: | ---: |" + " ---: |" * len(present))
        for p in points:
            cells = [f"{p[f]:.3g}" if isinstance(p.get(f), (int, float)) else "-" for f in present]
            print(f"| {p['minutes'] or 0:.1f} | {p['step']} | " + " | ".join(cells) + " |")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/learning_curve.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "score"):
        p = sub.add_parser(name)
        if name == "train":
            p.add_argument("--config", type=Path, required=True)
            p.add_argument("--minutes", type=float, required=True, help="training minutes (time limit)")
            p.add_argument("--every", type=int, required=True, help="checkpoint every N steps")
            p.add_argument("--name", default="", help="run name (train.run_name)")
            p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
            p.add_argument("--keep-max-steps", action="store_true", help="keep the config's max_steps")
        else:
            p.add_argument("run", type=Path)
        p.add_argument("--weights", choices=["ema", "raw"], default="ema", help="which weights to sample")
        p.add_argument("--guidance", type=float, default=None, help="default: the run's sample config")
        p.add_argument("--thresholding", choices=["dynamic", "static", "none"], default=None)
        p.add_argument("--sampler", default=None, help="default: the run's sample config")
        p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's)")
        p.add_argument("--suites", type=int, default=0, help="prompts per suite for pass rates + FD (0: off)")
        p.add_argument("--stride", type=int, default=1, help="score every k-th checkpoint")
        p.add_argument("--threads", type=int, default=0)
        p.add_argument("--out-name", default="", help="file name of the curve JSON inside the run")
    p = sub.add_parser("plot")
    p.add_argument("curves", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "plot":
        plot(args.curves, args.out)
        return 0
    run = train_run(args) if args.command == "train" else args.run
    score_run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Noise conditioning augmentation ablation: one 32 -> 64 px Shapes SR stage, trained with and without.

Imagen (Saharia et al. 2022, §2.5) and Cascaded Diffusion Models (Ho et al. 2022, §4.2) find that
corrupting the low-res input during training (and telling the model the level) is critical when
the input is a *base-model sample* rather than a clean downsampled image: the stage then repairs
the base model's artefacts instead of copying them. This script tests that finding on Shapes:

1. base stage: `--base RUN` (a trained configs/shapes-cpu.yaml run), or trains one for
   `--base-minutes`;
2. two SR stages from configs/shapes-sr64-cpu.yaml, identical (same seed, data, budget
   `--minutes-per-model`) except `noise_aug.enabled`; the stage without augmentation samples at
   level 0 (it never saw noise), the other at its config's level (0.2), and `--sweep` levels;
3. on base samples: the 48 single-object prompts x `--seeds`, base 32 px output -> each SR stage
   -> 64 px; Shapes scorer pass rate (`imagegen.evaluation.score`), right colour / right shape
   (`single_object_accuracy`), and consistency (mean |area-downsample(SR) - base input|);
4. on true low-res renders: `--scenes` held-out scenes (data seed 10000) rendered at 32 px -> SR
   -> compared with the true 64 px render of the same scene (mean |error| in 8-bit levels, PSNR;
   bilinear upsampling as the trivial reference) and scored against the scene's spec.

It prints a table and a verdict (does augmentation win on base samples by more than two
standard errors?) and writes everything as JSON. CPU, about 2 x `--minutes-per-model` of
training plus ~10 minutes of sampling at the defaults:

    .venv/bin/python benchmarks/noise_aug_ablation.py --base runs/shapes-cpu-<time> \\
        --minutes-per-model 10 --out runs/noise-aug-ablation
    .venv/bin/python benchmarks/noise_aug_ablation.py --base-minutes 0.5 --minutes-per-model 0.5 \\
        --seeds 0 --max-prompts 8 --scenes 8 --sample-steps 5 --out /tmp/ablation-smoke   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imagegen.cascade.assemble import assemble
from imagegen.config import load_config
from imagegen.data.shapes import ShapesDataset, render_scene
from imagegen.evaluation import score, single_object_accuracy
from imagegen.pipelines.cascade import CascadePipeline
from imagegen.utils.images import from_uint8, to_uint8
from imagegen.utils.runs import latest_checkpoint

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / "configs" / "shapes-cpu.yaml"
SR_CONFIG = REPO / "configs" / "shapes-sr64-cpu.yaml"
HELDOUT_SEED = 10_000  # scenes never drawn in training (the configs train on data.seed 0)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def train_once(config: Path, run_dir: Path, minutes: float, overrides: list[str]) -> dict:
    """Train `config` into `run_dir` for `minutes` unless a checkpoint is already there."""
    from imagegen.training.trainer import train

    if latest_checkpoint(run_dir) is None:
        sets = [
            f"train.output_dir={run_dir.parent}",
            f"train.run_name={run_dir.name}",
            f"train.max_minutes={minutes}",
            *overrides,
        ]
        train(load_config(config, sets))
    state = json.loads((latest_checkpoint(run_dir) / "trainer.json").read_text())
    return {"run": str(run_dir), "steps": state["step"]}


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------


def single_object_prompts() -> list[tuple[str, dict]]:
    from imagegen.evaluation.single_objects import single_object_prompts as prompts

    return prompts()


def scorer_rates(images: torch.Tensor, specs: list[dict]) -> dict:
    pixels = to_uint8(images)
    passed = [score(image, spec).passed for image, spec in zip(pixels, specs)]
    singles = [
        single_object_accuracy(image, spec) for image, spec in zip(pixels, specs) if spec["kind"] == "single"
    ]
    rates = {"n": len(passed), "pass_rate": float(np.mean(passed))}
    if singles:
        rates["right_color"] = float(np.mean([c for c, _ in singles]))
        rates["right_shape"] = float(np.mean([s for _, s in singles]))
    return rates


def pixel_error(images: torch.Tensor, truth: torch.Tensor) -> dict:
    """Mean |error| in 8-bit levels and PSNR (dB) of [B, 3, H, W] images in [-1, 1] against the truth."""
    diff = (to_uint8(images).astype(np.float64) - to_uint8(truth).astype(np.float64)) / 255.0
    mse = float(np.mean(diff**2))
    return {
        "mean_abs_levels": float(np.mean(np.abs(diff)) * 255),
        "psnr_db": 10 * math.log10(1 / max(mse, 1e-12)),
    }


def consistency(images: torch.Tensor, lowres: torch.Tensor) -> float:
    """Mean |area-downsample(SR output) - its low-res input| in 8-bit levels: colour drift of the stage."""
    down = F.interpolate(images.float(), size=lowres.shape[-2:], mode="area")
    return float((down - lowres.float()).abs().mean() * 127.5)


# ------------------------------------------------------------------------------------------------
# Sampling in batches
# ------------------------------------------------------------------------------------------------


def run_batched(pipe: CascadePipeline, prompts: list[str], batch: int, **kwargs) -> torch.Tensor:
    """pipe(prompts, output_type="pt", **kwargs) in chunks; `lowres_image` is chunked alongside."""
    lowres = kwargs.pop("lowres_image", None)
    out = []
    for start in range(0, len(prompts), batch):
        chunk = {"lowres_image": lowres[start : start + batch]} if lowres is not None else {}
        out.append(pipe(prompts[start : start + batch], output_type="pt", **kwargs, **chunk))
    return torch.cat(out)


def evaluate_on_base_samples(pipes: dict, args, overrides: dict) -> dict:
    """Base 32 px samples of the single-object prompts, super-resolved by every SR variant.

    `overrides`: call-wide pipeline arguments (e.g. num_steps) for every stage."""
    prompts = single_object_prompts()[: args.max_prompts]
    texts = [p for p, _ in prompts for _ in args.seeds]
    specs = [s for _, s in prompts for _ in args.seeds]
    base_pipe = pipes["aug"]
    base = torch.cat(
        [
            run_batched(
                base_pipe, [p for p, _ in prompts], args.batch, seed=seed, stop_after="base32", **overrides
            )
            for seed in args.seeds
        ]
    )  # seed-major [S * P, 3, 32, 32]
    order = [i * len(prompts) + j for j in range(len(prompts)) for i in range(len(args.seeds))]
    base = base[order]  # prompt-major, matching `texts`
    results = {"base32": scorer_rates(base, specs)}
    for name, level in variants(args):
        pipe, at_level = pipes[name.split("@")[0]], sr_settings(args, level)
        images = run_batched(
            pipe, texts, args.batch, seed=0, lowres_image=base, stage_overrides=at_level, **overrides
        )
        results[name] = {**scorer_rates(images, specs), "consistency_levels": consistency(images, base)}
    return results


def evaluate_on_renders(pipes: dict, args, overrides: dict) -> dict:
    """True 32 px renders of held-out scenes, super-resolved, against their true 64 px renders."""
    dataset = ShapesDataset(resolution=64, seed=HELDOUT_SEED, length=args.scenes)
    specs = [dataset.spec(i) for i in range(args.scenes)]
    captions = [dataset.caption(i) for i in range(args.scenes)]

    def rendered(size: int) -> torch.Tensor:
        return from_uint8(np.stack([render_scene(spec, size) for spec in specs]))  # [N, 3, size, size]

    low, truth = rendered(32), rendered(64)
    bilinear = F.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False)
    results = {"true64": scorer_rates(truth, specs), "bilinear": {**pixel_error(bilinear, truth)}}
    results["bilinear"].update(scorer_rates(bilinear, specs))
    for name, level in variants(args):
        pipe, at_level = pipes[name.split("@")[0]], sr_settings(args, level)
        images = run_batched(
            pipe, captions, args.batch, seed=0, lowres_image=low, stage_overrides=at_level, **overrides
        )
        results[name] = {**pixel_error(images, truth), **scorer_rates(images, specs)}
    return results


def sr_settings(args, level: float) -> dict:
    """stage_overrides of the SR stage: its sampling aug level, and `--thresholding` if given."""
    settings = {"aug_level": level}
    if args.thresholding:
        settings["thresholding"] = args.thresholding
    return {"sr64": settings}


def variants(args) -> list[tuple[str, float]]:
    """(name, sampling aug level): the no-augmentation stage at 0, the augmented one at each level."""
    return [("noaug@0", 0.0)] + [(f"aug@{level:g}", level) for level in args.sweep]


# ------------------------------------------------------------------------------------------------
# Verdict and report
# ------------------------------------------------------------------------------------------------


def verdict(base_samples: dict, default_level: float) -> str:
    """Does augmentation (at the config's level) beat no augmentation on base samples by > 2 SE?"""
    aug, noaug = base_samples[f"aug@{default_level:g}"], base_samples["noaug@0"]
    n = aug["n"]
    p1, p0 = aug["pass_rate"], noaug["pass_rate"]
    se = math.sqrt(max(p1 * (1 - p1) + p0 * (1 - p0), 1e-9) / n)  # unpaired binomial SE of the difference
    delta = p1 - p0
    head = f"pass rate on base samples: with augmentation {100 * p1:.1f}%, without {100 * p0:.1f}% (n={n}, "
    head += f"difference {100 * delta:+.1f} points, 2 SE = {200 * se:.1f})"
    if delta > 2 * se:
        return head + ": reproduces Imagen's finding (augmentation helps on base-model samples)"
    if delta < -2 * se:
        return head + ": contradicts Imagen's finding at this budget"
    return head + ": inconclusive at this budget (the difference is within two standard errors)"


def table(results: dict) -> str:
    lines = [
        "On base-model samples (single-object prompts):",
        "| variant | pass rate | right colour | right shape | consistency (levels) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in results["base_samples"].items():
        color, shape = 100 * row.get("right_color", math.nan), 100 * row.get("right_shape", math.nan)
        drift = row.get("consistency_levels", math.nan)
        lines.append(
            f"| {name} | {100 * row['pass_rate']:.1f}% | {color:.1f}% | {shape:.1f}% | {drift:.2f} |"
        )
    lines += [
        "",
        "On true 32 px renders of held-out scenes (all scene kinds):",
        "| variant | pass rate | mean abs error vs true 64 px (levels) | PSNR (dB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in results["renders"].items():
        error = f"{row['mean_abs_levels']:.2f} | {row['psnr_db']:.2f}" if "psnr_db" in row else "0 | inf"
        lines.append(f"| {name} | {100 * row['pass_rate']:.1f}% | {error} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, default=None, help="a trained base32 run (else one is trained)")
    parser.add_argument(
        "--base-minutes", type=float, default=10.0, help="training budget of the base, if trained"
    )
    parser.add_argument(
        "--minutes-per-model", type=float, default=10.0, help="training budget of each SR stage"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/noise-aug-ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="base samples per prompt")
    parser.add_argument("--max-prompts", type=int, default=48, help="single-object prompts used (48 = all)")
    parser.add_argument("--scenes", type=int, default=96, help="held-out true renders")
    parser.add_argument("--sweep", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3], help="aug levels")
    parser.add_argument("--sample-steps", type=int, default=None, help="sampler steps of every stage")
    parser.add_argument("--batch", type=int, default=48, help="images per sampling call")
    parser.add_argument(
        "--thresholding",
        choices=["dynamic", "static", "none"],
        default=None,
        help="x0 thresholding of the SR stage at sampling (default: the stage's config)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="SR config override")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.time()
    runs = args.out / "runs"
    base = args.base or runs / "base32"
    trained = {"base32": train_once(BASE_CONFIG, base, args.base_minutes, [])}
    aug_level = load_config(SR_CONFIG, args.overrides).sample.aug_level
    if aug_level not in args.sweep:
        args.sweep.append(aug_level)
    for name, enabled in (("aug", "true"), ("noaug", "false")):
        sets = [*args.overrides, f"noise_aug.enabled={enabled}"]
        trained[f"sr64-{name}"] = train_once(SR_CONFIG, runs / f"sr64-{name}", args.minutes_per_model, sets)
    pipes = {}
    for name in ("aug", "noaug"):
        folder = assemble([base, runs / f"sr64-{name}"], args.out / f"cascade-{name}", overwrite=True)
        pipes[name] = CascadePipeline(folder)
    overrides = {"num_steps": args.sample_steps} if args.sample_steps else {}
    results = {
        "trained": trained,
        "base_samples": evaluate_on_base_samples(pipes, args, overrides),
        "renders": evaluate_on_renders(pipes, args, overrides),
    }
    results["verdict"] = verdict(results["base_samples"], aug_level)
    base_rate = results["base_samples"]["base32"]["pass_rate"]
    sr_rate = results["base_samples"][f"aug@{aug_level:g}"]["pass_rate"]
    results["sr_minus_base_points"] = 100 * (sr_rate - base_rate)
    results["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results["minutes"] = (time.time() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "noise_aug_ablation.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    print(
        f"\nsr64 (aug {aug_level:g}) pass rate minus base32's: {results['sr_minus_base_points']:+.1f} points"
    )
    print(results["verdict"])
    print(f"wrote {args.out / 'noise_aug_ablation.json'} ({results['minutes']:.1f} min)")


if __name__ == "__main__":
    main()

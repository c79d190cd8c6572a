"""GAN vs diffusion on the same data, text encoder, resolution and wall-clock budget.

Trains configs/shapes-cpu.yaml (diffusion) and configs/shapes-gan-cpu.yaml (DF-GAN) for the same
number of minutes each, in `segments` equal slices (a checkpoint ends each slice; only the time
inside `train()` counts). Then, with the Shapes scorer and FD-shapes on the grammar's six prompt
suites, it measures: pass rate (and FD) against training time; per-category pass rates, FD,
parameters, training images/s, sampling ms/image at batch 1, images/s at the largest batch,
network evaluations per image (counted by forward hooks, so CFG's doubled batch counts 2); the
Imagen-style trade-off (pass rate against FD over a guidance sweep with and without dynamic
thresholding, and over a GAN truncation sweep); and diffusion quality and time over sampler
steps. Writes results.json, table.md, curve.png, tradeoff.png and steps.png to --out.

    .venv/bin/python benchmarks/compare_gan_diffusion.py                  # CPU profile, ~35-40 min
    .venv/bin/python benchmarks/compare_gan_diffusion.py --quick          # smoke test, ~3 min
    .venv/bin/python benchmarks/compare_gan_diffusion.py --domain emoji   # Noto emoji, 32 px, FD only

Profiles (`--profile`, explicit flags override): see PROFILES. Fairness: the GAN config gets the
diffusion config's `data` and `text` sections, so both see the same images, captions and encoder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import torch  # noqa: E402
from gan_diffusion_report import write_report  # noqa: E402

from imagegen.config import RunConfig, load_config  # noqa: E402
from imagegen.evaluation.fd import FrechetScorer, emoji_references, inception_status, render_references  # noqa: E402
from imagegen.evaluation.runner import (  # noqa: E402
    PromptRecord,
    SamplingSettings,
    evaluate_pipeline,
    load_records,
    suite_files,
)

log = logging.getLogger("bench")

PROFILES: dict[str, dict[str, Any]] = {
    # make bench-cpu: 2 x 10 min training, then about 12 min of evaluation on 2 quiet cores
    "cpu": dict(
        minutes=10.0,
        segments=4,
        curve_prompts=8,
        final_prompts=16,
        final_images=2,
        sweep_prompts=12,
        steps_prompts=8,
        guidance=[1, 1.5, 2, 3, 5, 7.5, 10],
        thresholding=["dynamic", "none"],
        truncation=[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0],
        steps=[10, 25, 50],
        samplers=["ddim", "dpmpp_2m", "unipc", "ddpm"],
        timing_reps=5,
        max_batch=64,
    ),
    # the full protocol (one GPU): longer training, 100 prompts per suite, every step count
    "gpu": dict(
        minutes=30.0,
        segments=6,
        curve_prompts=25,
        final_prompts=100,
        final_images=4,
        sweep_prompts=50,
        steps_prompts=25,
        guidance=[1, 1.5, 2, 3, 5, 7.5, 10],
        thresholding=["dynamic", "none"],
        truncation=[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0],
        steps=[10, 25, 50, 100, 1000],
        samplers=["ddim", "dpmpp_2m", "unipc", "ddpm"],
        timing_reps=20,
        max_batch=4096,
    ),
    # smoke test of every stage (numbers meaningless): about 3 minutes on CPU
    "quick": dict(
        minutes=0.5,
        segments=2,
        curve_prompts=2,
        final_prompts=2,
        final_images=1,
        sweep_prompts=2,
        steps_prompts=2,
        guidance=[1, 5],
        thresholding=["dynamic", "none"],
        truncation=[1.0, 4.0],
        steps=[10],
        samplers=["ddim", "dpmpp_2m"],
        timing_reps=2,
        max_batch=8,
    ),
}
TIMING_PROMPT = "a red circle above a blue square"
EVAL_SEED = 0  # every evaluation point samples from the same seeds (common random numbers)
REFERENCE_SEED = 271_828  # real renders for FD; the floor uses REFERENCE_SEED + 1


# ------------------------------------------------------------------------------------------------
# Configs and training
# ------------------------------------------------------------------------------------------------


def fair_configs(args) -> dict[str, RunConfig]:
    """Both configs, the GAN's data and text replaced by the diffusion config's (same images, encoder)."""
    overrides = list(args.set)
    if args.domain == "emoji":
        overrides += ["data.kind=folder", f"data.path={args.emoji_root}", "data.resolution=32"]
    if args.exclude_heldout:
        overrides.append(
            'data.exclude=[["red","star"],["blue","triangle"],["green","cross"],["yellow","diamond"]]'
        )
    diffusion = load_config(args.diffusion_config, overrides)
    gan = load_config(args.gan_config, overrides)
    gan.data, gan.text = diffusion.data, diffusion.text
    sizes = {diffusion.data.resolution, diffusion.model.image_size, gan.gan.image_size}
    if len(sizes) != 1:
        raise ValueError(f"resolution mismatch: data, U-Net and GAN image sizes are {sorted(sizes)}")
    return {name: cfg for name, cfg in (("diffusion", diffusion), ("gan", gan)) if name in args.models}


def train_for_budget(name: str, cfg: RunConfig, minutes: float, segments: int, out: Path) -> dict[str, Any]:
    """Train in `segments` slices of minutes/segments each (resuming exactly); one checkpoint per slice."""
    from imagegen.training.trainer import train

    cfg.train.run_name, cfg.train.output_dir = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", str(out / "runs")
    cfg.train.max_minutes, cfg.train.keep_last = minutes / segments, segments + 1
    cfg.train.checkpoint_every, cfg.train.sample_every = 0, 0  # both models pay only for training
    run_dir, seconds, points, summary = None, 0.0, [], None
    for _ in range(segments):
        summary = train(cfg, resume=str(run_dir) if run_dir else None)
        run_dir, seconds = summary.run_dir, seconds + 60 * summary.minutes
        points.append({"checkpoint": str(summary.checkpoint), "step": summary.step, "train_seconds": seconds})
        if summary.step >= cfg.train.max_steps:
            break
    images = summary.step * cfg.train.batch_size * cfg.train.grad_accum_steps
    return {
        "run_dir": str(run_dir),
        "checkpoints": points,
        "steps": summary.step,
        "train_seconds": seconds,
        "train_images_per_second": images / max(seconds, 1e-9),
        "stopped_by": "steps" if summary.step >= cfg.train.max_steps else "time",
    }


# ------------------------------------------------------------------------------------------------
# Prompts, references and one evaluation point
# ------------------------------------------------------------------------------------------------


class Domain:
    """Prompt records and FD references for one domain (shapes: six suites; emoji: captions)."""

    def __init__(self, args, net):
        self.name, self.args, self.net, self._scorers = args.domain, args, net, {}
        self.scored = self.name == "shapes"

    def records(self, per_suite: int) -> list[PromptRecord]:
        if self.scored:
            folder = Path(self.args.out) / "prompts" / f"per-suite-{per_suite}"
            return load_records(suite_files(folder, ["all"], seed=0, per_suite=per_suite))
        captions, _ = emoji_references(self.args.emoji_root, 6 * per_suite, seed=REFERENCE_SEED)
        return [PromptRecord(c, None, "emoji", "emoji", i) for i, c in enumerate(captions)]

    def scorer(self, records: list[PromptRecord], images_per_prompt: int) -> tuple[FrechetScorer, dict]:
        """The FD scorer against real images of these prompts, and its real-vs-real floor."""
        key = (len(records), images_per_prompt)
        if key not in self._scorers:
            reference, second = self._references(records, images_per_prompt)
            scorer = FrechetScorer(self.net, reference)
            self._scorers[key] = scorer, scorer(second) if second is not None else None
        return self._scorers[key]

    def _references(self, records, per_prompt):
        if self.scored:
            specs = [r.spec for r in records]
            return (
                render_references(specs, per_prompt, 32, REFERENCE_SEED),
                render_references(specs, per_prompt, 32, REFERENCE_SEED + 1),
            )
        _, images = emoji_references(self.args.emoji_root, len(records), seed=REFERENCE_SEED)
        return images, None  # every emoji has one image: no second real set


def evaluate_point(
    pipe, domain: Domain, records, images_per_prompt: int, settings: SamplingSettings, batch_size: int
) -> dict[str, Any]:
    """Generate, score (pass rate by category, mean over categories) and FD; a JSON-able summary."""
    scorer, floor = domain.scorer(records, images_per_prompt)
    evaluation = evaluate_pipeline(
        pipe,
        records,
        images_per_prompt,
        settings,
        EVAL_SEED,
        batch_size,
        model={},
        fd=lambda ev: scorer(ev.flat_images()),
    )
    metrics = evaluation.metrics
    overall = metrics["overall"] or {}
    return {
        "settings": settings.as_dict(),
        "pass_rate": overall.get("pass_rate"),
        "ci95": overall.get("ci95"),
        "categories": {k: v["pass_rate"] for k, v in metrics["categories"].items()},
        "fd": metrics["fd"]["fd"],
        "kd": metrics["fd"]["kd"],
        "fd_floor": floor["fd"] if floor else None,
        "samples": len(evaluation.results),
        "seconds_per_image": metrics["generation_seconds"] / max(len(evaluation.results), 1),
    }


# ------------------------------------------------------------------------------------------------
# Cost: parameters, network evaluations, sampling speed
# ------------------------------------------------------------------------------------------------


def sampling_networks(pipe) -> dict[str, torch.nn.Module]:
    """The pipeline's own networks (U-Net, generator, stages), not the frozen text encoder."""
    networks, seen = {}, set()
    for name, value in vars(pipe).items():  # a module reachable twice (model, denoiser) counts once
        if isinstance(value, torch.nn.Module) and "encoder" not in name and "text" not in name:
            if id(value) not in seen:
                networks[name] = value
                seen.add(id(value))
    return networks


@contextlib.contextmanager
def count_evaluations(pipe):
    """Counts images through each sampling network: {"images": n} after the block."""
    counter = {"images": 0}

    def hook(module, inputs):
        first = next((x for x in inputs if isinstance(x, torch.Tensor)), None)
        counter["images"] += int(first.shape[0]) if first is not None and first.ndim else 1

    handles = [net.register_forward_pre_hook(hook) for net in sampling_networks(pipe).values()]
    try:
        yield counter
    finally:
        for handle in handles:
            handle.remove()


def network_evaluations_per_image(pipe, settings: SamplingSettings) -> float:
    from imagegen.evaluation.runner import call_pipeline

    with count_evaluations(pipe) as counter:
        call_pipeline(pipe, [TIMING_PROMPT] * 2, settings, seed=0)
    return counter["images"] / 2


def parameter_counts(pipe, checkpoint: Path) -> dict[str, float]:
    """Millions of parameters: sampling networks, and everything trained (state/model*.safetensors)."""
    from safetensors import safe_open

    sampling = sum(p.numel() for net in sampling_networks(pipe).values() for p in net.parameters())
    trained = 0
    for path in sorted((checkpoint / "state").glob("model*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            trained += sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())
    return {"sampling_params_m": sampling / 1e6, "trained_params_m": trained / 1e6}


def _timed(pipe, prompts, settings) -> float:
    from imagegen.evaluation.runner import call_pipeline

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    call_pipeline(pipe, prompts, settings, seed=0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def sampling_speed(pipe, settings: SamplingSettings, reps: int, max_batch: int) -> dict[str, Any]:
    """ms/image at batch 1 (median of reps) and images/s at the largest batch that fits, <= max_batch
    (on CPU: max_batch itself; on GPU: doubling until out of memory)."""
    _timed(pipe, [TIMING_PROMPT], settings)  # warm-up
    batch1 = statistics.median(_timed(pipe, [TIMING_PROMPT], settings) for _ in range(reps))
    batch, best = (max_batch, None) if not torch.cuda.is_available() else (8, None)
    while batch <= max_batch:
        try:
            _timed(pipe, [TIMING_PROMPT] * batch, settings)
            best = (batch, min(_timed(pipe, [TIMING_PROMPT] * batch, settings) for _ in range(2)))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        if not torch.cuda.is_available():
            break
        batch *= 2
    return {
        "ms_per_image_b1": 1000 * batch1,
        "max_batch": best[0],
        "images_per_second_max_batch": best[0] / best[1],
    }


# ------------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------------


def evaluate_model(name, trained, domain, profile, device, batch_size) -> dict[str, Any]:
    """Everything measured on one trained model; each stage logs as it goes."""
    from imagegen.pipelines import load_pipeline

    is_diffusion = name == "diffusion"
    result: dict[str, Any] = {"curve": [], "sweep": [], "steps": []}
    curve_records = domain.records(profile["curve_prompts"])
    for point in trained["checkpoints"]:
        pipe = load_pipeline(point["checkpoint"], device=device)
        row = evaluate_point(pipe, domain, curve_records, 1, SamplingSettings(), batch_size)
        result["curve"].append({**point, **row})
        log.info(
            "%s curve: %.0f s -> pass %s, FD %.3f", name, point["train_seconds"], row["pass_rate"], row["fd"]
        )
    checkpoint = Path(trained["checkpoints"][-1]["checkpoint"])
    pipe = load_pipeline(checkpoint, device=device)
    final_records = domain.records(profile["final_prompts"])
    result["final"] = evaluate_point(
        pipe, domain, final_records, profile["final_images"], SamplingSettings(), batch_size
    )
    result.update(parameter_counts(pipe, checkpoint))
    result["nfe_per_image"] = network_evaluations_per_image(pipe, SamplingSettings())
    result["speed"] = sampling_speed(pipe, SamplingSettings(), profile["timing_reps"], profile["max_batch"])
    sweep_records = domain.records(profile["sweep_prompts"])
    if is_diffusion:
        modes, scales = profile["thresholding"], profile["guidance"]
        grid = [SamplingSettings(thresholding=m, guidance_scale=w) for m in modes for w in scales]
    else:
        grid = [SamplingSettings(truncation=t) for t in profile["truncation"]]
    for settings in grid:
        result["sweep"].append(evaluate_point(pipe, domain, sweep_records, 1, settings, batch_size))
        log.info("%s sweep %s: %s", name, settings.as_dict(), result["sweep"][-1]["fd"])
    if is_diffusion:
        steps_records = domain.records(profile["steps_prompts"])
        for sampler in profile["samplers"]:
            for steps in profile["steps"]:
                settings = SamplingSettings(sampler=sampler, num_steps=steps)
                row = evaluate_point(pipe, domain, steps_records, 1, settings, batch_size)
                row["nfe_per_image"] = network_evaluations_per_image(pipe, settings)
                result["steps"].append(row)
    return result


def run(args) -> dict[str, Any]:
    from imagegen.evaluation.feature_net import feature_net_identity, get_feature_net

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profile = {
        **PROFILES[args.profile],
        **{k: v for k, v in vars(args).items() if k in PROFILES["cpu"] and v},
    }
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = get_feature_net(args.domain, args.feature_nets, data_root=args.emoji_root)
    domain = Domain(args, net)
    results: dict[str, Any] = {
        "domain": args.domain,
        "profile": args.profile,
        "settings": profile,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "feature_net": feature_net_identity(net),
        "inception": inception_status()[1],
        "models": {},
        "command": " ".join(sys.argv),
    }
    for name, cfg in fair_configs(args).items():
        entry = results["models"][name] = {
            "config": str(args.diffusion_config if name == "diffusion" else args.gan_config)
        }
        try:
            entry["training"] = train_for_budget(name, cfg, profile["minutes"], profile["segments"], out)
        except (ValueError, RuntimeError, FileNotFoundError) as error:
            traceback.print_exc()
            entry["error"] = f"training failed: {error}"
        (out / "results.json").write_text(json.dumps(results, indent=2))
    for name, entry in results["models"].items():
        if "training" in entry:
            entry.update(evaluate_model(name, entry["training"], domain, profile, device, args.batch_size))
            (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, out)
    return results


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default=None, help="default: gpu if CUDA, else cpu"
    )
    parser.add_argument("--quick", action="store_true", help="= --profile quick (smoke test, about 3 min)")
    parser.add_argument("--domain", choices=("shapes", "emoji"), default="shapes")
    parser.add_argument("--emoji-root", default=str(REPO.parent / "shared" / "data" / "noto-emoji"))
    parser.add_argument("--diffusion-config", default=str(REPO / "configs" / "shapes-cpu.yaml"))
    parser.add_argument("--gan-config", default=str(REPO / "configs" / "shapes-gan-cpu.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for both")
    parser.add_argument("--models", nargs="+", choices=("diffusion", "gan"), default=["diffusion", "gan"])
    parser.add_argument(
        "--exclude-heldout", action="store_true", help="train without the heldout suite's pairs"
    )
    parser.add_argument("--out", default=None, help="default: runs/bench/gan-vs-diffusion-<domain>-<profile>")
    parser.add_argument("--feature-nets", default=str(REPO / "runs" / "feature-nets"))
    parser.add_argument("--batch-size", type=int, default=64, help="images per pipeline call in evaluations")
    parser.add_argument("--minutes", type=float, help="training budget per model (wall clock)")
    parser.add_argument("--segments", type=int, help="evaluated checkpoints along training")
    for name in (
        "curve_prompts",
        "final_prompts",
        "final_images",
        "sweep_prompts",
        "steps_prompts",
        "timing_reps",
        "max_batch",
    ):
        parser.add_argument("--" + name.replace("_", "-"), type=int, dest=name)
    parser.add_argument("--guidance", type=float, nargs="+", help="diffusion guidance sweep")
    parser.add_argument("--thresholding", nargs="+", help="dynamic | static | none, each swept")
    parser.add_argument("--truncation", type=float, nargs="+", help="GAN truncation sweep")
    parser.add_argument("--steps", type=int, nargs="+", help="sampler steps sweep, e.g. 10 25 50 100 1000")
    parser.add_argument("--samplers", nargs="+", help="ddpm ddim dpmpp_2m unipc")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.profile = "quick" if args.quick else args.profile or ("gpu" if torch.cuda.is_available() else "cpu")
    args.out = args.out or str(REPO / "runs" / "bench" / f"gan-vs-diffusion-{args.domain}-{args.profile}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.domain == "emoji" and not Path(args.emoji_root).is_dir():
        print(f"skipped: the emoji data folder {args.emoji_root} is absent (it lives in ../shared/data)")
        return 0
    started = time.perf_counter()
    run(args)
    print(f"total wall time {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

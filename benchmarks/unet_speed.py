"""CPU speed of the Efficient U-Net presets, side by side with a size-matched diffusers U-Net.

Measures, per preset: parameters, GFLOPs of one forward at batch 1 (FlopCounterMode; attention
included), training images/s (forward + backward + AdamW step, warm-up excluded) and sampling
latency per network evaluation at batch 1 and 8 (no grad). The same numbers for a diffusers
`UNet2DConditionModel` with about the same parameter count and cross-attention width are taken in
the same run, interleaved round by round with ours so that load from other processes hits both,
and reported as ratios (ours / diffusers; > 1 means ours is faster). Large presets (`--large`) are
built on the meta device: parameters and GFLOPs only.

Numeric paths (`--paths`): "fp32" is eager fp32 with torch's attention kernels (the old CPU
default); "auto" is what `train.mixed_precision: auto` picks on this machine (bf16 autocast where
the CPU computes bf16 natively, with the "math" SDPA kernel: imagegen/nn/precision.py). Each
model is timed under each path in the same interleaved rounds. CPU MFU = 3 x forward GFLOPs x
train img/s over the matmul rate of the path's dtype, measured in the same run (2048^2 matmul and
a 3x3 64-channel convolution at 32 px, batch 32, forward only, NCHW and channels-last).

    .venv/bin/python benchmarks/unet_speed.py --out runs/bench/unet_speed.json
    .venv/bin/python benchmarks/unet_speed.py --presets tiny32 sr64-tiny --large
    .venv/bin/python benchmarks/unet_speed.py --paths fp32 auto --batch 32   # old vs new CPU path
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from imagegen.config import UNetConfig, config_from_dict
from imagegen.models import EfficientUNet
from imagegen.nn import ATTENTION_BACKENDS
from imagegen.nn.attention import attention_kernels
from imagegen.nn.precision import resolve_attention_backend, resolve_mixed_precision

TEXT_DIM, TEXT_LENGTH = 384, 32
LARGE_PRESETS = ["base64-100m", "base64-300m", "sr256", "sr1024"]

# diffusers U-Nets matched to our presets by parameter count (same cross-attention width, same
# time-embedding width, pooled text added to the time embedding through `class_embed_type`)
DIFFUSERS_MATCH = {
    "tiny32": dict(
        sample_size=32,
        block_out_channels=[32, 64, 64],
        layers_per_block=1,
        attention_head_dim=[1, 2, 2],  # diffusers' name for the number of heads: head width 32
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    ),
}

Forward = Callable[[dict], torch.Tensor]


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode has no formula for the CPU flash-attention kernel: use the generic one."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


FLOP_MAPPING = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def make_batch(batch: int, size: int, lowres_cond: bool, device: str = "cpu") -> dict:
    """Random x_t [B, 3, size, size], t [B], text [B, L, D] with half the tokens masked, low-res input."""
    with torch.device(device):
        cond = dict(
            x_t=torch.randn(batch, 3, size, size),
            t=torch.randint(0, 1000, (batch,)),
            text_tokens=torch.randn(batch, TEXT_LENGTH, TEXT_DIM),
            text_mask=torch.arange(TEXT_LENGTH).expand(batch, -1) < TEXT_LENGTH // 2,
            text_pooled=torch.randn(batch, TEXT_DIM),
        )
        if lowres_cond:
            cond.update(lowres=torch.randn(batch, 3, size // 2, size // 2), aug_level=torch.zeros(batch))
    return cond


def build_ours(preset: str, device: str = "cpu") -> tuple[torch.nn.Module, Forward, UNetConfig]:
    cfg = config_from_dict({"preset": preset}, UNetConfig)
    with torch.device(device):
        model = EfficientUNet.from_config_dataclass(cfg)
    return model, lambda batch: model(**batch), cfg


def build_diffusers(preset: str) -> tuple[torch.nn.Module, Forward]:
    spec = DIFFUSERS_MATCH[preset]
    model = UNet2DConditionModel(
        in_channels=3,
        out_channels=3,
        cross_attention_dim=TEXT_DIM,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=TEXT_DIM,
        **spec,
    )

    def forward(batch: dict) -> torch.Tensor:
        return model(
            batch["x_t"],
            batch["t"],
            encoder_hidden_states=batch["text_tokens"],
            encoder_attention_mask=batch["text_mask"],
            class_labels=batch["text_pooled"],
        ).sample

    return model, forward


def gflops(forward: Forward, batch: dict) -> float:
    """GFLOPs of one forward (1 multiply-add = 2 FLOPs; convolutions, matmuls and attention)."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=FLOP_MAPPING) as counter:
        forward(batch)
    return counter.get_total_flops() / 1e9


def params_millions(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def resolve_path(path: str) -> tuple[str, str]:
    """A numeric path name -> (mixed precision, SDPA backend) as the trainer would resolve them."""
    precision = "no" if path == "fp32" else resolve_mixed_precision("auto", "cpu")
    return precision, resolve_attention_backend("auto", precision, "cpu")


def train_step_fn(
    model: torch.nn.Module, forward: Forward, batch: dict, path: str = "fp32"
) -> Callable[[], None]:
    """One training step on `path`: forward (under bf16 autocast if the path says so), fp32 MSE to
    a random target, backward, AdamW."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.randn_like(batch["x_t"])
    precision, backend = resolve_path(path)

    def step() -> None:
        with (
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"),
            attention_kernels(ATTENTION_BACKENDS[backend]),
        ):
            output = forward(batch)
        loss = torch.nn.functional.mse_loss(output.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measured_rates() -> dict[str, float]:
    """GFLOP/s of this CPU, now: matmul 2048^2 and a 3x3 64->64 conv (32 px, batch 32), per dtype."""
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        rates[f"matmul_{name}"] = 2 * 2048**3 / _best_of(lambda a=a, b=b: a @ b) / 1e9
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(dtype)
        x = torch.randn(32, 64, 32, 32, dtype=dtype)
        conv_flops = 2 * 32 * 64 * 64 * 9 * 32 * 32
        with torch.no_grad():
            rates[f"conv_{name}"] = conv_flops / _best_of(functools.partial(conv, x)) / 1e9
            conv_cl, x_cl = (
                conv.to(memory_format=torch.channels_last),
                x.to(memory_format=torch.channels_last),
            )
            seconds = _best_of(functools.partial(conv_cl, x_cl))
            rates[f"conv_{name}_channels_last"] = conv_flops / seconds / 1e9
    return rates


def _best_of(call: Callable[[], object], repeats: int = 8) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def sample_step_fn(forward: Forward, batch: dict) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            forward(batch)

    return step


def timed(step: Callable[[], None], repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(steps: dict[str, Callable[[], None]], warmup: int, rounds: int, repeats: int) -> dict:
    """Warm each step up, then alternate models round by round; median seconds per call."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            samples[name].append(timed(step, repeats))
    return {name: statistics.median(values) for name, values in samples.items()}


def time_preset(preset: str, args: argparse.Namespace) -> list[dict]:
    """Train and sample timings of `preset` (and its diffusers match, if any), measured together."""
    torch.manual_seed(0)
    model, forward, cfg = build_ours(preset)
    models = {f"ours:{preset}": (model, forward)}
    if preset in DIFFUSERS_MATCH:
        models[f"diffusers:{preset}"] = build_diffusers(preset)
    size = cfg.image_size
    rows = {
        name: dict(
            model=name,
            image_size=size,
            params_m=params_millions(net),
            gflops=gflops(fwd, make_batch(1, size, cfg.lowres_cond)),
        )
        for name, (net, fwd) in models.items()
    }
    train_batch = make_batch(args.batch, size, cfg.lowres_cond)
    steps = {
        (name, path): train_step_fn(net.train(), fwd, train_batch, path)
        for name, (net, fwd) in models.items()
        for path in args.paths
    }
    train = interleaved(steps, args.warmup, args.rounds, args.repeats)
    for (name, path), seconds in train.items():
        precision, backend = resolve_path(path)
        rows[name][f"train_img_per_s@{path}"] = args.batch / seconds
        rows[name][f"path@{path}"] = f"{precision}/{backend}"
    for name in models:
        rows[name]["train_img_per_s"] = rows[name][f"train_img_per_s@{args.paths[-1]}"]
    for sample_batch in (1, 8):
        batch = make_batch(sample_batch, size, cfg.lowres_cond)
        steps = {name: sample_step_fn(fwd, batch) for name, (net, fwd) in models.items()}
        for name, seconds in interleaved(steps, args.warmup, args.rounds, 3 * args.repeats).items():
            rows[name][f"sample_ms_b{sample_batch}"] = 1000 * seconds
    return list(rows.values())


def large_row(preset: str) -> dict:
    """Parameters and GFLOPs of a large preset, on the meta device (nothing allocated)."""
    model, forward, cfg = build_ours(preset, device="meta")
    size = min(cfg.image_size, 256)  # sr1024 trains on 256 px crops
    flops = gflops(forward, make_batch(1, size, cfg.lowres_cond, device="meta"))
    return dict(model=f"ours:{preset}", params_m=params_millions(model), gflops=flops, image_size=size)


def ratios(rows: list[dict]) -> list[dict]:
    """ours / diffusers speed ratios (> 1: ours faster) for every preset timed against diffusers."""
    by_name = {row["model"]: row for row in rows}
    out = []
    for name, ours in by_name.items():
        theirs = by_name.get(name.replace("ours:", "diffusers:"))
        if not name.startswith("ours:") or theirs is None or "train_img_per_s" not in ours:
            continue
        out.append(
            dict(
                preset=name.removeprefix("ours:"),
                train_speedup=ours["train_img_per_s"] / theirs["train_img_per_s"],
                sample_speedup_b1=theirs["sample_ms_b1"] / ours["sample_ms_b1"],
                sample_speedup_b8=theirs["sample_ms_b8"] / ours["sample_ms_b8"],
                flops_ratio=ours["gflops"] / theirs["gflops"],
            )
        )
    return out


def path_table(rows: list[dict], paths: list[str], rates: dict[str, float]) -> list[dict]:
    """Per timed model and path: train img/s, speed-up over the first path, CPU MFU."""
    out = []
    for row in rows:
        if f"train_img_per_s@{paths[0]}" not in row:
            continue
        base = row[f"train_img_per_s@{paths[0]}"]
        for path in paths:
            precision = row[f"path@{path}"].split("/")[0]
            peak = rates["matmul_bf16" if precision == "bf16" else "matmul_fp32"]
            speed = row[f"train_img_per_s@{path}"]
            mfu = 3 * row["gflops"] * speed / peak
            out.append(
                dict(
                    model=row["model"],
                    path=path,
                    resolved=row[f"path@{path}"],
                    train_img_per_s=speed,
                    speedup=speed / base,
                    peak_gflops=peak,
                    cpu_mfu=mfu,
                )
            )
    return out


def paths_markdown(paths: list[dict], batch: int) -> str:
    lines = [
        f"| model | path (precision/attention) | train img/s (B={batch}) | vs first path | "
        "CPU MFU (of matmul rate) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for item in paths:
        lines.append(
            f"| {item['model']} | {item['path']} ({item['resolved']}) | {item['train_img_per_s']:.1f} | "
            f"{item['speedup']:.2f}x | {100 * item['cpu_mfu']:.1f}% of {item['peak_gflops']:.0f} GFLOP/s |"
        )
    return "\n".join(lines)


def markdown(rows: list[dict], speedups: list[dict], batch: int) -> str:
    def cell(row: dict, key: str, fmt: str) -> str:
        return format(row[key], fmt) if key in row else "-"

    header = f"| model | px | params (M) | GFLOPs / fwd | train img/s (B={batch}) | ms / fwd B=1 | B=8 |"
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        timings = [cell(row, key, ".1f") for key in ("train_img_per_s", "sample_ms_b1", "sample_ms_b8")]
        lines.append(
            f"| {row['model']} | {row['image_size']} | {row['params_m']:.2f} | {row['gflops']:.2f} | "
            + " | ".join(timings)
            + " |"
        )
    if speedups:
        lines += [
            "",
            "| preset | train speed-up (ours / diffusers) | sample speed-up B=1 | B=8 | FLOPs ratio |",
        ]
        lines.append("| --- | ---: | ---: | ---: | ---: |")
        for item in speedups:
            lines.append(
                f"| {item['preset']} | {item['train_speedup']:.2f}x | {item['sample_speedup_b1']:.2f}x"
                f" | {item['sample_speedup_b8']:.2f}x | {item['flops_ratio']:.2f} |"
            )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["tiny32"], help="presets timed on the CPU")
    parser.add_argument("--large", action="store_true", help=f"add params + GFLOPs of {LARGE_PRESETS}")
    parser.add_argument("--batch", type=int, default=32, help="training batch size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per model before timing")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, diffusers, ...)")
    parser.add_argument("--repeats", type=int, default=2, help="timed training steps per round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--paths", nargs="+", default=["fp32", "auto"], choices=["fp32", "auto"], help="numeric paths timed"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = dict(torch=torch.__version__, threads=torch.get_num_threads(), cpu=platform.processor() or "cpu")
    print(f"# unet_speed: {env} presets={args.presets} large={args.large} batch={args.batch}", flush=True)
    rates = measured_rates()
    print("# measured GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()), flush=True)
    rows = []
    for preset in args.presets:
        rows += time_preset(preset, args)
        print(f"# timed {preset}", flush=True)
    if args.large:
        rows += [large_row(preset) for preset in LARGE_PRESETS]
    speedups = ratios(rows)
    paths = path_table(rows, args.paths, rates)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                dict(
                    env=env,
                    args=vars(args) | {"out": str(args.out)},
                    rates=rates,
                    rows=rows,
                    speedups=speedups,
                    paths=paths,
                ),
                indent=2,
            )
        )
    print(markdown(rows, speedups, args.batch))
    print()
    print(paths_markdown(paths, args.batch))


if __name__ == "__main__":
    main()

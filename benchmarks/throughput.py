"""Training and sampling throughput of the diffusion stages and the GAN, every fast path side by side.

One call, one table (printed last) and one JSON file. In order of priority (a time budget skips
what would not finish; the skipped rows say so):

1. the card's bf16 matmul rate, measured here (the MFU denominator);
2. training, per preset (base64-100m, base64-300m, sr256): images/s, GFLOPs per image (forward +
   backward, FlopCounterMode), MFU, peak memory, for each fast-path variant measured one after the
   other on the same weights: fp32 eager, bf16, + flash SDPA, + channels-last, + torch.compile,
   + the sync-free NaN guard, and activation checkpointing (memory);
3. host-device syncs in one training step, as the trainer does it today and with the fast paths;
4. baselines at matched parameters in the same harness: diffusers `UNet2DConditionModel` and
   imagen-pytorch's `Unet` (skipped with a note when not installed);
5. sampling: 25-step DPM-Solver++(2M), guidance 5, dynamic thresholding: latency at batch 1 and
   images/s at a large batch, per variant (CUDA graphs only on CUDA);
6. the text -> 64 -> 256 cascade at batch 1 (random weights; a MiniLM-shaped random encoder);
7. the DF-GAN generator (gan64): ms per image at batch 1 and at a large batch.

The CUDA-graph variants of 5 and 6 run last: each new shape is a compilation.

    python benchmarks/throughput.py --device cuda --out $OUT/throughput.json        # GPU, < 10 min
    .venv/bin/python benchmarks/throughput.py --device cpu --quick --out runs/bench/throughput-cpu.json

`--quick` swaps in tiny presets (tiny16, sr32, gan-tiny16) and a few steps: a dry run of the
harness, not a measurement of the real presets. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from imagegen.config import GANConfig, SpeedConfig, UNetConfig, config_from_dict
from imagegen.diffusion import DiffusionLoss, GaussianDiffusion, sample_images
from imagegen.gan import Generator
from imagegen.models import EfficientUNet
from imagegen.pipelines.fast_sampling import sampling_network
from imagegen.training import fast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import build_baseline  # noqa: E402

TEXT_DIM, TEXT_LENGTH = 384, 32
FULL = dict(
    base=["base64-100m", "base64-300m"],
    sr="sr256",
    gan="gan64",
    train_batch={"base64-100m": 128, "base64-300m": 64, "sr256": 32},
    sample_batch=64,
    gan_batch=256,
    warmup=3,
    steps=10,
    sample_repeats=3,
    sampler_steps=25,
)
QUICK = dict(
    base=["tiny16"],
    sr="sr32",
    gan="gan-tiny16",
    train_batch={"tiny16": 4, "sr32": 4},
    sample_batch=4,
    gan_batch=16,
    warmup=1,
    steps=2,
    sample_repeats=1,
    sampler_steps=4,
)


@dataclasses.dataclass
class Variant:
    name: str
    bf16: bool
    speed: SpeedConfig


def _fast(**overrides) -> SpeedConfig:
    return SpeedConfig(attention_backend="flash", channels_last=True, **overrides)


TRAIN_VARIANTS = [
    Variant("fp32 eager", False, SpeedConfig()),
    Variant("bf16", True, SpeedConfig()),
    Variant("bf16 +flash", True, SpeedConfig(attention_backend="flash")),
    Variant("bf16 +flash +channels_last", True, _fast()),
    Variant("bf16 +flash +cl +compile", True, _fast(compile=True)),
    Variant("bf16 +flash +cl +compile +sync-free", True, _fast(compile=True, sync_free_step=True)),
    Variant("bf16 +flash +cl +act. ckpt", True, _fast(activation_checkpointing=True)),
]
SAMPLE_VARIANTS = [
    Variant("fp32 eager", False, SpeedConfig()),
    Variant("bf16", True, SpeedConfig()),
    Variant("bf16 +flash +cl", True, _fast()),
    Variant("bf16 +flash +cl +cuda graphs", True, _fast(cuda_graphs_sampling=True)),
]


# ------------------------------------------------------------------------------------------------
# Timing, memory, FLOPs
# ------------------------------------------------------------------------------------------------


class Budget:
    """Wall-clock budget: sections ask before starting work that cannot be interrupted."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds

    def allows(self, seconds: float) -> bool:
        return time.perf_counter() + seconds < self.deadline


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall seconds of `fn` (device work finished), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def _sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# FlopCounterMode has no formula for the CPU flash-attention kernels: use the generic ones
FLOP_MAPPING = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
}


def train_gflops_per_image(network: nn.Module, batch: dict) -> float:
    """GFLOPs of forward + backward per image (fp32, batch of 2; 1 multiply-add = 2 FLOPs)."""
    with FlopCounterMode(display=False, custom_mapping=FLOP_MAPPING) as counter:
        network(**batch).float().square().mean().backward()
    network.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9 / batch["x_t"].shape[0]


def matmul_tflops(device: torch.device, dtype: torch.dtype, quick: bool) -> float:
    """The device's matmul rate in `dtype`: an n x n x n product (n = 8192; 1024 with --quick)."""
    n = 1024 if quick else 8192
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = seconds_per_call(lambda: a @ b, device, warmup=3, repeats=3 if quick else 10)
    return 2 * n**3 / seconds / 1e12


def mfu_peak(device: torch.device, quick: bool) -> dict[str, float]:
    """bf16 and fp32 matmul rates; MFU is taken against the bf16 rate (on a CPU without fast bf16,
    against the faster of the two, so that the dry run's percentages stay below 100)."""
    rates = {
        "bf16": matmul_tflops(device, torch.bfloat16, quick),
        "fp32": matmul_tflops(device, torch.float32, quick),
    }
    rates["peak"] = rates["bf16"] if device.type == "cuda" else max(rates.values())
    return rates


# ------------------------------------------------------------------------------------------------
# Inputs and networks
# ------------------------------------------------------------------------------------------------


def unet_config(preset: str) -> UNetConfig:
    return config_from_dict({"preset": preset, "text_dim": TEXT_DIM}, UNetConfig)


def build_unet(preset: str, device: torch.device) -> EfficientUNet:
    torch.manual_seed(0)
    with torch.device(device):
        model = EfficientUNet.from_config_dataclass(unet_config(preset))
    with torch.no_grad():  # random weights off the zero init, so every layer computes something
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


def text_cond(batch: int, device: torch.device, seed: int = 0) -> dict:
    """Random text conditions: tokens [B, L, D], mask [B, L] (3/4 real tokens), pooled [B, D]."""
    generator = torch.Generator().manual_seed(seed)
    cond = dict(
        text_tokens=torch.randn(batch, TEXT_LENGTH, TEXT_DIM, generator=generator),
        text_mask=torch.arange(TEXT_LENGTH).expand(batch, -1) < 3 * TEXT_LENGTH // 4,
        text_pooled=torch.randn(batch, TEXT_DIM, generator=generator),
    )
    return {k: v.to(device) for k, v in cond.items()}


def stage_cond(cfg: UNetConfig, batch: int, device: torch.device) -> dict:
    """Text conditions, plus the low-res input (half size) and its aug level for an SR stage."""
    cond = text_cond(batch, device)
    if cfg.lowres_cond:
        low = cfg.image_size // 4 if cfg.image_size >= 256 else cfg.image_size // 2  # 64 -> 256
        cond["lowres"] = torch.rand(batch, 3, low, low, device=device) * 2 - 1
        cond["aug_level"] = torch.full((batch,), 200.0, device=device)
    return cond


def device_diffusion(device: torch.device) -> GaussianDiffusion:
    """The v-prediction cosine diffusion with its alpha_bar already on `device`: no copy per step."""
    diffusion = GaussianDiffusion("cosine", 1000, "v")
    diffusion.alpha_bar = diffusion.alpha_bar.to(device)
    return diffusion


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def make_train_step(network: nn.Module, variant: Variant, batch_size: int, size: int, cond: dict):
    """One trainer step: min-SNR v-loss with condition dropout, backward, clip, guarded fused AdamW."""
    device = next(network.parameters()).device
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, **{"fused": device.type in ("cuda", "cpu")})
    guard = fast.StepGuard(device, sync_free=variant.speed.sync_free_step)
    diffusion = device_diffusion(device)
    loss_fn = DiffusionLoss(diffusion)
    null = {k: v[:1] for k, v in text_cond(1, device, seed=1).items()}
    x0 = torch.rand(batch_size, 3, size, size, device=device) * 2 - 1
    generator = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.bf16):
            loss = loss_fn(network, x0, cond, null, 0.1, generator).mean()
        guard.observe(loss)
        loss.backward()
        guard.observe(torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0))
        guard.step(optimizer)
        optimizer.zero_grad(set_to_none=True)

    return step


def train_row(label: str, network: nn.Module, variant: Variant, cond: dict, size: int, args, flops: float):
    """Images/s, MFU and peak memory of training `network` with `variant` on conditions `cond`."""
    device, batch = args.device, next(iter(cond.values())).shape[0]
    reset_memory(device)
    step = make_train_step(network, variant, batch, size, cond)
    seconds = seconds_per_call(step, device, args.warmup, args.steps)
    images = batch / seconds
    return dict(
        section="train",
        model=label,
        variant=variant.name,
        batch=batch,
        img_per_s=images,
        gflops_per_img=flops,
        mfu=images * flops * 1e9 / (args.peak_tflops * 1e12),
        peak_gib=peak_gib(device),
    )


def train_preset(preset: str, args, budget: Budget, rows: list) -> None:
    cfg, device = unet_config(preset), args.device
    size, batch = cfg.image_size, args.plan["train_batch"][preset]
    base = build_unet(preset, device)
    flops = train_gflops_per_image(
        base,
        {
            "x_t": torch.randn(2, 3, size, size, device=device),
            "t": torch.tensor([10, 900], device=device),
            **stage_cond(cfg, 2, device),
        },
    )
    compiled = None
    for variant in TRAIN_VARIANTS:
        needs = 240 if variant.speed.compile and compiled is None else 60
        if not budget.allows(needs):
            rows.append(
                dict(section="train", model=f"ours:{preset}", variant=variant.name, note="skipped: budget")
            )
            continue
        if variant.speed.compile and compiled is not None:
            network = compiled  # the sync-free guard is a property of the step, not of the network
        else:
            network = fast.prepare_network(copy.deepcopy(base).train(), variant.speed)
            network = fast.compile_network(network, _cpu_safe(variant.speed, device))
        try:
            cond = stage_cond(cfg, batch, device)
            rows.append(train_row(f"ours:{preset}", network, variant, cond, size, args, flops))
            if variant.speed.compile and device.type == "cpu":
                rows[-1]["note"] = "aot_eager: traced, no inductor code (CPU dry run)"
        except torch.OutOfMemoryError:
            rows.append(
                dict(section="train", model=f"ours:{preset}", variant=variant.name, note="out of memory")
            )
        # keep the compiled network for the sync-free row, then let it go
        compiled = network if variant.speed.compile and not variant.speed.sync_free_step else None
        del network
        print(
            f"# train {preset} {variant.name}: {rows[-1].get('img_per_s', rows[-1].get('note'))}", flush=True
        )
    del base, compiled
    reset_memory(device)


def _cpu_safe(speed: SpeedConfig, device: torch.device) -> SpeedConfig:
    """On a CPU, compile with aot_eager (inductor takes minutes per tiny model here): a dry run."""
    if device.type == "cpu" and speed.compile:
        return dataclasses.replace(speed, compile_backend="aot_eager")
    return speed


# ------------------------------------------------------------------------------------------------
# Host-device syncs
# ------------------------------------------------------------------------------------------------


def count_syncs(fn: Callable[[], object]) -> int:
    """Synchronizing CUDA calls made by fn (torch.cuda.set_sync_debug_mode("warn"))."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message).lower() for w in caught)


def sync_audit(preset: str, args, rows: list) -> None:
    """Syncs per training step: the trainer's current NaN guard and schedule vs the fast paths."""
    device, cfg = args.device, unet_config(preset)
    network = build_unet(preset, device).train()
    batch, size = 8, cfg.image_size
    cond = stage_cond(cfg, batch, device)
    trainer_like = _trainer_like_step(network, batch, size, cond)
    fast_step = make_train_step(
        network, Variant("sync-free", True, SpeedConfig(sync_free_step=True)), batch, size, cond
    )
    for name, step in (
        ("trainer today (per-step .item() guard, CPU alpha_bar)", trainer_like),
        ("StepGuard(sync_free) + alpha_bar on device", fast_step),
    ):
        step()
        sync(device)
        rows.append(
            dict(section="syncs", model=f"ours:{preset}", variant=name, syncs_per_step=count_syncs(step))
        )
    del network
    reset_memory(device)


def _trainer_like_step(network: nn.Module, batch: int, size: int, cond: dict):
    """imagegen.training.trainer's step as of this writing: isfinite(loss).item() per micro-batch
    and on the gradient norm; the diffusion's alpha_bar copied from the CPU at every use."""
    device = next(network.parameters()).device
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, fused=True)
    loss_fn = DiffusionLoss(GaussianDiffusion("cosine", 1000, "v"))
    null = text_cond(1, device, seed=1)
    x0 = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    generator = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(network, x0, cond, null, 0.1, generator).mean()
        if not bool(torch.isfinite(loss).all().item()):
            return
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        if bool(torch.isfinite(norm).item()):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


# ------------------------------------------------------------------------------------------------
# Baselines at matched parameters
# ------------------------------------------------------------------------------------------------


def baselines(preset: str, args, budget: Budget, rows: list) -> None:
    """Ours, diffusers and imagen-pytorch at about the parameters of `preset`: bf16 training and
    forward latency, each model with its own defaults (torch picks the SDPA kernel)."""
    for name in ("ours", "diffusers", "imagen-pytorch"):
        if not budget.allows(60):
            rows.append(dict(section="baselines", model=f"{name}:{preset}", note="skipped: budget"))
            continue
        try:
            rows.append(baseline_row(name, preset, args))
        except ImportError as error:
            rows.append(dict(section="baselines", model=f"{name}:{preset}", note=f"skipped: {error}"))
        print(f"# baseline {name}: {rows[-1].get('img_per_s', rows[-1].get('note'))}", flush=True)
        reset_memory(args.device)


def baseline_row(name: str, preset: str, args) -> dict:
    device, cfg = args.device, unet_config(preset)
    size, batch = cfg.image_size, args.plan["train_batch"][preset]
    if name == "ours":
        network, note = build_unet(preset, device), "EfficientUNet"
    else:
        network, note = build_baseline(name, preset, device, TEXT_DIM)
    example = dict(
        x_t=torch.randn(2, 3, size, size, device=device),
        t=torch.tensor([10, 900], device=device),
        **text_cond(2, device),
    )
    flops = train_gflops_per_image(network.train(), example)
    variant = Variant("bf16", True, SpeedConfig())
    row = train_row(f"{name}:{preset}", network, variant, text_cond(batch, device), size, args, flops)
    row.update(section="baselines", params_m=sum(p.numel() for p in network.parameters()) / 1e6, note=note)
    one = {k: v[:1] for k, v in example.items()}
    network.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        row["fwd_ms_b1"] = 1000 * seconds_per_call(lambda: network(**one), device, 3, 3 * args.steps)
    return row


# ------------------------------------------------------------------------------------------------
# Sampling, cascade, GAN
# ------------------------------------------------------------------------------------------------


def sample_fn(network, cfg: UNetConfig, batch: int, variant: Variant, args, cond: dict | None = None):
    device, plan = args.device, args.plan
    cond = cond if cond is not None else stage_cond(cfg, batch, device)
    null = text_cond(1, device, seed=1)
    diffusion = device_diffusion(device)

    def run() -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.bf16):
            return sample_images(
                network,
                (batch, 3, cfg.image_size, cfg.image_size),
                cond,
                null,
                diffusion,
                sampler="dpmpp_2m",
                num_steps=plan["sampler_steps"],
                guidance_scale=5.0,
                thresholding="dynamic",
                generator=torch.Generator(device=device).manual_seed(0),
            )

    return run


def sampling_networks(preset: str, device: torch.device) -> dict[str, Callable]:
    """One eval network per sampling variant (shared weights), built lazily and cached."""
    base = build_unet(preset, device).eval()
    cache: dict[str, Callable] = {}

    def get(variant: Variant):
        if variant.name not in cache:
            cache[variant.name] = sampling_network(copy.deepcopy(base), variant.speed, device)
        return cache[variant.name]

    return get


def sampling(preset: str, args, budget: Budget, rows: list, networks, variants: list[Variant]) -> None:
    """25-step guided DPM-Solver++ latency at batch 1 and images/s at a large batch, per variant."""
    cfg, device, plan = unet_config(preset), args.device, args.plan
    for variant in variants:
        row = dict(
            section="sample", model=f"ours:{preset}", variant=variant.name, steps=plan["sampler_steps"]
        )
        if variant.speed.cuda_graphs_sampling and device.type != "cuda":
            rows.append({**row, "note": "CUDA only (the CPU path is eager)"})
            continue
        if not budget.allows(180 if variant.speed.cuda_graphs_sampling else 60):
            rows.append({**row, "note": "skipped: budget"})
            continue
        network = networks(variant)
        reset_memory(device)
        row["latency_b1_s"] = seconds_per_call(
            sample_fn(network, cfg, 1, variant, args), device, 1, plan["sample_repeats"]
        )
        big = plan["sample_batch"]
        compiled = variant.speed.cuda_graphs_sampling or variant.speed.compile  # a new shape compiles
        seconds = seconds_per_call(sample_fn(network, cfg, big, variant, args), device, int(compiled), 1)
        row.update(batch=big, img_per_s=big / seconds, peak_gib=peak_gib(device))
        rows.append(row)
        print(f"# sample {preset} {variant.name}: {row['latency_b1_s']:.3f} s at B=1", flush=True)


def random_text_encoder(device: torch.device) -> Callable[[int], dict]:
    """A MiniLM-L6-shaped encoder with random weights (6 layers, width 384): encode B prompts of
    TEXT_LENGTH token ids -> tokens, mask, mean-pooled. Tokenization is not timed."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        hidden_size=TEXT_DIM, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    )
    encoder = BertModel(config).to(device).eval()

    def encode(batch: int) -> dict:
        ids = torch.randint(0, config.vocab_size, (batch, TEXT_LENGTH), device=device)
        mask = torch.ones_like(ids, dtype=torch.bool)
        with torch.no_grad():
            tokens = encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # [B, L, D]
        return dict(text_tokens=tokens, text_mask=mask, text_pooled=tokens.mean(dim=1))

    return encode


def cascade(
    base_preset: str, args, budget: Budget, rows: list, base_networks, sr_networks, variants: list[Variant]
) -> None:
    """text -> base (64 px) -> sr (256 px) at batch 1, per variant: ms per stage and in all."""
    device, sr_preset = args.device, args.plan["sr"]
    encode = random_text_encoder(device)
    for variant in variants:
        row = dict(section="cascade", model=f"text->{base_preset}->{sr_preset}", variant=variant.name)
        if variant.speed.cuda_graphs_sampling and device.type != "cuda":
            rows.append({**row, "note": "CUDA only"})
            continue
        if not budget.allows(240 if variant.speed.cuda_graphs_sampling else 60):
            rows.append({**row, "note": "skipped: budget"})
            continue
        base, sr = base_networks(variant), sr_networks(variant)
        cascade_once(encode, base, sr, base_preset, sr_preset, variant, args)  # warm-up (and compilation)
        runs = [
            cascade_once(encode, base, sr, base_preset, sr_preset, variant, args)
            for _ in range(args.plan["sample_repeats"])
        ]
        times = {key: [run[key] for run in runs] for key in runs[0]}
        row.update({k: statistics.median(v) for k, v in times.items()})
        row["total_ms"] = row["text_ms"] + row["base_ms"] + row["sr_ms"]
        rows.append(row)
        print(f"# cascade {variant.name}: {row['total_ms']:.0f} ms", flush=True)


def cascade_once(encode, base, sr, base_preset: str, sr_preset: str, variant: Variant, args) -> dict:
    """One text -> base -> SR generation at batch 1: {"text_ms", "base_ms", "sr_ms"} wall times."""
    device, marks = args.device, [time.perf_counter()]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.bf16):
        text = encode(1)
    sync(device)
    marks.append(time.perf_counter())
    low = sample_fn(base, unet_config(base_preset), 1, variant, args, cond=text)()  # [1, 3, 64, 64]
    sync(device)
    marks.append(time.perf_counter())
    cond = {**text, "lowres": low, "aug_level": torch.full((1,), 200.0, device=device)}
    sample_fn(sr, unet_config(sr_preset), 1, variant, args, cond=cond)()  # [1, 3, 256, 256]
    sync(device)
    marks.append(time.perf_counter())
    return {f"{stage}_ms": 1000 * (b - a) for stage, a, b in zip(("text", "base", "sr"), marks, marks[1:])}


def gan(args, rows: list) -> None:
    """DF-GAN generator: ms per image at batch 1 and at a large batch, fp32 and bf16."""
    device, preset = args.device, args.plan["gan"]
    cfg = config_from_dict({"preset": preset}, GANConfig)
    torch.manual_seed(0)
    generator = Generator.from_config(cfg, TEXT_DIM).to(device).eval()
    for bf16 in (False, True):
        row = dict(section="gan", model=f"G:{preset}", variant="bf16" if bf16 else "fp32 eager")
        for batch in (1, args.plan["gan_batch"]):
            z = torch.randn(batch, cfg.z_dim, device=device)
            pooled = torch.randn(batch, TEXT_DIM, device=device)

            def run(z=z, pooled=pooled, bf16=bf16) -> None:
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    generator(z, pooled)

            seconds = seconds_per_call(run, device, 3, 5 * args.steps)
            row[f"ms_per_img_b{batch}" if batch == 1 else "ms_per_img_big"] = 1000 * seconds / batch
        row["batch"] = args.plan["gan_batch"]
        rows.append(row)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: list[dict], env: dict) -> str:
    rates = env["matmul_tflops"]
    out = [
        f"matmul on {env['device_name']}: bf16 {rates['bf16']:.4g} TFLOP/s, fp32 {rates['fp32']:.4g} TFLOP/s "
        f"(measured in this run); MFU is against {rates['peak']:.4g} TFLOP/s",
        "",
    ]
    sections = {
        "train": (
            "| model | variant | batch | img/s | GFLOPs/img (fwd+bwd) | MFU | peak GiB | note |",
            lambda r: [
                r["model"],
                r["variant"],
                r.get("batch"),
                _fmt(r.get("img_per_s"), ".1f"),
                _fmt(r.get("gflops_per_img"), ".1f"),
                _fmt(r.get("mfu"), ".1%"),
                _fmt(r.get("peak_gib"), ".1f"),
                r.get("note", ""),
            ],
        ),
        "syncs": (
            "| model | training step | host-device syncs per step |",
            lambda r: [r["model"], r["variant"], r["syncs_per_step"]],
        ),
        "baselines": (
            "| model | params (M) | batch | train img/s (bf16) | GFLOPs/img | MFU | peak GiB | "
            "fwd ms B=1 | note |",
            lambda r: [
                r["model"],
                _fmt(r.get("params_m"), ".1f"),
                r.get("batch"),
                _fmt(r.get("img_per_s"), ".1f"),
                _fmt(r.get("gflops_per_img"), ".1f"),
                _fmt(r.get("mfu"), ".1%"),
                _fmt(r.get("peak_gib"), ".1f"),
                _fmt(r.get("fwd_ms_b1"), ".1f"),
                r.get("note", ""),
            ],
        ),
        "sample": (
            "| model | variant | steps | latency B=1 (s) | batch | img/s | peak GiB | note |",
            lambda r: [
                r["model"],
                r["variant"],
                r.get("steps"),
                _fmt(r.get("latency_b1_s"), ".3f"),
                r.get("batch"),
                _fmt(r.get("img_per_s"), ".2f"),
                _fmt(r.get("peak_gib"), ".1f"),
                r.get("note", ""),
            ],
        ),
        "cascade": (
            "| cascade (B=1) | variant | text ms | base ms | SR ms | total ms | note |",
            lambda r: [
                r["model"],
                r["variant"],
                _fmt(r.get("text_ms"), ".1f"),
                _fmt(r.get("base_ms"), ".0f"),
                _fmt(r.get("sr_ms"), ".0f"),
                _fmt(r.get("total_ms"), ".0f"),
                r.get("note", ""),
            ],
        ),
        "errors": ("| section | error |", lambda r: [r["model"], r["note"]]),
        "gan": (
            "| generator | variant | ms/img B=1 | ms/img at batch | batch |",
            lambda r: [
                r["model"],
                r["variant"],
                _fmt(r.get("ms_per_img_b1"), ".2f"),
                _fmt(r.get("ms_per_img_big"), ".3f"),
                r.get("batch"),
            ],
        ),
    }
    for name, (header, cells) in sections.items():
        chosen = [r for r in rows if r["section"] == name]
        if not chosen:
            continue
        columns = header.count("|") - 1
        out += [header, "|" + " --- |" * columns]
        out += ["| " + " | ".join("" if c is None else str(c) for c in cells(r)) + " |" for r in chosen]
        out.append("")
    out += speedup_lines(rows)
    return "\n".join(out)


def speedup_lines(rows: list[dict]) -> list[str]:
    """Each training variant's images/s over fp32 eager's, per model (ratios from this run)."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows if r["section"] == "train"):
        mine = {
            r["variant"]: r.get("img_per_s") for r in rows if r["section"] == "train" and r["model"] == model
        }
        reference = mine.get("fp32 eager")
        if reference:
            parts = [f"{v}: {s / reference:.2f}x" for v, s in mine.items() if s and v != "fp32 eager"]
            lines.append(f"- {model} training speed-up over fp32 eager: " + "; ".join(parts))
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny presets and a few steps (a CPU dry run)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="stop starting new work after this")
    parser.add_argument(
        "--sections", nargs="+", default=["train", "syncs", "baselines", "sample", "cascade", "gan"]
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (written after each section)")
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    args.device = torch.device(args.device)
    args.plan = QUICK if args.quick else FULL
    args.warmup, args.steps = args.plan["warmup"], args.plan["steps"]
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(args.budget_s)
    rates = mfu_peak(args.device, args.quick)
    args.peak_tflops = rates["peak"]
    name = torch.cuda.get_device_name() if args.device.type == "cuda" else (platform.processor() or "cpu")
    env = dict(
        torch=torch.__version__,
        device=str(args.device),
        device_name=name,
        quick=args.quick,
        threads=torch.get_num_threads(),
        matmul_tflops=rates,
        budget_s=args.budget_s,
    )
    print(f"# throughput: {env}", flush=True)
    rows: list[dict] = []

    def save() -> None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(dict(env=env, rows=rows), indent=2, default=str))

    first, others, sr = args.plan["base"][0], args.plan["base"][1:], args.plan["sr"]
    cache: dict[str, Callable] = {}

    def nets(preset: str) -> Callable:
        if preset not in cache:
            cache[preset] = sampling_networks(preset, args.device)
        return cache[preset]

    eager, graphs = SAMPLE_VARIANTS[:-1], SAMPLE_VARIANTS[-1:]
    # most important first: the budget skips what comes last (CUDA-graph captures compile per shape)
    steps = [
        ("train", lambda: train_preset(first, args, budget, rows)),
        ("syncs", lambda: sync_audit(first, args, rows) if args.device.type == "cuda" else None),
        ("train", lambda: train_preset(sr, args, budget, rows)),
        *[("train", lambda p=p: train_preset(p, args, budget, rows)) for p in others],
        ("baselines", lambda: baselines(first, args, budget, rows)),
        *[("sample", lambda p=p: sampling(p, args, budget, rows, nets(p), eager)) for p in [first, *others]],
        ("cascade", lambda: cascade(first, args, budget, rows, nets(first), nets(sr), eager)),
        ("gan", lambda: gan(args, rows)),
        ("sample", lambda: sampling(first, args, budget, rows, nets(first), graphs)),
        ("cascade", lambda: cascade(first, args, budget, rows, nets(first), nets(sr), graphs)),
    ]
    for section, run in steps:
        if section not in args.sections:
            continue
        try:
            run()
        except Exception as error:  # one broken section must not cost the rest of a GPU lease
            traceback.print_exc()
            rows.append(dict(section="errors", model=section, note=f"{type(error).__name__}: {error}"[:300]))
        save()
    print(markdown(rows, env))
    return rows


if __name__ == "__main__":
    main()

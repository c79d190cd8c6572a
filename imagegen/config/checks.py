"""Value checks: a config that would train nonsense, or build an absurd network, fails here.

`validate` is the one semantic check of a config: every value range here, then the rules of
super-resolution stages and cascades (`imagegen.config.stages`). It runs once on every config built
from plain data (`config_from_dict`, so every YAML file and every run folder's config when it is
loaded); `check_trainable` adds what only training needs and, for configs changed in code after
loading, runs `validate` again at the trainer's door. No torch import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagegen.config.sections import ConfigError, RunConfig, UNetConfig
from imagegen.config.stages import check_run_config

MAX_GUIDANCE_SCALE = 100.0  # larger scales only saturate every pixel
MAX_PARAMETERS = 4_000_000_000  # a rough count above this is a tampered or mistyped config
_INF = float("inf")

_RANGES: dict[str, dict[str, tuple[float, float]]] = {  # section -> field -> inclusive [low, high]
    "train": {
        "batch_size": (1, 65_536),
        "grad_accum_steps": (1, 4096),
        "max_steps": (1, 10**10),
        "log_every": (1, _INF),
        "checkpoint_every": (0, _INF),
        "sample_every": (0, _INF),
        "keep_last": (0, _INF),
        "max_bad_steps": (1, _INF),
        "warmup_steps": (0, _INF),
        "max_minutes": (0, 10**7),
        "grad_clip": (0, 10**6),
        "lr": (1e-12, 10),
        "weight_decay": (0, 10),
        "ema_max_decay": (0, 1),
        "ema_inv_gamma": (1e-12, 10**6),
        "ema_power": (0, 10),
    },
    "data": {"resolution": (1, 4096), "length": (1, 10**10), "num_workers": (0, 256)},
    "text": {"max_length": (1, 4096), "batch_size": (1, 65_536)},
    "diffusion": {
        "num_timesteps": (1, 100_000),
        "cond_drop_prob": (0, 1),
        "min_snr_gamma": (1e-6, 10**6),
        "noise_offset": (0, 1),
        "timestep_mean": (-10, 10),
        "timestep_std": (1e-3, 10),
    },
    "sample": {
        "num_steps": (1, 10_000),
        "guidance_scale": (0, MAX_GUIDANCE_SCALE),
        "threshold_percentile": (0.5, 1),
        "aug_level": (0, 1),
    },
    "noise_aug": {"max_level": (0, 1)},
    "model": {
        "image_size": (1, 4096),
        "in_channels": (1, 64),
        "out_channels": (1, 64),
        "head_dim": (1, 1024),
        "text_dim": (1, 16_384),
        "cond_dim": (1, 16_384),
        "dropout": (0, 1),
        "image_embed_dim": (0, 16_384),
    },
    "unclip": {"image_embed_drop_prob": (0, 1)},
    "prior": {
        "layers": (1, 128),
        "heads": (1, 1024),
        "head_dim": (1, 1024),
        "dropout": (0, 1),
        "num_candidates": (1, 64),
    },
    "gan": {
        "image_size": (8, 1024),
        "z_dim": (1, 4096),
        "lr_g": (1e-12, 10),
        "lr_d": (1e-12, 10),
        "ema_decay": (0, 1),
        "truncation": (1e-6, 10**6),
        "mismatch_weight": (0, 10**6),
        "ma_gp_weight": (0, 10**6),
        "ma_gp_power": (0, 100),
        "r1_weight": (0, 10**6),
        "contrastive_weight": (0, 10**6),
    },
    "clip": {
        "image_size": (1, 4096),
        "patch_size": (1, 4096),
        "vision_width": (1, 16_384),
        "vision_layers": (1, 128),
        "vision_heads": (1, 1024),
        "text_width": (1, 16_384),
        "text_layers": (1, 128),
        "text_heads": (1, 1024),
        "max_length": (2, 4096),  # at least a start and an end-of-text token
        "embed_dim": (1, 16_384),
        # 1 / tau <= 100 is the logit_scale clamp (ln 100): a smaller tau would start clamped
        "init_temperature": (0.01, 100),
    },
}
CLIP_DUPLICATES = ("mask", "none")
CLIP_STEMS = ("patch", "conv")
CLIP_TOKEN_INITS = ("random", "minilm")
_LIST_ITEMS = {  # section -> per-level list field -> inclusive [low, high] of each entry
    "model": {"channels": (1, 8192), "num_res_blocks": (0, 32)},
    "gan": {"gen_channels": (1, 8192), "disc_channels": (1, 8192)},
}
MAX_LEVELS = 10


def check_range(argument: str, value: Any, low: float, high: float) -> None:
    """Raise ConfigError naming `argument` unless `value` is a finite number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{argument}: expected a number in [{low:g}, {high:g}], got {value!r}")


def _check_section(name: str, section: Any, label: str = "") -> None:
    """Check one section against the `name` tables; errors say `label` (default `name`)."""
    label = label or name
    for key, (low, high) in _RANGES.get(name, {}).items():
        check_range(f"{label}.{key}", getattr(section, key), low, high)
    for key, (low, high) in _LIST_ITEMS.get(name, {}).items():
        values = getattr(section, key)
        if not 1 <= len(values) <= MAX_LEVELS:
            raise ConfigError(f"{label}.{key}: expected 1 to {MAX_LEVELS} levels, got {len(values)}")
        for i, value in enumerate(values):
            check_range(f"{label}.{key}[{i}]", value, low, high)


def _check_model_size(name: str, model: UNetConfig) -> None:
    """Rough U-Net size (two 3x3 convolutions per res block) against MAX_PARAMETERS."""
    levels = zip(model.channels, model.num_res_blocks)
    estimate = sum(18 * channels**2 * (blocks + 1) for channels, blocks in levels)
    if estimate > MAX_PARAMETERS:
        raise ConfigError(
            f"{name}.channels / num_res_blocks: about {estimate:.2e} parameters, over the "
            f"{MAX_PARAMETERS:.0e} this package builds"
        )


def _check_run_name(run_name: str) -> None:
    if run_name and (Path(run_name).name != run_name or run_name in (".", "..") or "\\" in run_name):
        raise ConfigError(
            f"train.run_name: {run_name!r} must be a plain folder name (no '/', '\\' or '..'): "
            "runs are written under train.output_dir"
        )


def _check_clip(cfg: RunConfig) -> None:
    """The CLIP's shape rules: whole patches, whole heads, a known duplicate-caption rule."""
    clip = cfg.clip
    if clip.image_size % clip.patch_size:
        raise ConfigError(
            f"clip.patch_size: {clip.patch_size} does not divide clip.image_size {clip.image_size} "
            "(the ViT cuts the image into whole patches)"
        )
    for tower in ("vision", "text"):
        width, heads = getattr(clip, f"{tower}_width"), getattr(clip, f"{tower}_heads")
        if width % heads:
            raise ConfigError(f"clip.{tower}_heads: {heads} heads do not divide clip.{tower}_width {width}")
    if clip.stem not in CLIP_STEMS:
        raise ConfigError(f"clip.stem: {clip.stem!r} is unknown; allowed: {', '.join(CLIP_STEMS)}")
    if clip.stem == "conv" and clip.patch_size & (clip.patch_size - 1):
        raise ConfigError(
            f"clip.patch_size: a conv stem halves down to it, so a power of 2; got {clip.patch_size}"
        )
    if clip.token_init not in CLIP_TOKEN_INITS:
        raise ConfigError(
            f"clip.token_init: {clip.token_init!r} is unknown; allowed: {', '.join(CLIP_TOKEN_INITS)}"
        )
    if clip.duplicates not in CLIP_DUPLICATES:
        raise ConfigError(
            f"clip.duplicates: {clip.duplicates!r} is unknown; allowed: {', '.join(CLIP_DUPLICATES)}"
        )


def _check_clip_trainable(cfg: RunConfig) -> None:
    if cfg.clip.image_size != cfg.data.resolution:
        raise ConfigError(
            f"clip.image_size is {cfg.clip.image_size} but data.resolution is {cfg.data.resolution}; "
            "they must match (the CLIP trains on the data at its own resolution)"
        )
    if cfg.train.sample_every:
        raise ConfigError(
            f"train.sample_every is {cfg.train.sample_every}, but train.objective clip draws no "
            "images: set train.sample_every=0"
        )


def _check_unclip(cfg: RunConfig) -> None:
    """A prior samples embeddings (no pixel thresholding); a decoder is built for a CLIP embedding."""
    objective = cfg.train.objective
    if objective == "prior" and cfg.sample.thresholding != "none":
        raise ConfigError(
            f"sample.thresholding is {cfg.sample.thresholding!r}, but a prior samples CLIP embeddings, "
            "not pixels: set sample.thresholding=none"
        )
    if objective == "decoder" and not cfg.model.image_embed_dim:
        raise ConfigError(
            "model.image_embed_dim is 0, but an unCLIP decoder is conditioned on a CLIP image "
            "embedding: set it to the CLIP's embed_dim"
        )
    if cfg.model.image_embed_dim and objective in ("diffusion", "cascade"):
        raise ConfigError(
            f"model.image_embed_dim is {cfg.model.image_embed_dim}, but only train.objective decoder "
            "conditions a U-Net on a CLIP image embedding: set it to 0"
        )


def _check_unclip_trainable(cfg: RunConfig) -> None:
    """Prior and decoder runs name their CLIP; a prior reads captions through that same CLIP."""
    objective = cfg.train.objective
    if not cfg.unclip.clip:
        raise ConfigError(
            f"unclip.clip is empty, but train.objective {objective} needs the trained CLIP: a CLIP "
            "run's checkpoint-N/ema/clip folder (docs/unclip.md)"
        )
    clip = Path(cfg.unclip.clip).expanduser().resolve()
    same = cfg.text.name_or_path and Path(cfg.text.name_or_path).expanduser().resolve() == clip
    if objective == "prior" and (cfg.text.encoder != "clip" or not same):
        raise ConfigError(
            f"text.encoder is {cfg.text.encoder!r} with name_or_path {cfg.text.name_or_path!r}, but a "
            f"prior reads captions through its CLIP: set text.encoder=clip and "
            f"text.name_or_path={cfg.unclip.clip} (the unclip.clip folder)"
        )
    if objective == "decoder" and cfg.data.resolution != cfg.model.image_size:
        raise ConfigError(
            f"data.resolution is {cfg.data.resolution} but model.image_size is {cfg.model.image_size} "
            "(resolution mismatch): a decoder trains at its model's size"
        )


def validate(cfg: RunConfig) -> RunConfig:
    """Check every value against the ranges that train or generate something meaningful, then the
    super-resolution and cascade rules (ValueError naming the key); returns cfg."""
    for name in _RANGES:
        _check_section(name, getattr(cfg, name))
    _check_model_size("model", cfg.model)
    for i, stage in enumerate(cfg.cascade.stages):
        for name in ("model", "sample", "noise_aug"):
            _check_section(name, getattr(stage, name), f"cascade.stages[{i}].{name}")
        _check_model_size(f"cascade.stages[{i}].model", stage.model)
    _check_clip(cfg)
    _check_unclip(cfg)
    _check_run_name(cfg.train.run_name)
    check_run_config(cfg)
    return cfg


def check_trainable(cfg: RunConfig) -> RunConfig:
    """Checks that only training needs (a finished run that fails them still generates): a
    diffusion base stage, a GAN and a CLIP train at their model's size; a prior and a decoder name
    the CLIP they are tied to."""
    base_stage = cfg.train.objective == "diffusion" and not cfg.model.lowres_cond
    if base_stage and cfg.data.resolution != cfg.model.image_size:
        raise ConfigError(
            f"data.resolution is {cfg.data.resolution} but model.image_size is {cfg.model.image_size} "
            "(resolution mismatch): a diffusion base stage trains at its model's size"
        )
    if cfg.train.objective == "gan" and cfg.gan.image_size != cfg.data.resolution:
        raise ConfigError(
            f"gan.image_size is {cfg.gan.image_size} but data.resolution is {cfg.data.resolution}; "
            "they must match (the GAN trains on the data at its own resolution)"
        )
    if cfg.train.objective == "clip":
        _check_clip_trainable(cfg)
    if cfg.train.objective in ("prior", "decoder"):
        _check_unclip_trainable(cfg)
    return validate(cfg)

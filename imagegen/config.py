"""Typed run configuration: nested dataclasses, strict YAML loading, dotted overrides.

Owns the schema of every `configs/*.yaml` file. No torch import here: loading a config must be
instant and must fail on a misspelt key before any model is built.

    cfg = load_config("configs/shapes-cpu.yaml", overrides=["train.lr=1e-4"])
    save_config(cfg, run_dir / "config.yaml")

A section may name a `preset` (see `imagegen/presets.py`); its fields are filled from the preset
table first, then the keys written beside it override them.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    kind: str = "shapes"  # "shapes" (rendered on the fly) | "folder" (captioned image folder)
    resolution: int = 32  # square side in pixels of the images the stage trains on
    seed: int = 0  # shapes: scene i of seed s is always the same scene
    length: int = 20_000  # shapes: samples per epoch (indices 0..length-1)
    scene_kinds: list[str] = field(default_factory=lambda: ["single", "counting", "relation", "list"])
    scene_weights: list[float] = field(default_factory=lambda: [0.4, 0.2, 0.2, 0.2])
    exclude: list[list[str]] = field(default_factory=list)  # (color, shape) pairs never rendered
    path: str = ""  # folder: root holding images + metadata.jsonl / captions.csv / .txt sidecars
    caption_column: str = ""  # folder: caption column/key ("" = auto: text, caption, label)
    image_dir: str = ""  # folder: subfolder the file names are relative to ("" = auto)
    background: str = "white"  # folder: colour RGBA images are composited on (name or #rrggbb)
    hflip: bool = False  # random horizontal flips; off because they break "to the left of"
    num_workers: int = 0  # DataLoader worker processes


@dataclass
class TextConfig:
    encoder: str = "minilm"  # "minilm" (bundled, default) | "t5" | "clip"
    name_or_path: str = ""  # HF name or local folder; "" = the bundled MiniLM folder
    max_length: int = 32  # tokens kept per prompt (longer prompts are truncated, with a warning)
    cache_dir: str = "runs/text-cache"  # embedding cache root (safetensors shards)
    cache_dtype: str = "float16"  # dtype of cached token embeddings: "float16" | "float32"
    batch_size: int = 256  # prompts per encoder forward when filling the cache


@dataclass
class UNetConfig:
    preset: str = ""  # name in presets.UNET_PRESETS; fields below override it
    image_size: int = 32  # side of x_t the model is built for (self-attention levels depend on it)
    in_channels: int = 3
    out_channels: int = 3
    channels: list[int] = field(default_factory=lambda: [64, 128])  # per level
    num_res_blocks: list[int] = field(default_factory=lambda: [1, 2])  # per level (more at low res)
    self_attn: list[bool] = field(default_factory=lambda: [False, True])  # per level
    cross_attn: list[bool] = field(default_factory=lambda: [False, True])  # per level
    head_dim: int = 32  # attention head width
    text_dim: int = 384  # width of the text encoder's token embeddings (checked at build time)
    cond_dim: int = 256  # width of time / pooled-text embeddings and projected text tokens
    dropout: float = 0.0
    lowres_cond: bool = False  # super-resolution stage: concat upsampled low-res image + aug level


@dataclass
class DiffusionConfig:
    schedule: str = "cosine"  # "cosine" (squaredcos_cap_v2) | "linear"
    num_timesteps: int = 1000
    prediction: str = "v"  # network target: "eps" | "v" | "x0"
    loss_weighting: str = "min_snr"  # "none" | "min_snr"
    min_snr_gamma: float = 5.0
    # offset noise (Guttenberg 2023; diffusers' --noise_offset): training noise gets a per-image,
    # per-channel constant N(0, noise_offset^2) added, so the model learns to move an image's mean
    # (its background) rather than keep the mean the initial noise implies; 0 = off
    noise_offset: float = 0.0
    cond_drop_prob: float = 0.1  # probability a caption is replaced by the null prompt ""


@dataclass
class SampleConfig:
    sampler: str = "dpmpp_2m"  # "ddpm" | "ddim" | "dpmpp_2m" | "dpmpp_2m_sde" | "unipc"
    num_steps: int = 25
    guidance_scale: float = 5.0
    thresholding: str = "dynamic"  # "dynamic" | "static" | "none"
    threshold_percentile: float = 0.995
    # super-resolution: noise level of the low-res input at sampling time, a fraction of
    # num_timesteps (0.2 = timestep 200 of 1000; DeepFloyd IF uses 250 of 1000); 0 = clean input
    aug_level: float = 0.2


@dataclass
class NoiseAugConfig:
    # Noise conditioning augmentation of a super-resolution stage's low-res input (Imagen §2.5):
    # training noises it with q_sample at a level ~ U[0, max_level] (a fraction of num_timesteps)
    # and gives the level to the model; sampling uses sample.aug_level
    max_level: float = 0.5
    enabled: bool = True  # false: the low-res input is always clean and its level 0 (ablation)


@dataclass
class SuperResConfig:
    """Where a super-resolution stage's low-res input comes from in training (read when
    model.lowres_cond is true)."""

    lowres_size: int = 0  # side h = w of the low-res input: the previous stage's resolution
    lowres_source: str = "downsample"  # "downsample" the training image | "render" (Shapes: the scene at h)
    downsample: str = "area"  # "area" (box average) | "bicubic" (antialiased bicubic)
    random_crop: int = 0  # >0: train on random crops of this side; sampling runs at full size (Imagen App. B)


@dataclass
class GANConfig:
    preset: str = ""  # name in presets.GAN_PRESETS; fields below override it
    image_size: int = 32  # side of the generated images (a power of 2 >= 8)
    z_dim: int = 100  # noise width (DF-GAN: 100)
    gen_channels: list[int] = field(default_factory=lambda: [256, 256, 128, 64])  # per res., 4x4 first
    disc_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 256])  # per res., 4x4 last
    loss: str = "hinge"  # "hinge" (DF-GAN) | "nonsaturating" (the documents' objective)
    mismatch_weight: float = 1.0  # w: L_D = L_real + (L_fake + w * L_mismatch) / (1 + w); 0 = off
    ma_gp_weight: float = 2.0  # DF-GAN MA-GP: weight * mean(||grad_(x, text) D||^power); 0 = off
    ma_gp_power: float = 6.0
    r1_weight: float = 0.0  # R1 gamma: gamma / 2 * mean(||grad_x D||^2) on real pairs; 0 = off
    contrastive_weight: float = 0.0  # XMC-GAN sentence-image contrastive term in L_D and L_G; 0 = off
    output: str = "tanh"  # generator output: "tanh" (DF-GAN) | "linear" (StyleGAN; clamped when sampling)
    disc_head: str = "concat"  # "concat" (DF-GAN) | "projection" (Miyato & Koyama 2018: logit += <V e, h>)
    diffaugment: str = ""  # DiffAugment on every D input, e.g. "color,translation,cutout"; "" = off
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.9])
    ema_decay: float = 0.999  # EMA of G (sampled from)
    truncation: float = 4.0  # sampling: z ~ N(0, I) truncated to |z_i| <= truncation; >= 4 = untruncated


@dataclass
class TrainConfig:
    objective: str = "diffusion"  # "diffusion" | "gan" | "cascade" (every cascade.stages network jointly)
    batch_size: int = 32  # per process
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "cosine"  # "cosine" | "constant" (after warm-up)
    max_steps: int = 1000
    max_minutes: float = 0.0  # wall-clock stop; 0 = none
    grad_accum_steps: int = 1
    grad_clip: float = 1.0
    # "auto" (bf16 where the CPU/GPU computes it natively, else fp32: imagegen.nn.precision) |
    # "no" | "bf16" | "fp16"
    mixed_precision: str = "auto"
    ema_max_decay: float = 0.999
    ema_inv_gamma: float = 1.0
    ema_power: float = 0.75
    checkpoint_every: int = 500
    keep_last: int = 2
    sample_every: int = 500
    log_every: int = 10
    max_bad_steps: int = 10  # consecutive NaN/inf losses before the run stops
    seed: int = 0
    output_dir: str = "runs"
    run_name: str = ""  # "" = <config name>-<timestamp>
    sample_prompts: list[str] = field(
        default_factory=lambda: [
            "a red circle",
            "a blue square",
            "a green triangle",
            "a yellow star",
            "a purple diamond",
            "an orange cross",
            "a red circle above a blue square",
            "three pink circles",
        ]
    )


@dataclass
class SpeedConfig:
    """Fast paths (docs/performance.md). Every default is the plain eager fp32 path; bf16 is
    train.mixed_precision. Read by imagegen.training.fast and imagegen.pipelines.fast_sampling."""

    channels_last: bool = False  # NHWC conv weights, so activations too (faster on GPUs; slower on this CPU)
    compile: bool = False  # torch.compile the denoiser's forward (training and sampling)
    # "default" | "max-autotune-no-cudagraphs" | "reduce-overhead" | "max-autotune" (inductor only)
    compile_mode: str = "default"
    compile_backend: str = "inductor"  # "inductor" | "aot_eager" (traces without code generation: debugging)
    activation_checkpointing: bool = False  # recompute U-Net levels in backward: less memory, +1 forward
    attention_backend: str = "auto"  # "auto" (torch picks) | "flash" | "efficient" | "cudnn" | "math"
    cuda_graphs_sampling: bool = False  # CUDA sampling: denoiser replayed as a CUDA graph ("reduce-overhead")
    fused_adamw: bool = True  # CUDA: one fused AdamW kernel per step; false = torch's foreach AdamW
    sync_free_step: bool = False  # NaN/inf guard with no host sync per step (fused AdamW's found_inf)


@dataclass
class StageConfig:
    """One stage of a cascade trained in one run (`cascade.stages`): these sections replace the run's."""

    stage: str = "base32"  # the stage's name: its folder, its phase and its EMA in the run
    model: UNetConfig = field(default_factory=UNetConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    noise_aug: NoiseAugConfig = field(default_factory=NoiseAugConfig)
    superres: SuperResConfig = field(default_factory=SuperResConfig)
    lr: float = 0.0  # this stage's optimizer; 0 = train.lr


@dataclass
class CascadeConfig:
    # train.objective "cascade": the stages, lowest resolution first, one optimizer and one EMA
    # each; data.resolution is the last stage's, lower stages see it downsampled (or re-rendered)
    stages: list[StageConfig] = field(default_factory=list)


@dataclass
class RunConfig:
    name: str = "run"
    stage: str = "base32"  # base32 | sr64 | sr128 | base64 | sr256 | sr1024 (a joint run: "cascade")
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    noise_aug: NoiseAugConfig = field(default_factory=NoiseAugConfig)
    superres: SuperResConfig = field(default_factory=SuperResConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)


def stage_run_config(cfg: RunConfig, stage: StageConfig) -> RunConfig:
    """The single-stage config of one stage of a joint run: what its cascade stage folder holds,
    and what it would have been trained with as a run of its own."""
    cfg, stage = copy.deepcopy(cfg), copy.deepcopy(stage)
    return dataclasses.replace(
        cfg,
        stage=stage.stage,
        data=dataclasses.replace(cfg.data, resolution=stage.model.image_size),
        model=stage.model,
        sample=stage.sample,
        noise_aug=stage.noise_aug,
        superres=stage.superres,
        train=dataclasses.replace(cfg.train, objective="diffusion", lr=stage.lr or cfg.train.lr),
        cascade=CascadeConfig(),
    )


def stage_sample_config(cfg: RunConfig) -> SampleConfig:
    """How a single-stage diffusion run samples, in a cascade folder or on its own: its `sample`
    section, with aug_level 0 when it is no super-resolution stage or never trained on noisy
    low-res inputs (noise_aug.enabled false): such a stage is sampled with a clean input."""
    noisy = cfg.superres.lowres_size > 0 and cfg.noise_aug.enabled
    return dataclasses.replace(cfg.sample, aug_level=cfg.sample.aug_level if noisy else 0.0)


# --------------------------------------------------------------------------------------------
# Strict construction from plain data
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting int->float; raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" as a string
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def _resolve_preset(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """Fill a section from its named preset; explicit keys win."""
    name = data.get("preset")
    if not name:
        return data
    from imagegen import presets

    table = presets.PRESET_TABLES.get(cls.__name__)
    if table is None:
        raise ConfigError(f"{where}.preset: section {cls.__name__} has no presets")
    if name not in table:
        raise ConfigError(f"{where}.preset: unknown preset {name!r}; valid presets: {sorted(table)}")
    return {**table[name], **data}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    data = _resolve_preset(cls, data, where)
    for key in data:
        if key not in valid:
            full = f"{where}.{key}" if where else key
            raise ConfigError(f"unknown config key '{full}'; valid keys: {', '.join(valid)}")
    kwargs = {
        key: _coerce(value, hints[key], f"{where}.{key}" if where else key) for key, value in data.items()
    }
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any] | None, cls: type = RunConfig) -> Any:
    """Build a config dataclass from nested plain data; unknown keys and, for a RunConfig, values
    out of range (`validate_config`) are ConfigErrors."""
    cfg = _build(cls, dict(data or {}), "")
    return validate_config(cfg) if cls is RunConfig else cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------------------------
# Value checks: a config that would train nonsense, or build an absurd network, fails here
# --------------------------------------------------------------------------------------------

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
}
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


def validate_config(cfg: RunConfig) -> RunConfig:
    """Check every value against the ranges that train or generate something meaningful."""
    for name in _RANGES:
        _check_section(name, getattr(cfg, name))
    _check_model_size("model", cfg.model)
    for i, stage in enumerate(cfg.cascade.stages):
        for name in ("model", "sample", "noise_aug"):
            _check_section(name, getattr(stage, name), f"cascade.stages[{i}].{name}")
        _check_model_size(f"cascade.stages[{i}].model", stage.model)
    _check_run_name(cfg.train.run_name)
    return cfg


def check_trainable(cfg: RunConfig) -> RunConfig:
    """Checks that only training needs (a finished run that fails them still generates): a
    diffusion base stage trains at its model's size."""
    base_stage = cfg.train.objective == "diffusion" and not cfg.model.lowres_cond
    if base_stage and cfg.data.resolution != cfg.model.image_size:
        raise ConfigError(
            f"data.resolution is {cfg.data.resolution} but model.image_size is {cfg.model.image_size} "
            "(resolution mismatch): a diffusion base stage trains at its model's size"
        )
    return validate_config(cfg)


# --------------------------------------------------------------------------------------------
# Files and overrides
# --------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"train.lr=1e-4"` -> (["train", "lr"], 1e-4); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        return path, yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in nested plain data (validated later by config_from_dict)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def _read_yaml(path: Path) -> Any:
    """A YAML file's content; ConfigError naming the file when it is not UTF-8 or not YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(error, 'problem', error)}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = _read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = loaded or {}
        data.setdefault("name", path.stem)
    return config_from_dict(apply_overrides(data, list(overrides)))


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(dump_config(cfg))

"""Typed run configuration: nested dataclasses, strict YAML loading, dotted overrides.

Owns the schema of every `configs/*.yaml` file. No torch import here: loading a config must be
instant and must fail on a misspelt key before any model is built.

    cfg = load_config("configs/shapes-cpu.yaml", overrides=["train.lr=1e-4"])
    save_config(cfg, run_dir / "config.yaml")

sections.py  the dataclasses (one per YAML section), ConfigError, stage_run_config, stage_sample_config
checks.py    validate (value ranges, then stages.py's rules; run once on every load), check_trainable
stages.py    super-resolution and cascade rules, the stage chain shared with cascade manifests
loading.py   strict construction from plain data, presets, overrides, YAML files

A section may name a `preset` (see `imagegen/presets.py`); its fields are filled from the preset
table first, then the keys written beside it override them.
"""

from imagegen.config.checks import (
    MAX_GUIDANCE_SCALE,
    MAX_LEVELS,
    MAX_PARAMETERS,
    check_range,
    check_trainable,
    validate,
)
from imagegen.config.loading import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
    read_saved_config,
    save_config,
)
from imagegen.config.sections import (
    CascadeConfig,
    ClipConfig,
    ConfigError,
    DataConfig,
    DiffusionConfig,
    GANConfig,
    NoiseAugConfig,
    PriorConfig,
    RunConfig,
    SampleConfig,
    SpeedConfig,
    StageConfig,
    SuperResConfig,
    TextConfig,
    TrainConfig,
    UnclipConfig,
    UNetConfig,
    stage_run_config,
    stage_sample_config,
)

__all__ = [
    "MAX_GUIDANCE_SCALE",
    "MAX_LEVELS",
    "MAX_PARAMETERS",
    "CascadeConfig",
    "ClipConfig",
    "ConfigError",
    "DataConfig",
    "DiffusionConfig",
    "GANConfig",
    "NoiseAugConfig",
    "PriorConfig",
    "RunConfig",
    "SampleConfig",
    "SpeedConfig",
    "StageConfig",
    "SuperResConfig",
    "TextConfig",
    "TrainConfig",
    "UNetConfig",
    "UnclipConfig",
    "apply_overrides",
    "check_range",
    "check_trainable",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "parse_override",
    "read_saved_config",
    "save_config",
    "stage_run_config",
    "stage_sample_config",
    "validate",
]

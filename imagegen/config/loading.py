"""Strict construction from plain data, dotted overrides, and YAML files.

    cfg = load_config("configs/shapes-cpu.yaml", overrides=["train.lr=1e-4"])
    save_config(cfg, run_dir / "config.yaml")

A section may name a `preset` (see `imagegen/presets.py`); its fields are filled from the preset
table first, then the keys written beside it override them. Unknown keys name the valid ones.
No torch import.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from imagegen.config.checks import validate
from imagegen.config.sections import ConfigError, RunConfig


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
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{where}: a {value.bit_length()}-bit integer is beyond float range") from None
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
    out of range are ConfigErrors, broken stage / cascade rules ValueErrors (`validate`, once)."""
    cfg = _build(cls, dict(data or {}), "")
    return validate(cfg) if cls is RunConfig else cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


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


def read_saved_config(path: str | Path) -> RunConfig:
    """The config a run saved (a checkpoint's or a cascade stage's config.yaml), as written: no
    overrides, no name default. ConfigError naming the file when it is unreadable or invalid."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    try:
        return config_from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(dump_config(cfg))

"""Strict typed loading of a run config: YAML and ``key=value`` overrides -> :class:`RunConfig`."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError
from .keys import unknown_key
from .packaged import config_path
from .schema import RunConfig
from .validate import validate


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return f"a mapping ({tp.__name__})"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _show(value: Any) -> str:
    text = repr(value)
    return (text[:60] + "...") if len(text) > 63 else text


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (dicts -> dataclasses, lists -> tuples)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"config key '{path}' may not be null (expected {_describe(tp)})")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, path)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"config key '{path}': expected {_describe(tp)}, got {_show(value)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise ConfigError(
            f"config key '{path}': expected one of {', '.join(repr(a) for a in allowed)}, got {_show(value)}"
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping of {tp.__name__} fields, got {_show(value)}")
        return _build_dataclass(tp, value, path)
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}': expected {_describe(tp)}, got {_show(value)}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key '{path}': expected {_describe(tp)}, got {_show(value)}")
            return tuple(_convert(v, a, f"{path}.{i}") for i, (v, a) in enumerate(zip(value, args, strict=False)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{path}.{i}") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping, got {_show(value)}")
        ktp, vtp = typing.get_args(tp) or (str, Any)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"config key '{path}': keys must be strings, got {_show(k)}")
            out[k] = _convert(v, vtp, f"{path}.{k}")
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema uses only the types above
        raise TypeError(f"unsupported annotation {tp!r} at {path}")
    raise ConfigError(f"config key '{path}': expected {_describe(tp)}, got {_show(value)} ({type(value).__name__})")


def _build_dataclass(cls: type, values: dict, path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise unknown_key(str(key), path, list(fields))
        kwargs[key] = _convert(value, hints[key], f"{path}.{key}" if path else key)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config key '{path + '.' if path else ''}{name}' is required")
    return cls(**kwargs)


# ================================================================================================ overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=2e-4"`` -> (["optim", "lr"], 2e-4); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not of the form dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({e})") from None
    return key.split("."), value


def apply_override(data: dict, parts: list[str], value: Any) -> None:
    """Set ``data[parts[0]][parts[1]]... = value``; numeric parts index lists; missing mappings are created
    (unknown keys are reported by validation with their full dotted name)."""
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = _list_item(node, part, where)
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override '{'.'.join(parts)}': '{'.'.join(parts[:i])}' is not a mapping")
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        idx = _index(last, ".".join(parts))
        if idx == len(node):
            node.append(value)
        else:
            _list_item(node, last, ".".join(parts))
            node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override '{'.'.join(parts)}': '{'.'.join(parts[:-1])}' is not a mapping")


def _index(part: str, where: str) -> int:
    if not part.lstrip("-").isdigit():
        raise ConfigError(f"override '{where}': '{part}' must be a list index")
    return int(part)


def _list_item(node: list, part: str, where: str) -> Any:
    idx = _index(part, where)
    if not -len(node) <= idx < len(node):
        raise ConfigError(f"override '{where}': index {idx} out of range (list of {len(node)})")
    return node[idx]


# ================================================================================================ entry points
def config_from_dict(data: dict, overrides: list[str] | None = None) -> RunConfig:
    """Validate a plain dict (+ overrides) into a :class:`RunConfig`."""
    if not isinstance(data, dict):
        raise ConfigError(f"a run config must be a mapping at the top level, got {type(data).__name__}")
    data = copy.deepcopy(data)
    for ov in overrides or []:
        apply_override(data, *parse_override(ov))
    cfg = _build_dataclass(RunConfig, data, "")
    from ..data.folder import apply_folder_classes

    apply_folder_classes(cfg)  # folder datasets: num_classes / Vireo vocabulary from their classes.yaml
    validate(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (a file, or the name of a packaged config), apply ``key=value`` overrides,
    validate."""
    path = config_path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    try:
        return config_from_dict(data or {}, overrides)
    except ConfigError as e:
        raise type(e)(f"{path}: {e}") from None

"""Typed configs: dataclasses filled from YAML files plus ``--set key=value`` overrides.

Every key is checked when the config is built: an unknown key raises :class:`ConfigError` naming its
dotted path and the nearest valid key; a value of the wrong type names the key and the expected type.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Type, TypeVar

import yaml

from recarch.registry import suggest

C = TypeVar("C")


class ConfigError(ValueError):
    """A config key or value that does not fit the typed config."""


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}{suggest(str(value), map(str, args))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {hint.__name__} fields, got {value!r}")
        return from_dict(hint, value, prefix=key + ".")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def from_dict(cls: Type[C], data: Dict[str, Any], prefix: str = "") -> C:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys with a suggestion."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key {prefix + key!r}{suggest(key, names)}; valid keys under "
                              f"{prefix.rstrip('.') or 'the top level'}: {', '.join(names)}")
    data = dict(data)
    for f in dataclasses.fields(cls):  # a nested section starts from the parent's default for it
        if isinstance(data.get(f.name), dict) and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if dataclasses.is_dataclass(default):
                data[f.name] = merge(to_dict(default), data[f.name])
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check()
    return obj


def to_dict(cfg: Any) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def parse_overrides(sets: Iterable[str]) -> Dict[str, Any]:
    """``["train.lr=0.01", "model.n_layers=2"]`` -> nested dict; values parsed as YAML scalars."""
    out: Dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def merge(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> Dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def gather(files: Iterable[str | Path] = (), sets: Iterable[str] = (),
           options: Optional[Dict[str, Any]] = None, paths: Iterable[str] = ()) -> Dict[str, Any]:
    """Each YAML file in order <- ``options`` (a command's own flags, e.g. ``--dataset``, as a nested
    dict) <- ``--set`` overrides: a flag beats a preset file, ``--set`` beats both. A top-level key in
    ``paths`` names files: relative names in a preset are read from that preset's folder."""
    data: Dict[str, Any] = {}
    for f in files:
        one = read_yaml(f)
        for key in paths:
            if key in one:
                names = one[key] if isinstance(one[key], list) else [one[key]]
                one[key] = [str(Path(f).parent / n) if isinstance(n, str) and not Path(n).is_absolute() else n
                            for n in names]
        data = merge(data, one)
    data = merge(data, options or {})
    return merge(data, parse_overrides(sets))


def load(cls: Type[C], files: Iterable[str | Path] = (), sets: Iterable[str] = (),
         options: Optional[Dict[str, Any]] = None) -> C:
    """Defaults <- :func:`gather` (preset files <- flags <- ``--set``)."""
    return from_dict(cls, gather(files, sets, options))

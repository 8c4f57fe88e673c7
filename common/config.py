"""Recipes: a YAML file plus `--key value` overrides, parsed strictly into a stage's dataclass.

Every stage describes its options as one dataclass whose fields are declared with `param()`
(default + one-line help). `parse_args(StageConfig, argv)` reads `--config file.yaml`, applies
command-line overrides (dotted keys reach nested dataclasses: `--lora.rank 8`), and builds the
dataclass. Unknown keys and values of the wrong type raise `ConfigError` naming the key and
the file they came from; nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe or override that cannot become a config: names the key and its source."""


# keys of older recipes → their spelling now (an old key is an error that names the new one)
RENAMED = {"lora_rank": "lora.rank", "lora_alpha": "lora.alpha", "lora_layers": "lora.layers"}


def param(default: Any = dataclasses.MISSING, help: str = "") -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field with a help line; mutable defaults are copied per instance."""
    meta = {"help": help}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        value = default
        return dataclasses.field(default_factory=lambda: _copy(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


# ---------------------------------------------------------------------------------------------
# Building a dataclass from plain data, with type checks
# ---------------------------------------------------------------------------------------------


def from_dict(cls: type[T], data: dict, source: str = "<config>", prefix: str = "") -> T:
    """Build `cls` from `data`; every key must be a field, every value of the field's type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or 'config'}' must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        if key in RENAMED and RENAMED[key].split(".")[0] in fields:
            raise ConfigError(f"{source}: '{prefix}{key}' is now spelled '{prefix}{RENAMED[key]}'")
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
        raise ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}")
    kwargs = {name: _coerce(hints[name], value, source, prefix + name) for name, value in data.items()}
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{source}: missing required key '{prefix}{missing[0]}'")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # __post_init__ validation
        raise ConfigError(f"{source}: {err}") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{source}: key '{key}' expects {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, key)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"{source}: key '{key}' must be one of {choices}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): _coerce(vt, v, source, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    raise bad


def to_dict(cfg: Any) -> dict:
    """A plain, YAML-safe dict of a config dataclass (nested dataclasses included)."""
    return dataclasses.asdict(cfg)


def save_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))


# ---------------------------------------------------------------------------------------------
# YAML + command line
# ---------------------------------------------------------------------------------------------


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys to values")
    return data


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def help_text(cls: type, prefix: str = "") -> str:
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(help_text(tp, prefix + f.name + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)"
        )
        lines.append(f"  --{prefix}{f.name} ({_type_name(tp)}, default {default!r})\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def parse_args(cls: type[T], argv: list[str] | None = None, prog: str = "") -> T:
    """`--config recipe.yaml --key value --nested.key value ...` → an instance of `cls`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(f"usage: {prog or 'python -m <stage>'} --config RECIPE.yaml [--key value ...]\n")
        print((cls.__doc__ or "").strip() + "\n")
        print(help_text(cls))
        raise SystemExit(0)
    config_path = None
    overrides: list[tuple[str, Any]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"command line: expected --key, got {arg!r}")
        key, eq, inline = arg[2:].partition("=")
        if eq:
            value_text, i = inline, i + 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value_text, i = argv[i + 1], i + 2
        else:
            raise ConfigError(f"command line: --{key} needs a value")
        if key == "config":
            config_path = value_text
        elif key in ("local_rank", "local-rank"):
            pass  # added by the deepspeed launcher; the rank is read from the environment
        else:
            overrides.append((key.replace("-", "_"), _parse_value(value_text)))
    data = load_yaml(config_path) if config_path else {}
    source = str(config_path) if config_path else "command line"
    for key, value in overrides:
        _set_dotted(data, key, value)
    if overrides:
        source += " + command line"
    return from_dict(cls, data, source)

"""Typed configuration dataclasses: files (TOML or JSON), ``--set key=value`` and checks.

A config is a frozen dataclass whose fields are ``int``, ``float``, ``bool``, ``str`` or a
tuple of one of those (``tuple[float, ...]``), each with a default and a one-line comment
on its line::

    @dataclass(frozen=True)
    class Config:
        steps: int = 200  # optimisation steps
        lr: tuple[float, ...] = (0.01,)  # learning rates (one replica set per value)

Values come, in order, from the defaults, an optional override dict (an experiment's
``FULL`` budget), a TOML/JSON file and ``key=value`` strings. Unknown keys and values of
the wrong type raise :class:`ConfigError` naming the key and listing the valid ones;
range checks live in each config's ``__post_init__``. :func:`to_toml` writes a config
back as a TOML file that :func:`load_config` reads (what a run directory stores).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import sys
import textwrap
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rftgrad.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_SCALARS = (bool, int, float, str)
_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}


def field_types(config_cls: type) -> dict[str, tuple[type, bool]]:
    """``name -> (scalar type, is_tuple)`` for each field of a config dataclass."""
    hints = typing.get_type_hints(config_cls)
    types: dict[str, tuple[type, bool]] = {}
    for field in dataclasses.fields(config_cls):
        hint = hints[field.name]
        if typing.get_origin(hint) is tuple:
            types[field.name] = (typing.get_args(hint)[0], True)
        elif hint in _SCALARS:
            types[field.name] = (hint, False)
        else:
            raise TypeError(f"config field {config_cls.__name__}.{field.name} has unsupported type {hint}")
    return types


def field_docs(config_cls: type) -> dict[str, str]:
    """The comment on each field's line, from the class sources (base classes included)."""
    docs: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        source = textwrap.dedent(inspect.getsource(klass))
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                line = lines[node.end_lineno - 1]
                if "#" in line:
                    docs[node.target.id] = line.split("#", 1)[1].strip()
    return docs


def _type_name(scalar: type, is_tuple: bool) -> str:
    name = _TYPE_NAMES[scalar]
    return f"a list of {name.removeprefix('an ').removeprefix('a ')}s" if is_tuple else name


def _valid_keys(config_cls: type) -> str:
    return ", ".join(f"{name} ({_type_name(*kind)})" for name, kind in field_types(config_cls).items())


def _scalar(scalar: type, value: Any, from_text: bool) -> Any:  # noqa: ANN401 - one of _SCALARS
    """Check (typed input) or parse (``from_text``) one scalar; raise ValueError if it does not fit."""
    if from_text:
        text = str(value).strip()
        if scalar is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        return scalar(text)
    if scalar is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not scalar:
        raise ValueError(value)
    return value


def coerce(config_cls: type, key: str, value: Any, from_text: bool = False) -> Any:  # noqa: ANN401
    """``value`` as the type of field ``key``: parsed from a string (``--set``) or checked
    (a file's typed value). Raises :class:`ConfigError` with the valid keys on a mismatch."""
    types = field_types(config_cls)
    if key not in types:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {_valid_keys(config_cls)}")
    scalar, is_tuple = types[key]
    try:
        if is_tuple:
            if from_text:
                items = [part for part in str(value).split(",") if part.strip()]
            elif isinstance(value, list | tuple):
                items = list(value)
            else:
                items = [value]
            return tuple(_scalar(scalar, item, from_text) for item in items)
        return _scalar(scalar, value, from_text)
    except (ValueError, TypeError):
        raise ConfigError(
            f"config key {key!r} expects {_type_name(scalar, is_tuple)}, got {value!r}; "
            f"valid keys: {_valid_keys(config_cls)}"
        ) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The key/value pairs of a ``.toml`` or ``.json`` config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            loaded = json.loads(text)
        else:
            loaded = tomllib.loads(text)
    except (OSError, json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"cannot read config file {path}: {message}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold key = value pairs at the top level")
    return loaded


def load_config(
    config_cls: type,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
) -> Any:  # noqa: ANN401 - an instance of config_cls
    """Defaults, then ``overrides``, then a TOML/JSON file, then ``key=value`` strings."""
    values: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        values[key] = coerce(config_cls, key, value)
    if config_file is not None:
        for key, value in read_config_file(config_file).items():
            values[key] = coerce(config_cls, key, value)
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        values[key.strip()] = coerce(config_cls, key.strip(), text, from_text=True)
    return config_cls(**values)


def _toml_value(value: Any) -> str:  # noqa: ANN401 - a config value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else json.dumps(str(value))
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def to_toml(config: Any, header: str = "") -> str:  # noqa: ANN401 - a config dataclass instance
    """The config as TOML, one ``key = value`` per field with its doc as a comment."""
    docs = field_docs(type(config))
    lines = [f"# {line}" for line in header.splitlines()]
    for field in dataclasses.fields(config):
        doc = docs.get(field.name)
        lines.append(f"{field.name} = {_toml_value(getattr(config, field.name))}" + (f"  # {doc}" if doc else ""))
    return "\n".join(lines) + "\n"


def describe_config(config_cls: type) -> str:
    """One line per field: name, type, default and doc (what ``rftgrad run NAME --show-config`` prints)."""
    docs = field_docs(config_cls)
    types = field_types(config_cls)
    default = config_cls()
    rows = [
        f"{f.name:<18} {_type_name(*types[f.name]):<18} {_toml_value(getattr(default, f.name)):<24} "
        f"{docs.get(f.name, '')}"
        for f in dataclasses.fields(config_cls)
    ]
    return "\n".join(rows)

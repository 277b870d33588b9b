"""Typed configuration dataclasses: files (TOML or JSON), ``--set key=value`` and checks.

A config is a frozen dataclass whose fields are ``int``, ``float``, ``bool``, ``str`` or a
tuple of one of those (``tuple[float, ...]``), each with a default and a one-line comment
on its line::

    @dataclass(frozen=True)
    class Config:
        steps: int = 200  # optimisation steps
        lr: tuple[float, ...] = (0.01,)  # learning rates (one replica set per value)

A field may also be a *section*: another config dataclass, with a frozen instance as its
default (an experiment's ``trainer: TrainConfig = TrainConfig(arms=("rft:300",))``). Its
keys are written ``section.key`` (``--set trainer.lr=0.1``, a ``[trainer]`` table in TOML,
``{"trainer": {"lr": (0.1,)}}`` in an override dict); a bare ``key`` that names no
top-level field but exactly one section's field means that one (``--set lr=0.1``). A
config class may list in ``DERIVED`` the section keys it sets itself (e.g. an experiment
that builds ``trainer.arms`` from its own fields): they are neither shown nor settable.

Values come, in order, from the defaults, an optional override dict (an experiment's
``FULL`` budget), a TOML/JSON file and ``key=value`` strings. Unknown keys and values of
the wrong type raise :class:`ConfigError` naming the key and listing the valid ones;
range checks live in each config's ``__post_init__``; every key named ``seed`` or ``*_seed`` must be
an integer >= 0 (one rule for every experiment). :func:`to_toml` writes a config back as a TOML file
that :func:`load_config` reads, and so is a run's ``config.json`` (``{"experiment": name, **config}``):
a file's ``experiment`` key must name the experiment it is loaded for, and derived keys it holds at
their default values (what ``dataclasses.asdict`` writes) are skipped.
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

from rftgrad.errors import ConfigError, first_line
from rftgrad.runtime import check_seed

__all__ = [
    "sections",
    "derived_keys",
    "field_types",
    "field_docs",
    "resolve_key",
    "coerce",
    "read_config_file",
    "flatten",
    "as_sets",
    "build",
    "load_config",
    "experiment_of",
    "key_values",
    "to_toml",
    "describe_config",
]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_SCALARS = (bool, int, float, str)
_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}


def sections(config_cls: type) -> dict[str, type]:
    """``name -> config dataclass`` for each field of ``config_cls`` that is a section."""
    hints = typing.get_type_hints(config_cls)
    fields = dataclasses.fields(config_cls)
    return {field.name: hints[field.name] for field in fields if dataclasses.is_dataclass(hints[field.name])}


def derived_keys(config_cls: type) -> tuple[str, ...]:
    """The ``section.key`` names ``config_cls`` sets itself (its ``DERIVED`` class attribute)."""
    return tuple(getattr(config_cls, "DERIVED", ()))


def field_types(config_cls: type) -> dict[str, tuple[type, bool]]:
    """``key -> (scalar type, is_tuple)`` for each settable key: scalar fields, then ``section.key`` ones."""
    hints = typing.get_type_hints(config_cls)
    nested = sections(config_cls)
    types: dict[str, tuple[type, bool]] = {}
    for field in dataclasses.fields(config_cls):
        hint = hints[field.name]
        if field.name in nested:
            derived = derived_keys(config_cls)
            for key, kind in field_types(nested[field.name]).items():
                if f"{field.name}.{key}" not in derived:
                    types[f"{field.name}.{key}"] = kind
        elif typing.get_origin(hint) is tuple:
            types[field.name] = (typing.get_args(hint)[0], True)
        elif hint in _SCALARS:
            types[field.name] = (hint, False)
        else:
            raise TypeError(f"config field {config_cls.__name__}.{field.name} has unsupported type {hint}")
    return types


def field_docs(config_cls: type) -> dict[str, str]:
    """The comment on each field's line, from the class sources (base classes included; a section's
    fields as ``section.key``)."""
    docs: dict[str, str] = {}
    for name, section_cls in sections(config_cls).items():
        docs.update({f"{name}.{key}": doc for key, doc in field_docs(section_cls).items()})
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


def resolve_key(config_cls: type, key: str) -> str:
    """The full name of ``key``: itself, or ``section.key`` when a bare key names one section's field.

    Raises :class:`ConfigError` for a key the config does not have, a derived key, or a bare key
    that two sections share.
    """
    types = field_types(config_cls)
    if key in types:
        return key
    derived = [d for d in derived_keys(config_cls) if key in (d, d.split(".", 1)[-1])]
    if derived:
        owner = config_cls.__module__.rsplit(".", 2)[-2] if config_cls.__module__.count(".") >= 2 else "this config"
        full = derived[0]
        raise ConfigError(f"{owner} derives {full} from its own keys; set those instead (see --show-config)")
    matches = [name for name in types if "." in name and name.split(".", 1)[1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"config key {key!r} is ambiguous; write one of {', '.join(matches)}")
    raise ConfigError(f"unknown config key {key!r}; valid keys: {_valid_keys(config_cls)}")


def coerce(config_cls: type, key: str, value: Any, from_text: bool = False) -> Any:  # noqa: ANN401
    """``value`` as the type of key ``key`` (``section.key`` for a section's field): parsed from a
    string (``--set``) or checked (a file's typed value). Raises :class:`ConfigError` with the
    valid keys on a mismatch."""
    types = field_types(config_cls)
    key = resolve_key(config_cls, key)
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
        raise ConfigError(f"cannot read config file {path}: {first_line(err)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold key = value pairs at the top level")
    return loaded


def flatten(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"trainer": {"lr": (0.1,)}, "steps": 3}`` -> ``{"trainer.lr": (0.1,), "steps": 3}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{inner}": item for inner, item in flatten(value).items()})
        else:
            flat[key] = value
    return flat


def as_sets(values: Mapping[str, Any]) -> tuple[str, ...]:
    """A config dict as ``--set`` strings, the inverse of what :func:`load_config` parses:
    ``{"lr": (0.1, 0.2), "seeds": 2}`` -> ``("lr=0.1,0.2", "seeds=2")``; nested sections become dotted
    keys (:func:`flatten`): ``{"trainer": {"lr": (0.1,)}}`` -> ``("trainer.lr=0.1",)``."""
    return tuple(
        f"{key}={','.join(map(str, value)) if isinstance(value, tuple | list) else value}"
        for key, value in flatten(values).items()
    )


def build(config_cls: type, values: Mapping[str, Any]) -> Any:  # noqa: ANN401 - an instance of config_cls
    """An instance of ``config_cls`` from checked ``key -> value`` pairs (``section.key`` for sections):
    each section starts from the field's default and takes its keys."""
    nested = sections(config_cls)
    top = {key: value for key, value in values.items() if "." not in key}
    for name in nested:
        inner = {key.split(".", 1)[1]: value for key, value in values.items() if key.startswith(f"{name}.")}
        default = next(f for f in dataclasses.fields(config_cls) if f.name == name).default
        if inner:
            top[name] = dataclasses.replace(default, **inner)
    return config_cls(**top)


def experiment_of(config_cls: type) -> str | None:
    """The experiment a config class belongs to (``rftgrad.experiments.<name>.config`` -> ``name``), else None."""
    parts = config_cls.__module__.split(".")
    return parts[2] if len(parts) == 4 and parts[:2] == ["rftgrad", "experiments"] and parts[3] == "config" else None


def _file_values(config_cls: type, path: str | Path, experiment: str | None) -> dict[str, Any]:
    """The settable key/value pairs of a config file, less its ``experiment`` key (checked against
    ``experiment``) and the derived keys it holds at their defaults (a run's config.json has both)."""
    loaded = read_config_file(path)
    if "experiment" in loaded and "experiment" not in field_types(config_cls):
        named = loaded.pop("experiment")
        expected = experiment or experiment_of(config_cls)
        if expected is None:
            raise ConfigError(
                f"config file {path} names experiment {named!r} but this config belongs to none; drop the key"
            )
        if named != expected:
            raise ConfigError(
                f"config file {path} is for experiment {named!r}, not {expected}; run `rftgrad run {named} "
                f"--config {path}`"
            )
    values = flatten(loaded)
    defaults = config_cls()
    for key in derived_keys(config_cls):
        if key in values:
            default: Any = defaults
            for part in key.split("."):
                default = getattr(default, part)
            given = tuple(values[key]) if isinstance(values[key], list) else values[key]
            if given == default:
                del values[key]  # what dataclasses.asdict wrote: the field's default, not a setting
    return values


def _check_seed_keys(values: Mapping[str, Any]) -> None:
    """Every ``seed`` / ``*_seed`` key is an integer >= 0 (NumPy's generators refuse negative seeds)."""
    for key, value in values.items():
        name = key.rsplit(".", 1)[-1]
        if (name == "seed" or name.endswith("_seed")) and isinstance(value, int):
            check_seed(value, key)


def load_config(
    config_cls: type,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    experiment: str | None = None,
) -> Any:  # noqa: ANN401 - an instance of config_cls
    """Defaults, then ``overrides``, then a TOML/JSON file, then ``key=value`` strings.

    ``overrides`` and the file may nest a section's keys (``{"trainer": {"lr": ...}}``, a TOML
    ``[trainer]`` table) or write them ``trainer.lr``; ``sets`` are ``key=value`` strings.
    The file may be a run's ``config.json``: its ``experiment`` key must be ``experiment`` (default:
    the experiment ``config_cls`` belongs to, :func:`experiment_of`) and is otherwise ignored, and
    derived keys at their default values are skipped. Seeds (``seed``, ``*_seed``) must be >= 0.
    """
    values: dict[str, Any] = {}
    for key, value in flatten(overrides or {}).items():
        values[resolve_key(config_cls, key)] = coerce(config_cls, key, value)
    if config_file is not None:
        for key, value in _file_values(config_cls, config_file, experiment).items():
            values[resolve_key(config_cls, key)] = coerce(config_cls, key, value)
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        values[resolve_key(config_cls, key.strip())] = coerce(config_cls, key.strip(), text, from_text=True)
    _check_seed_keys(values)
    return build(config_cls, values)


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


def key_values(config: Any) -> dict[str, Any]:  # noqa: ANN401 - a config dataclass instance
    """``key -> value`` of every settable key of ``config`` (``section.key`` for a section's fields)."""
    values = {}
    for key in field_types(type(config)):
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part)
        values[key] = value
    return values


def to_toml(config: Any, header: str = "") -> str:  # noqa: ANN401 - a config dataclass instance
    """The config as TOML, one ``key = value`` per settable key with its doc as a comment (a section's
    keys in a ``[section]`` table after the top-level ones)."""
    docs = field_docs(type(config))
    lines = [f"# {line}" for line in header.splitlines()]
    values = key_values(config)
    current = ""
    for key in sorted(values, key=lambda k: ("." in k, k.split(".", 1)[0] if "." in k else "")):
        section, _, name = key.rpartition(".")
        if section != current:
            lines += ["", f"[{section}]"]
            current = section
        doc = docs.get(key)
        lines.append(f"{name} = {_toml_value(values[key])}" + (f"  # {doc}" if doc else ""))
    return "\n".join(lines) + "\n"


def describe_config(config_cls: type) -> str:
    """One line per field: name, type, default and doc (what ``rftgrad run NAME --show-config`` prints)."""
    docs = field_docs(config_cls)
    types = field_types(config_cls)
    defaults = key_values(config_cls())
    rows = [
        f"{key:<24} {_type_name(*types[key]):<18} {_toml_value(defaults[key]):<24} {docs.get(key, '')}"
        for key in types
    ]
    return "\n".join(rows)

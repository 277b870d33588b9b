"""What every experiment shares: config loading, the run directory, figures.

An experiment is a folder ``rftgrad/experiments/<name>/`` with

* ``config.py``: a dataclass ``Config`` (one-line doc per field; defaults are the quick
  budget) and ``FULL``, a dict of overrides for the paper-scale budget;
* ``run.py``: ``run(config, out_dir, progress) -> dict[str, DataFrame]`` computes tidy
  records (it never plots);
* ``analysis.py``: ``score(tables) -> dict`` and ``make_figures(tables, out_dir) -> list[Path]``
  (it never trains; it reads what ``run`` wrote).

:func:`run_experiment` ties them together: config (file, ``--full``, ``--set key=value``) ->
records written atomically with ``config.json`` and ``environment.json`` -> figures.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from rftgrad.errors import ConfigError
from rftgrad.results import atomic_write_text, write_run


def experiment_module(name: str, part: str) -> ModuleType:
    """Import ``rftgrad.experiments.<name>.<part>`` (``config``, ``run`` or ``analysis``)."""
    from rftgrad.experiments import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")
    return importlib.import_module(f"rftgrad.experiments.{name}.{part}")


def _coerce(field: dataclasses.Field, text: str) -> Any:  # noqa: ANN401 - the field's own type
    """Parse ``text`` as the type of ``field`` (int, float, bool, str, or a tuple of ints/floats/strs)."""
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(default, tuple):
            item_type = type(default[0]) if default else str
            return tuple(item_type(part) for part in text.split(",") if part.strip())
        return type(default)(text)
    except ValueError as err:
        raise ConfigError(f"cannot read {field.name}={text!r} as {type(default).__name__}") from err


def load_config(
    config_cls: type,
    full_overrides: Mapping[str, Any],
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    full: bool = False,
) -> Any:  # noqa: ANN401 - an instance of config_cls
    """Defaults, then ``full_overrides`` (if ``full``), then a JSON file, then ``key=value`` strings."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = dict(full_overrides) if full else {}
    if config_file is not None:
        try:
            loaded = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read config file {config_file}: {err}") from err
        values.update({k: tuple(v) if isinstance(v, list) else v for k, v in loaded.items()})
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if key not in fields:
            raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(fields)}")
        values[key] = _coerce(fields[key], text)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(fields)}")
    return config_cls(**values)


def run_experiment(
    name: str,
    out_dir: str | Path,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    full: bool = False,
    progress: bool = True,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], list[Path]]:
    """Run experiment ``name`` into ``out_dir``: records, then score and figures from those records."""
    config_module = experiment_module(name, "config")
    config = load_config(config_module.Config, config_module.FULL, config_file, sets, full)
    tables = experiment_module(name, "run").run(config, progress=progress)
    out = write_run(out_dir, {"experiment": name, **dataclasses.asdict(config)}, tables, "cpu")
    return analyse(name, out)


def analyse(name: str, out_dir: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any], list[Path]]:
    """Read a run directory's records, write ``score.json`` and the figures."""
    analysis = experiment_module(name, "analysis")
    out = Path(out_dir)
    tables = {path.stem: pd.read_csv(path) for path in sorted(out.glob("*.csv"))}
    score = analysis.score(tables)
    atomic_write_text(out / "score.json", json.dumps(score, indent=2, default=float) + "\n")
    return tables, score, analysis.make_figures(tables, out)


def save_figure(figure: Any, path: Path) -> Path:  # noqa: ANN401 - a matplotlib Figure
    """Save ``figure`` as PNG (and PDF) next to the records, atomically, and close it."""
    import matplotlib.pyplot as plt

    for suffix in (".png", ".pdf"):
        target = path.with_suffix(suffix)
        tmp = target.with_name(f".{target.stem}.tmp{suffix}")
        figure.savefig(tmp, dpi=150, bbox_inches="tight")
        tmp.replace(target)
    plt.close(figure)
    return path.with_suffix(".png")

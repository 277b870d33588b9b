"""``rftgrad sweep``: one experiment over a grid of config values, every point a run, on any executor.

A grid is a list of ``key=v1,v2,...`` items (``--grid``); keys resolve as ``--set`` keys do
(:func:`rftgrad.configs.resolve_key`: ``lr`` -> ``trainer.lr``). The points are the cartesian product of the
values in grid order (the first key varies slowest); point ``i`` is the run of the base config (defaults,
``--full``, ``--variant``, ``--config``, ``--set``) with one value of each key, written into
``<out>/points/<iii>/``, exactly what ``rftgrad run`` writes there minus the experiment's own figures.
A tuple-valued key (``trainer.lr``, whose several values are replicas of one run) takes one value per point.

Every point's config is built (:func:`rftgrad.experiments.plan_run`) before anything is written or any unit
starts, so a bad value ends the command with a :class:`~rftgrad.errors.ConfigError` naming its key and
value. The sweep directory is claimed as a run of ``sweep <experiment>`` (:func:`rftgrad.results.claim_run_dir`,
resumable), each unfinished point's directory as a run of its own before the first unit runs; each point is
one :class:`~rftgrad.executors.Unit` (:func:`rftgrad.experiments.compute_run` in the worker), whose records the
driver writes as it comes back (:func:`rftgrad.experiments.record_run`). Rerunning the same command skips the
finished points and resumes the others from their checkpoints. At the end the driver writes

* ``sweep.json``: the experiment, the grid, the base settings, the executor, the point -> values table, the
  git commit and :func:`rftgrad.runtime.environment_info`;
* ``sweep.csv``: one row per finished point: ``point``, one column per grid key (the value as given), then
  every scalar of the point's ``score.json`` (:func:`flatten_score`);
* ``sweep.png`` / ``sweep.pdf``: one panel per numeric score column that varies across the points (at most
  :data:`MAX_PANELS`), against the first grid key, one line per combination of the other keys.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rftgrad.configs import resolve_key
from rftgrad.errors import ConfigError, first_line
from rftgrad.executors import Executor, SerialExecutor
from rftgrad.experiments import PlannedRun, RunOutput, experiment_module, plan_run, run_plans
from rftgrad.plotting import new_figure, palette, save_figure, theme
from rftgrad.results import (
    atomic_write_text,
    check_out_path,
    claim_run_dir,
    config_fingerprint,
    free_run_dir,
    read_run_record,
)
from rftgrad.runtime import environment_info, git_commit

__all__ = [
    "MAX_PANELS",
    "SweepPoint",
    "SweepPlan",
    "SweepResult",
    "flatten_score",
    "parse_grid",
    "plan_sweep",
    "run_sweep",
    "sweep_figure",
]

#: the most panels of the summary figure (the first varying numeric score columns, in score order).
MAX_PANELS = 6


def parse_grid(experiment: str, grid: Sequence[str], sets: Sequence[str] = ()) -> dict[str, tuple[str, ...]]:
    """``["lr=0.1,0.2", "vocab_size=8,10"]`` -> ``{"trainer.lr": ("0.1", "0.2"), "vocab_size": ("8", "10")}``.

    Keys resolve as ``--set`` keys do (:func:`rftgrad.configs.resolve_key`); values stay text, as given (their
    types and ranges are checked when the points' configs are built, :func:`plan_sweep`). Raises
    :class:`ConfigError` (one line naming the fix) for an item without ``=``, an empty key, value list or value,
    a value given twice, a key given twice or also in ``sets`` (``--set``), an unknown key, and ``variant``.
    """
    config_cls = experiment_module(experiment, "config").Config
    if not grid:
        raise ConfigError("a sweep needs at least one --grid KEY=V1,V2,...")
    fixed = {}
    for item in sets:
        key, sep, _ = item.partition("=")
        if sep and key.strip():
            fixed[resolve_key(config_cls, key.strip())] = key.strip()
    parsed: dict[str, tuple[str, ...]] = {}
    for item in grid:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--grid expects KEY=V1,V2,..., got {item!r}; add the = and the values")
        if not key:
            raise ConfigError(f"--grid {item!r} has no key; write KEY=V1,V2,...")
        if key == "variant":
            raise ConfigError("--grid cannot sweep variant; run one sweep per variant (--variant NAME)")
        full_key = resolve_key(config_cls, key)
        if full_key == "variant":
            raise ConfigError("--grid cannot sweep variant; run one sweep per variant (--variant NAME)")
        values = tuple(part.strip() for part in text.split(","))
        if not text.strip():
            raise ConfigError(f"--grid {key} has no values; write {key}=V1,V2,...")
        if any(not value for value in values):
            raise ConfigError(f"--grid {key}={text} has an empty value; drop the extra comma")
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ConfigError(f"--grid {key} lists {', '.join(repeated)} more than once; give each value once")
        if full_key in parsed:
            raise ConfigError(f"--grid gives {full_key} twice; join its values into one --grid {key}=V1,V2,...")
        if full_key in fixed:
            raise ConfigError(
                f"{full_key} is in --grid and also set by --set {fixed[full_key]}=... (or --device/--seeds); "
                "drop one of them"
            )
        parsed[full_key] = values
    return parsed


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its directory name, the grid values it takes and its checked run."""

    name: str  # the directory name under points/: "000", "001", ...
    values: dict[str, str]  # grid key -> the value as given
    plan: PlannedRun  # the run of this point (config checked, device resolved)

    @property
    def label(self) -> str:
        """What progress bars and errors call the point: ``point 003 trainer.lr=0.1 vocab_size=8``."""
        return f"point {self.name} " + " ".join(f"{key}={value}" for key, value in self.values.items())


@dataclass(frozen=True)
class SweepPlan:
    """A sweep whose every point's config is checked: nothing is written yet."""

    experiment: str
    out_dir: Path  # the sweep directory
    grid: dict[str, tuple[str, ...]]  # grid key -> its values, as given (parse_grid)
    points: tuple[SweepPoint, ...]  # the cartesian product, first key slowest
    settings: dict[str, Any]  # the base settings: config file, --set values, --full, variant

    @property
    def config(self) -> dict[str, Any]:
        """The config part of ``sweep.json``, which the sweep directory is claimed with (its fingerprint):
        the experiment, the grid, the base settings and every point's run fingerprint."""
        return {
            "experiment": self.experiment,
            "grid": {key: list(values) for key, values in self.grid.items()},
            **self.settings,
            "point_fingerprints": {point.name: point.plan.fingerprint for point in self.points},
        }

    @property
    def fingerprint(self) -> str:
        """:func:`rftgrad.results.config_fingerprint` of :attr:`config`."""
        return config_fingerprint(self.config)


def _point_plan(experiment: str, out: Path, settings: Mapping[str, Any], values: Mapping[str, str]) -> PlannedRun:
    sets = [*settings["sets"], *(f"{key}={value}" for key, value in values.items())]
    return plan_run(experiment, out, settings["config_file"], sets, settings["full"], settings["variant"])


def plan_sweep(
    experiment: str,
    grid: Sequence[str],
    out_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    full: bool = False,
    variant: str | None = None,
) -> SweepPlan:
    """Parse ``grid`` (:func:`parse_grid`) and build every point's config (:func:`rftgrad.experiments.plan_run`).

    Each value is first checked alone on the base config, so a bad one raises :class:`ConfigError` naming its
    key and value; then every combination (a point whose values clash names them all). Two points with the same
    config (``0.1`` and ``0.10``) are refused. ``out_dir=None``: ``runs/sweep-<experiment>``, else its first
    free numbered sibling (:func:`rftgrad.results.free_run_dir`). Nothing is written.
    """
    parsed = parse_grid(experiment, grid, sets)
    settings = {
        "config_file": None if config_file is None else str(config_file),
        "sets": list(sets),
        "full": full,
        "variant": variant,
    }
    scratch = Path("points")  # where plans point before the sweep directory is known (fixed below)
    plan_run(experiment, scratch, config_file, sets, full, variant)  # the base config itself
    for key, values in parsed.items():
        for value in values:
            try:
                _point_plan(experiment, scratch, settings, {key: value})
            except ConfigError as error:
                raise ConfigError(f"--grid {key}={value}: {first_line(error)}") from None
    combos = [dict(zip(parsed, combo, strict=True)) for combo in itertools.product(*parsed.values())]
    width = max(3, len(str(len(combos) - 1)))
    names = [f"{index:0{width}d}" for index in range(len(combos))]
    checked = []
    for name, values in zip(names, combos, strict=True):
        try:
            checked.append(_point_plan(experiment, scratch / name, settings, values))
        except ConfigError as error:
            shown = " ".join(f"{key}={value}" for key, value in values.items())
            raise ConfigError(f"--grid point {shown}: {first_line(error)}") from None
    seen: dict[str, str] = {}
    for plan, values in zip(checked, combos, strict=True):
        shown = " ".join(f"{key}={value}" for key, value in values.items())
        if plan.fingerprint in seen:
            raise ConfigError(f"--grid points {seen[plan.fingerprint]} and {shown} are the same config; "
                              "give each value once")  # fmt: skip
        seen[plan.fingerprint] = shown
    fingerprint_points = tuple(SweepPoint(n, v, p) for n, v, p in zip(names, combos, checked, strict=True))
    partial = SweepPlan(experiment, Path(), parsed, fingerprint_points, settings)  # fingerprints ignore out_dir
    if out_dir is None:
        out = free_run_dir(Path("runs") / f"sweep-{experiment}", f"sweep {experiment}", partial.fingerprint)
    else:
        check_out_path(out_dir)
        out = Path(out_dir)

    def moved(plan: PlannedRun, name: str) -> PlannedRun:
        point_dir = out / "points" / name
        return dataclasses.replace(plan, out_dir=point_dir, absolute_dir=point_dir.absolute())

    points = tuple(SweepPoint(point.name, point.values, moved(point.plan, point.name)) for point in fingerprint_points)
    return dataclasses.replace(partial, out_dir=out, points=points)


def flatten_score(score: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalars of a ``score.json`` as one flat row: nested dicts become dotted names
    (``{"reward_mean": {"all": {"rft:20": -0.7}}}`` -> ``{"reward_mean.all.rft:20": -0.7}``); numbers, bools
    and strings are kept, lists (and None) skipped."""
    row: dict[str, Any] = {}
    for key, value in score.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            row.update(flatten_score(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            row[name] = value
    return row


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def sweep_figure(table: pd.DataFrame, grid: Mapping[str, Sequence[str]], score_columns: Sequence[str]) -> Any:  # noqa: ANN401 - a Figure
    """The summary figure of a sweep: one panel per numeric column of ``score_columns`` that varies across the
    rows of ``table`` (at most :data:`MAX_PANELS`, in that order), against the first grid key (a numeric axis
    when all its values are numbers, else one tick per value), one labelled line per combination of the other
    grid keys. ``table`` holds the grid values as text (as given) and the score columns."""
    keys = list(grid)
    x_key, line_keys = keys[0], keys[1:]
    numeric = [c for c in score_columns if pd.api.types.is_numeric_dtype(table[c]) and table[c].dtype != bool]
    varying = [c for c in numeric if table[c].nunique(dropna=True) > 1][:MAX_PANELS]
    x_values = list(grid[x_key])
    numeric_x = all(_is_number(value) for value in x_values)
    position = {value: float(value) if numeric_x else index for index, value in enumerate(x_values)}
    combos = list(itertools.product(*(grid[key] for key in line_keys)))
    colors = palette(combos)
    panels = max(1, len(varying))
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    with theme():
        figure, axes = new_figure(rows, columns, (4.2 * columns, 3.3 * rows + (0.6 if line_keys else 0)))
        for extra in axes[panels:]:
            extra.set_visible(False)
        if not varying:
            axes[0].text(0.5, 0.5, "no numeric score varies across the points", ha="center", va="center")
            axes[0].set_axis_off()
        for axis, column in zip(axes, varying, strict=False):
            for combo in combos:
                mask = pd.Series(True, index=table.index)
                for key, value in zip(line_keys, combo, strict=True):
                    mask &= table[key].astype(str) == value
                rows_of = table[mask]
                xs = [position[str(value)] for value in rows_of[x_key]]
                order = sorted(range(len(xs)), key=xs.__getitem__)
                label = ", ".join(f"{key}={value}" for key, value in zip(line_keys, combo, strict=True)) or "all"
                axis.plot([xs[i] for i in order], [rows_of[column].iloc[i] for i in order], marker="o",
                          color=colors[combo], label=label)  # fmt: skip
            axis.set_title(column, fontsize=9)
            axis.set_xlabel(x_key)
            if not numeric_x:
                axis.set_xticks(range(len(x_values)), x_values)
            else:
                numbers = sorted(position.values())
                if numbers[0] > 0 and numbers[-1] / numbers[0] >= 20:
                    axis.set_xscale("log")
                if len(numbers) <= 8:
                    axis.set_xticks(numbers, [f"{number:g}" for number in numbers])
                    axis.minorticks_off()
        if line_keys and varying:
            handles, labels = axes[0].get_legend_handles_labels()
            figure.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=8)
    return figure


@dataclass(frozen=True)
class SweepResult:
    """What a sweep wrote."""

    out_dir: Path  # the sweep directory
    table: pd.DataFrame  # sweep.csv, as read back
    figures: list[Path]  # sweep.png (and its .pdf next to it)
    reused: int  # points already finished before this call (not recomputed)
    points: int  # points in the grid
    unit_seconds: dict[str, float]  # point -> wall seconds of its run.py in the worker (RunOutput.seconds), this call


def _point_is_finished(point: SweepPoint) -> bool:
    record = read_run_record(point.plan.out_dir) if point.plan.out_dir.is_dir() else None
    return (
        record is not None
        and record.finished
        and record.command == f"run {point.plan.name}"
        and record.fingerprint == point.plan.fingerprint
    )


def _sweep_record(plan: SweepPlan, executor: Executor) -> dict[str, Any]:
    return {
        "config": plan.config,
        "executor": executor.name,
        "address": getattr(executor, "address", None),
        "points": {point.name: point.values for point in plan.points},
        "git_commit": git_commit(),
        "environment": environment_info(),
    }


def _summarise(plan: SweepPlan) -> tuple[pd.DataFrame, list[Path]]:
    """Write ``sweep.csv`` and the summary figure from the finished points; returns the table as read back."""
    rows, score_columns = [], {}
    for point in plan.points:
        if not _point_is_finished(point):
            continue
        score = flatten_score(json.loads((point.plan.out_dir / "score.json").read_text(encoding="utf-8")))
        score_columns.update(dict.fromkeys(score))
        rows.append({"point": point.name, **point.values, **score})
    columns = ["point", *plan.grid, *(c for c in score_columns if c not in plan.grid and c != "point")]
    frame = pd.DataFrame(rows, columns=columns)
    csv = plan.out_dir / "sweep.csv"
    atomic_write_text(csv, frame.to_csv(index=False))
    table = pd.read_csv(csv, dtype={"point": str, **{key: str for key in plan.grid}})
    figure = sweep_figure(table, plan.grid, [c for c in columns[1 + len(plan.grid) :]])
    png = save_figure(figure, plan.out_dir / "sweep")
    return table, [png, png.with_suffix(".pdf")]


def run_sweep(
    experiment: str,
    grid: Sequence[str],
    out_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    full: bool = False,
    variant: str | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> SweepResult:
    """Run ``experiment`` at every point of ``grid`` (see the module doc) on ``executor`` (default serial).

    Raises :class:`ConfigError` for a bad grid or value before anything is written (:func:`plan_sweep`),
    :class:`~rftgrad.errors.OutputError` for a sweep directory that holds something else (``overwrite``
    replaces it), and the first point's error after the other points finished and ``sweep.csv`` was written
    from the finished ones (a failed point's directory is removed). An interruption keeps the finished points
    and the checkpoints of the others: the same call again finishes only the rest.
    """
    executor = executor if executor is not None else SerialExecutor()
    plan = plan_sweep(experiment, grid, out_dir, config_file, sets, full, variant)
    claim = claim_run_dir(plan.out_dir, f"sweep {experiment}", plan.fingerprint, overwrite=overwrite, resumable=True)
    try:
        atomic_write_text(plan.out_dir / "sweep.json", json.dumps(_sweep_record(plan, executor), indent=2) + "\n")
        finished = [point for point in plan.points if _point_is_finished(point)]
    except BaseException as error:
        claim.__exit__(type(error), error, error.__traceback__)
        raise
    todo = {point.label: point for point in plan.points if point not in finished}
    if progress:
        print(f"sweep {experiment}: {len(plan.points)} points, {len(finished)} of {len(plan.points)} points "
              f"already finished", file=sys.stderr)  # fmt: skip
    unit_seconds: dict[str, float] = {}

    def recorded(label: str, point_plan: PlannedRun, output: RunOutput, score: dict[str, Any]) -> None:
        unit_seconds[todo[label].name] = output.seconds

    failure: Exception | None = None
    try:  # every unfinished point's directory claimed first, each point one unit (run_plans)
        plans = {label: point.plan for label, point in todo.items()}
        run_plans(plans, executor, recorded, overwrite=overwrite, progress=progress, desc=f"sweep {experiment}")
    except Exception as error:  # a point's error (RftgradError), or a bug: summarise the finished points first
        failure = error
    except BaseException:
        claim.release()  # interrupted: keep the finished points and the checkpoints for a rerun
        raise
    try:
        table, figures = _summarise(plan)
    except BaseException:
        claim.release()
        raise
    if failure is not None:
        claim.release()
        raise failure
    claim.finish()
    claim.release()
    seconds = dict(sorted(unit_seconds.items()))
    return SweepResult(plan.out_dir, table, figures, len(finished), len(plan.points), seconds)

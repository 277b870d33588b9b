"""What every experiment shares: config loading, the run directory, figures.

An experiment is a folder ``rftgrad/experiments/<name>/`` with

* ``config.py``: a frozen dataclass ``Config`` (typed fields, one-line comment each;
  defaults are the quick budget; see :mod:`rftgrad.configs`): the experiment's own fields,
  plus a ``trainer`` section (:class:`rftgrad.finetune.TrainConfig`) for those that finetune,
  composed rather than inherited; ``FULL``, a dict of overrides for the paper-scale budget,
  and ``TESTING``, a budget the test suite runs in seconds;
* ``run.py``: ``run(config, context) -> dict[str, DataFrame]`` computes tidy records (it
  never plots); ``context`` (:class:`RunContext`) says where checkpoints go and whether to
  show progress;
* ``analysis.py``: ``score(tables) -> dict`` and ``make_figures(tables, out_dir) -> list[Path]``
  (it never trains; it reads what ``run`` wrote).

:func:`run_experiment` ties them together: config (defaults, ``--full``, a TOML/JSON file,
``--set key=value``), checked before anything is written -> records written atomically
with ``config.json``, ``config.toml`` (re-runnable with ``--config``) and
``environment.json`` -> score and figures.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from rftgrad import configs
from rftgrad.errors import ConfigError
from rftgrad.executors import Executor, SerialExecutor, Unit
from rftgrad.results import (
    RunDirectory,
    atomic_write_text,
    check_out_path,
    claim_run_dir,
    config_fingerprint,
    free_run_dir,
    strict_json,
    write_run,
)
from rftgrad.runtime import environment_info, resolve_device


@dataclass(frozen=True)
class RunContext:
    """What a running experiment may know about its run besides the config."""

    out_dir: Path  # the run directory
    progress: bool = True  # show progress bars

    @property
    def checkpoint_dir(self) -> Path:
        """Where training checkpoints live while the run is unfinished (removed when it finishes)."""
        return self.out_dir / "checkpoints"


def experiment_module(name: str, part: str) -> ModuleType:
    """Import ``rftgrad.experiments.<name>.<part>`` (``config``, ``run`` or ``analysis``)."""
    from rftgrad.experiments import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")
    return importlib.import_module(f"rftgrad.experiments.{name}.{part}")


def config_device(config: Any) -> str:  # noqa: ANN401 - an experiment's Config
    """The device an experiment's config asks for: its trainer section's, its own ``device`` field's, or cpu."""
    trainer = getattr(config, "trainer", None)
    return getattr(trainer, "device", None) or getattr(config, "device", "cpu")


def experiment_config(
    name: str,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    full: bool = False,
    variant: str | None = None,
) -> Any:  # noqa: ANN401 - an instance of the experiment's Config
    """The checked config of experiment ``name``.

    Experiments with named variants define ``VARIANTS`` (variant -> overrides of the
    defaults) and ``FULL_VARIANTS`` (variant -> the paper-scale budget) in ``config.py`` and a
    ``variant`` field. The variant comes from ``variant`` (``--variant``), else a ``--set
    variant=...`` or the config file, else the field's default; its overrides apply before the
    file and the ``--set`` values.
    """
    module = experiment_module(name, "config")
    variants: Mapping[str, Mapping[str, Any]] = getattr(module, "VARIANTS", {})
    overrides: dict[str, Any] = {}
    if variants:
        chosen = variant
        for item in sets:
            key, _, text = item.partition("=")
            if key.strip() == "variant":
                chosen = chosen or text.strip()
        if chosen is None and config_file is not None:
            chosen = configs.read_config_file(config_file).get("variant")
        chosen = chosen or module.Config.variant
        if chosen not in variants:
            raise ConfigError(f"unknown variant {chosen!r} of {name}; choose one of {', '.join(variants)}")
        overrides = {**variants[chosen], "variant": chosen}
        if full:
            overrides.update(getattr(module, "FULL_VARIANTS", {}).get(chosen, {}))
    elif variant is not None:
        raise ConfigError(f"experiment {name} has no variants; drop --variant")
    if full:
        overrides.update(module.FULL)
    return configs.load_config(module.Config, overrides, config_file, sets)


def run_record(name: str, config: Any) -> dict[str, Any]:  # noqa: ANN401 - an experiment's Config
    """What a run of experiment ``name`` stores as ``config.json``: the name and every config value."""
    return {"experiment": name, **dataclasses.asdict(config)}


def default_run_dir(
    name: str,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    full: bool = False,
    variant: str | None = None,
) -> Path:
    """Where ``rftgrad run NAME`` writes without ``--out``: ``runs/<name>[-<variant>]``, or the unfinished run
    of this config among it and its numbered siblings (``-2``, ``-3``, ...), else the first free one
    (:func:`rftgrad.results.free_run_dir`): a default never replaces a finished run."""
    config = experiment_config(name, config_file, sets, full, variant)
    base = Path("runs") / (name + (f"-{variant}" if variant else ""))
    return free_run_dir(base, f"run {name}", config_fingerprint(run_record(name, config)))


@dataclass(frozen=True)
class PlannedRun:
    """A run of experiment ``name`` whose config is checked: what a unit of work needs to compute its records.

    Small and picklable, so that an executor (:mod:`rftgrad.executors`) can send it to another process."""

    name: str  # the experiment
    out_dir: Path  # the run directory, as given
    config: Any  # the experiment's checked Config
    device: str  # where it computes, resolved ("cpu", "cuda:0")
    absolute_dir: Path  # out_dir made absolute here: a worker process may run in another working directory

    @property
    def record(self) -> dict[str, Any]:
        """``config.json`` of the run (:func:`run_record`)."""
        return run_record(self.name, self.config)

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the config, which the run directory is claimed with."""
        return config_fingerprint(self.record)


@dataclass(frozen=True)
class RunOutput:
    """What computing a planned run gives back: its records, and the environment it computed them in."""

    tables: dict[str, pd.DataFrame]  # the records, as run.py returned them
    environment: dict[str, Any]  # environment.json of the process that computed them
    seconds: float  # wall time of run.py's run, in that process
    cpu_seconds: float  # CPU time of that process meanwhile (all its threads): the cost, whatever the load


def plan_run(
    name: str,
    out_dir: str | Path,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    full: bool = False,
    variant: str | None = None,
) -> PlannedRun:
    """Check the config of a run of ``name`` into ``out_dir`` (bad values raise :class:`ConfigError`) and resolve
    its device; nothing is written."""
    config = experiment_config(name, config_file, sets, full, variant)
    device = resolve_device(config_device(config))
    check_out_path(out_dir)
    return PlannedRun(name, Path(out_dir), config, str(device), Path(out_dir).absolute())


def compute_run(plan: PlannedRun, progress: bool = False) -> RunOutput:
    """The unit of work of a run: ``run.py``'s ``run(config, context)``, checkpointing into
    ``<out_dir>/checkpoints`` (resumed from there if a previous attempt left some). Writes no records:
    whoever claimed the run directory does (:func:`record_run`)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    tables = experiment_module(plan.name, "run").run(plan.config, RunContext(plan.absolute_dir, progress))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return RunOutput(tables, environment_info(plan.device), seconds, cpu_seconds)


def claim_planned_run(plan: PlannedRun, overwrite: bool = False) -> RunDirectory:
    """Claim the run directory of ``plan`` (:func:`rftgrad.results.claim_run_dir`, resumable)."""
    return claim_run_dir(plan.out_dir, f"run {plan.name}", plan.fingerprint, overwrite=overwrite, resumable=True)


def record_run(
    plan: PlannedRun, output: RunOutput, claim: RunDirectory, figures: bool = True
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], list[Path]]:
    """Write a computed run into its claimed directory: records, ``config.json``, ``config.toml``,
    ``environment.json`` (of the process that computed them), then score and figures; removes the
    checkpoints and marks the run finished."""
    out = claim.path
    write_run(out, plan.record, output.tables, plan.device, environment=output.environment)
    rerun = f"rftgrad run {plan.name} --config config.toml"
    atomic_write_text(out / "config.toml", configs.to_toml(plan.config, rerun))
    shutil.rmtree(RunContext(out).checkpoint_dir, ignore_errors=True)
    tables, score, figure_paths = analyse(plan.name, out, figures)
    claim.finish()
    return tables, score, figure_paths


def run_plans(
    plans: Mapping[str, PlannedRun],
    executor: Executor,
    on_recorded: Callable[[str, PlannedRun, RunOutput, dict[str, Any]], None] | None = None,
    *,
    overwrite: Callable[[PlannedRun], bool] | bool = False,
    costs: Mapping[str, float] | None = None,
    progress: bool = True,
    desc: str = "runs",
) -> None:
    """Run several planned runs (``label -> plan``) on ``executor``: one unit of work each (:func:`compute_run`).

    Every run directory is claimed before the first unit starts (:func:`claim_planned_run`; ``overwrite`` for all,
    or per plan), so a refused directory stops everything before any work. As each unit finishes, the driver
    writes its run (:func:`record_run`, no figures) and calls ``on_recorded(label, plan, output, score)``. A unit
    that fails leaves its directory as :func:`run_experiment` would (an :class:`RftgradError` removes a
    directory it created); an interruption keeps every finished run, and the checkpoints of unfinished ones
    for the next call to resume from. ``costs`` (label -> expected seconds) orders the units, largest first.
    Runs of the serial executor show their own progress bars; those on Ray do not (one bar counts the units).
    """
    claims: dict[str, RunDirectory] = {}
    try:
        for label, plan in plans.items():
            replace = overwrite(plan) if callable(overwrite) else overwrite
            claims[label] = claim_planned_run(plan, replace)
        inner_progress = progress and isinstance(executor, SerialExecutor)
        units = [
            Unit(
                label,
                compute_run,
                (plan, inner_progress),
                (costs or {}).get(label, 0.0),
                1.0 if "cuda" in plan.device else 0.0,
            )
            for label, plan in plans.items()
        ]

        def record(unit: Unit, output: RunOutput) -> None:
            plan = plans[unit.label]
            with claims.pop(unit.label) as claim:
                _, score, _ = record_run(plan, output, claim, figures=False)
            if on_recorded is not None:
                on_recorded(unit.label, plan, output, score)

        executor.map(units, record, progress, desc)
    except BaseException as error:
        for claim in claims.values():
            claim.__exit__(type(error), error, error.__traceback__)
        raise


def run_experiment(
    name: str,
    out_dir: str | Path,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    full: bool = False,
    progress: bool = True,
    variant: str | None = None,
    figures: bool = True,
    overwrite: bool = False,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], list[Path]]:
    """Run experiment ``name`` into ``out_dir``: records, then score and (unless ``figures=False``) figures.

    The config, the device and the output directory are checked first
    (:func:`rftgrad.results.claim_run_dir`), so bad values raise before anything is written, and
    a directory holding a finished run, another command's run or other files is refused unless
    ``overwrite``. If the run then fails with an :class:`RftgradError` in a directory it created,
    the directory is removed; an interruption (Ctrl-C) keeps its checkpoints, and running the
    same command again resumes from them. In steps: :func:`plan_run`, :func:`claim_planned_run`,
    :func:`compute_run`, :func:`record_run` (what the executors of :mod:`rftgrad.executors` run apart).
    """
    plan = plan_run(name, out_dir, config_file, sets, full, variant)
    with claim_planned_run(plan, overwrite) as claim:
        return record_run(plan, compute_run(plan, progress), claim, figures)


def analyse(
    name: str, out_dir: str | Path, figures: bool = True
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], list[Path]]:
    """Read a run directory's records, write ``score.json`` (strict JSON: :func:`rftgrad.results.strict_json`)
    and (unless ``figures=False``) the figures."""
    analysis = experiment_module(name, "analysis")
    out = Path(out_dir)
    tables = {path.stem: pd.read_csv(path) for path in sorted(out.glob("*.csv"))}
    score = analysis.score(tables)
    atomic_write_text(out / "score.json", strict_json(score))
    return tables, score, analysis.make_figures(tables, out) if figures else []

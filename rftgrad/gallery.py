"""Paper figures: one script per figure in ``paper_figures/``, drawn by ``rftgrad figures``.

A figure script ``paper_figures/<name>.py`` defines ``FIGURE``, a :class:`PaperFigure`: the
experiment whose results it reads, its budgets (``--set`` overrides of the experiment's
quick, full and tiny budgets), what it shows, the paper's counterpart, the claim it
supports, and ``draw``, which turns the experiment's records into a matplotlib figure and
the one measured number that matters. Scripts never train: :func:`make_figure` runs the
experiment first when its results are absent (or were made with another config), then
draws. The same run serves every figure that asks for the same experiment and settings.

Outputs, in ``out``: ``<name>.png`` and ``<name>.pdf``, ``<name>.json`` (the key number,
seconds, budget, commit, the images' sha256) and the manifest ``README.md`` with one row per
figure, rebuilt from the scripts and the ``.json`` files each time. ``rftgrad figures`` writes
to ``runs/figures/<budget>/gallery/`` unless asked for the checkout's gallery (``--gallery``);
:func:`check_outputs` keeps it from replacing hand-edited images, images it did not draw, or a
larger budget's. Runs go to ``runs/figures/<budget>/<experiment>[-<variant>][-<settings hash>]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rftgrad import configs
from rftgrad.errors import ConfigError, OutputError
from rftgrad.executors import Executor, SerialExecutor
from rftgrad.experiments.base import (
    PlannedRun,
    RunOutput,
    claim_planned_run,
    compute_run,
    experiment_module,
    plan_run,
    record_run,
    run_plans,
)
from rftgrad.plotting import save_figure
from rftgrad.results import atomic_write_text, read_run_record
from rftgrad.runtime import git_commit

__all__ = [
    "BUDGETS",
    "BUDGET_RANK",
    "MANIFEST_HEADER",
    "MANIFEST_KEPT",
    "ExperimentRun",
    "PaperFigure",
    "FigureResult",
    "figures_dir",
    "load_figures",
    "choose_figures",
    "check_budget",
    "run_dir",
    "FigureRunPlan",
    "plan_figure_run",
    "read_experiment_run",
    "ensure_run",
    "draw_figure",
    "make_figure",
    "recorded_seconds",
    "make_figures",
    "check_outputs",
    "write_manifest",
    "summary_table",
]

#: budgets of ``rftgrad figures``: quick (default, under 15 minutes on 2 CPU cores), full (paper scale),
#: tiny (seconds; for tests, the numbers mean nothing).
BUDGETS = ("quick", "full", "tiny")
#: budgets by size: a figure drawn at one is never replaced by a smaller one without ``overwrite``.
BUDGET_RANK = {"tiny": 0, "quick": 1, "full": 2}

#: the opening of ``paper_figures/README.md``, which ``rftgrad figures`` rewrites: title and table head.
MANIFEST_HEADER = """# Paper figures

Every figure below is drawn by the script of the same name from an experiment's records;
`rftgrad figures --gallery` regenerates all of them (`--only NAME` for one, `--full` for the
paper-scale budget). That command rebuilds this file: do not edit it by hand above the marker
line at its end; the part below the marker is written by hand and kept.

"""


#: the line of ``paper_figures/README.md`` after which the text is written by hand (e.g. the full-budget times)
#: and kept when ``rftgrad figures`` rebuilds the table above it.
MANIFEST_KEPT = "<!-- written by hand below this line; rftgrad figures keeps it -->"


@dataclass(frozen=True)
class ExperimentRun:
    """What a figure reads: an experiment's run directory, its tables, score and config."""

    out_dir: Path
    tables: dict[str, pd.DataFrame]
    score: dict[str, Any]
    config: dict[str, Any]

    def setting(self, name: str) -> Any:  # noqa: ANN401 - any config value
        """The run's config value of key ``name``, resolved as ``--set`` resolves it
        (:func:`rftgrad.configs.resolve_key`: ``"std_threshold"`` is ``trainer.std_threshold``)."""
        key = configs.resolve_key(experiment_module(self.config["experiment"], "config").Config, name)
        return configs.flatten(self.config)[key]


@dataclass(frozen=True)
class PaperFigure:
    """One figure: where its data come from, what it claims, and how to draw it."""

    name: str  # file stem of the figure (paper_figures/<name>.png)
    experiment: str  # experiment whose run it reads (see `rftgrad list`)
    shows: str  # one line: what the figure shows
    paper: str  # the paper's counterpart (figure / section), or "past the paper"
    claim: str  # the claim it supports
    draw: Callable[[ExperimentRun], tuple[Any, str]]  # run -> (matplotlib Figure, key number as text)
    variant: str | None = None  # the experiment's variant, if it has variants
    quick: tuple[str, ...] = ()  # `--set key=value` overrides of the experiment's default budget
    full: tuple[str, ...] = ()  # overrides on top of the experiment's --full budget
    tiny: tuple[str, ...] = ()  # overrides of the default budget that run in seconds (tests)
    order: int = 100  # place in the gallery and the manifest (then by name): the paper's order

    def sets(self, budget: str) -> tuple[str, ...]:
        """The ``--set`` overrides of ``budget``."""
        return {"quick": self.quick, "full": self.full, "tiny": self.tiny}[budget]

    def command(self) -> str:
        """The command that regenerates this figure."""
        return f"rftgrad figures --gallery --only {self.name}"


@dataclass(frozen=True)
class FigureResult:
    """What :func:`make_figure` did: the image, the seconds spent running and drawing, the key number."""

    name: str
    path: Path
    run_seconds: float
    draw_seconds: float
    reused_run: bool
    key_number: str
    run_cpu_seconds: float | None = None  # CPU time of the run's process (None: not measured, or reused)


def figures_dir(path: str | Path | None = None) -> Path:
    """``path``, else ``./paper_figures``, else ``paper_figures/`` next to the installed package (a checkout)."""
    candidates = [Path(path)] if path is not None else [Path.cwd() / "paper_figures"]
    if path is None:
        candidates.append(Path(__file__).resolve().parents[1] / "paper_figures")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"no paper_figures folder at {candidates[0]}; run from the repository root or pass --figures-dir")


def load_figures(directory: str | Path | None = None) -> dict[str, PaperFigure]:
    """Every ``FIGURE`` of the scripts ``<directory>/*.py`` (names starting with ``_`` are helpers), by name."""
    folder = figures_dir(directory)
    found: dict[str, PaperFigure] = {}
    for script in sorted(folder.glob("[!_]*.py")):
        spec = importlib.util.spec_from_file_location(f"rftgrad_paper_figure_{script.stem}", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        figure = getattr(module, "FIGURE", None)
        if not isinstance(figure, PaperFigure):
            raise ConfigError(f"{script} defines no FIGURE = PaperFigure(...)")
        if figure.name != script.stem:
            raise ConfigError(f"{script} names its figure {figure.name!r}; name it {script.stem!r} like the file")
        found[figure.name] = figure
    if not found:
        raise ConfigError(f"no figure scripts in {folder}")
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def choose_figures(figures: dict[str, PaperFigure], only: Sequence[str] | None) -> list[PaperFigure]:
    """The figures named in ``only`` (all if empty), in manifest order; unknown names raise :class:`ConfigError`."""
    if not only:
        return list(figures.values())
    unknown = [name for name in only if name not in figures]
    if unknown:
        raise ConfigError(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(figures)}")
    return [figures[name] for name in figures if name in only]


def check_budget(budget: str) -> None:
    """Raise :class:`ConfigError` unless ``budget`` is one of :data:`BUDGETS`."""
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}")


def _settings(figure: PaperFigure, budget: str, device: str | None) -> tuple[str, ...]:
    """The budget's ``--set`` overrides, plus ``device=...`` for experiments whose config has a device."""
    sets = figure.sets(budget)
    keys = configs.field_types(experiment_module(figure.experiment, "config").Config)
    has_device = any(key.rpartition(".")[2] == "device" for key in keys)  # its own or its trainer's
    return (*sets, f"device={device}") if device is not None and has_device else sets


def _run_name(figure: PaperFigure, sets: Sequence[str]) -> str:
    name = figure.experiment + (f"-{figure.variant}" if figure.variant else "")
    return name + ("-" + hashlib.sha256("\n".join(sets).encode()).hexdigest()[:8] if sets else "")


def run_dir(figure: PaperFigure, budget: str, runs_root: str | Path, device: str | None = None) -> Path:
    """``<runs_root>/<budget>/<experiment>[-<variant>][-<hash of the settings>]``: one run per distinct setting."""
    return Path(runs_root) / budget / _run_name(figure, _settings(figure, budget, device))


def _jsonable(value: Any) -> Any:  # noqa: ANN401 - any config value
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class FigureRunPlan:
    """Where a figure's experiment run lives and what it must hold (:func:`plan_figure_run`)."""

    plan: PlannedRun  # the run, config checked
    reusable: bool  # its directory holds a finished run of this config: nothing to compute
    stale: bool  # it holds a finished run of this experiment with another config, which is replaced


def plan_figure_run(
    figure: PaperFigure, budget: str, runs_root: str | Path, device: str | None = None
) -> FigureRunPlan:
    """The run ``figure`` reads at ``budget`` (:func:`run_dir`), checked, and whether it is there already."""
    check_budget(budget)
    sets = _settings(figure, budget, device)
    out = Path(runs_root) / budget / _run_name(figure, sets)
    plan = plan_run(figure.experiment, out, sets=sets, full=budget == "full", variant=figure.variant)
    expected = _jsonable(plan.record)
    reusable = False
    if (out / "score.json").exists() and (out / "config.json").exists():
        reusable = _jsonable(json.loads((out / "config.json").read_text(encoding="utf-8"))) == expected
    previous = read_run_record(out) if out.is_dir() and not reusable else None
    stale = previous is not None and previous.finished and previous.command == f"run {figure.experiment}"
    return FigureRunPlan(plan, reusable, stale)


def read_experiment_run(out_dir: str | Path) -> ExperimentRun:
    """The finished experiment run in ``out_dir``: its tables, score and stored config."""
    out = Path(out_dir)
    tables = {path.stem: pd.read_csv(path) for path in sorted(out.glob("*.csv"))}
    score = json.loads((out / "score.json").read_text(encoding="utf-8"))
    stored = json.loads((out / "config.json").read_text(encoding="utf-8"))
    return ExperimentRun(out, tables, score, stored)


def ensure_run(
    figure: PaperFigure,
    budget: str,
    runs_root: str | Path,
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[ExperimentRun, bool]:
    """The figure's experiment run, reused when its directory holds a finished run of the same config,
    else run there. Returns the run and whether it was reused.

    The directory is rftgrad's cache, named by the settings' hash: a finished run of the same experiment
    with another config (made by another version of the defaults) is replaced and an unfinished one of this
    config resumes; a directory holding anything else is refused unless ``overwrite``.
    """
    planned = plan_figure_run(figure, budget, runs_root, device)
    if not planned.reusable:
        with claim_planned_run(planned.plan, overwrite or planned.stale) as claim:
            record_run(planned.plan, compute_run(planned.plan, progress), claim, figures=False)  # the script draws
    return read_experiment_run(planned.plan.out_dir), planned.reusable


def draw_figure(
    figure: PaperFigure,
    run: ExperimentRun,
    budget: str,
    out_dir: str | Path,
    run_seconds: float,
    reused: bool,
    executor: str = "serial",
    run_cpu_seconds: float | None = None,
) -> FigureResult:
    """Draw ``figure`` from ``run``; save ``<name>.png`` / ``.pdf`` and ``<name>.json`` (key number, the seconds
    its run took, budget, executor, commit, the images' sha256) in ``out_dir``."""
    start = time.perf_counter()
    fig, key_number = figure.draw(run)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = save_figure(fig, out / figure.name)
    draw_seconds = time.perf_counter() - start
    result = FigureResult(figure.name, path, run_seconds, draw_seconds, reused, key_number, run_cpu_seconds)
    record = {
        "name": figure.name,
        "key_number": key_number,
        "budget": budget,
        "run_seconds": round(result.run_seconds, 1),
        "run_cpu_seconds": None if run_cpu_seconds is None else round(run_cpu_seconds, 1),
        "draw_seconds": round(result.draw_seconds, 1),
        "reused_run": reused,
        "executor": executor,
        "run_dir": _shown(run.out_dir),
        "git_commit": git_commit(),
        "sha256": {image.name: _sha256(image) for image in _images(out, figure)},
    }
    atomic_write_text(out / f"{figure.name}.json", json.dumps(record, indent=2) + "\n")
    return result


def make_figure(
    figure: PaperFigure,
    budget: str = "quick",
    out_dir: str | Path = "paper_figures",
    runs_root: str | Path = "runs/figures",
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> FigureResult:
    """Run the figure's experiment if needed, draw it, save ``<name>.png`` / ``.pdf`` / ``.json`` in ``out_dir``.

    What is there already is replaced only as :func:`check_outputs` allows (checked before the run);
    ``overwrite`` also lets a stale run directory of another kind be replaced (:func:`ensure_run`).
    """
    return make_figures([figure], budget, out_dir, runs_root, device, progress, overwrite)[0]


def recorded_seconds(figure: PaperFigure, *folders: str | Path) -> float:
    """The ``run_seconds`` last recorded for ``figure`` in the first of ``folders`` that has its ``.json``
    (0 if none): how long its run took before, which orders the units of :func:`make_figures`."""
    for folder in folders:
        try:
            record = json.loads((Path(folder) / f"{figure.name}.json").read_text(encoding="utf-8"))
            return float(record.get("run_seconds", 0.0))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return 0.0


def make_figures(
    figures: Sequence[PaperFigure],
    budget: str = "quick",
    out_dir: str | Path = "paper_figures",
    runs_root: str | Path = "runs/figures",
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    executor: Executor | None = None,
    manifest: dict[str, PaperFigure] | None = None,
) -> list[FigureResult]:
    """Draw every figure of ``figures``, their missing runs computed as units of ``executor`` (default serial).

    Runs shared by several figures are computed once; each figure is drawn (in this process) as soon as its run
    is written, and the manifest ``README.md`` of the figures ``manifest`` (if given) rewritten after each.
    Units start with the run that took longest last time (:func:`recorded_seconds`, in ``out_dir`` and then the
    checkout's gallery). Returns the results in the order of ``figures``.
    """
    executor = executor or SerialExecutor()
    check_outputs(figures, budget, out_dir, overwrite)  # before anything runs
    planned = {figure.name: plan_figure_run(figure, budget, runs_root, device) for figure in figures}
    readers: dict[Path, list[PaperFigure]] = {}
    for figure in figures:
        readers.setdefault(planned[figure.name].plan.out_dir, []).append(figure)
    results: dict[str, FigureResult] = {}

    def draw_all(run_path: Path, output: RunOutput | None) -> None:
        run = read_experiment_run(run_path)
        for index, figure in enumerate(readers[run_path]):
            ran = output if index == 0 else None  # the first figure of a run carries its times; the rest reuse it
            results[figure.name] = draw_figure(
                figure, run, budget, out_dir, 0.0 if ran is None else ran.seconds, ran is None, executor.name,
                None if ran is None else ran.cpu_seconds,
            )  # fmt: skip
            if manifest is not None:
                write_manifest(manifest, out_dir)

    to_run: dict[str, PlannedRun] = {}
    costs: dict[str, float] = {}
    stale: set[Path] = set()
    for path, sharing in readers.items():
        first = planned[sharing[0].name]
        if first.reusable:
            draw_all(path, None)
            continue
        label = ", ".join(figure.name for figure in sharing) + f" ({first.plan.name})"
        to_run[label] = first.plan
        costs[label] = max(recorded_seconds(figure, out_dir, figures_dir()) for figure in sharing)
        if first.stale:
            stale.add(path)

    def recorded(label: str, plan: PlannedRun, output: RunOutput, score: dict[str, Any]) -> None:
        draw_all(plan.out_dir, output)

    run_plans(
        to_run,
        executor,
        recorded,
        overwrite=lambda plan: overwrite or plan.out_dir in stale,
        costs=costs,
        progress=progress,
        desc="figure runs",
    )
    return [results[figure.name] for figure in figures if figure.name in results]


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (as the user typed it), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _images(out_dir: Path, figure: PaperFigure) -> list[Path]:
    """The image files of ``figure`` in ``out_dir`` (``<name>.png`` and ``<name>.pdf``) that exist."""
    return [path for path in (out_dir / f"{figure.name}.png", out_dir / f"{figure.name}.pdf") if path.exists()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_outputs(figures: Sequence[PaperFigure], budget: str, out_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse, before anything runs, to replace in ``out_dir`` what drawing ``figures`` at ``budget`` should not:

    * an image with no ``<name>.json`` beside it (not drawn by rftgrad), or changed since rftgrad drew it
      (its sha256 differs from the one recorded: edited by hand);
    * an image drawn at a larger budget (a ``--tiny`` run never replaces the quick gallery);
    * a ``README.md`` that is not rftgrad's manifest.

    ``overwrite=True`` (``--overwrite``) allows all of these. Raises :class:`~rftgrad.errors.OutputError`
    (:class:`ConfigError` for an unknown budget).
    """
    check_budget(budget)
    out = Path(out_dir)
    fix = "pass --overwrite to replace it, or choose another --out"
    for figure in [] if overwrite else figures:
        images = _images(out, figure)
        record_path = out / f"{figure.name}.json"
        if not images:
            continue
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            drawn_at, digests = record["budget"], record.get("sha256", {})
        except (OSError, ValueError, KeyError, TypeError):
            no_record = f"{images[0]} was not drawn by rftgrad figures (no readable {record_path.name}); {fix}"
            raise OutputError(no_record) from None
        if BUDGET_RANK.get(drawn_at, 0) > BUDGET_RANK[budget]:
            smaller = f"{images[0]} was drawn at the {drawn_at} budget and a {budget} run would replace it; {fix}"
            raise OutputError(smaller)
        for image in images:
            if image.name in digests and digests[image.name] != _sha256(image):
                raise OutputError(f"{image} changed since rftgrad drew it (edited by hand?); {fix}")
    manifest = out / "README.md"
    if not overwrite and manifest.exists():
        head = manifest.read_bytes()[: len(MANIFEST_HEADER)].decode("utf-8", "replace")
        if not head.startswith(MANIFEST_HEADER.splitlines()[0]):
            raise OutputError(f"{manifest} is not rftgrad's figure manifest; {fix}")


def write_manifest(figures: dict[str, PaperFigure], out_dir: str | Path) -> Path:
    """``<out_dir>/README.md``: one row per figure drawn into ``out_dir`` (file, shows, paper, claim, command,
    measured number), in script order; what an existing one holds after :data:`MANIFEST_KEPT` is kept."""
    out = Path(out_dir)
    rows = ["| figure | what it shows | paper | claim | command | measured |", "| --- | --- | --- | --- | --- | --- |"]
    for figure in figures.values():
        record_path = out / f"{figure.name}.json"
        if not record_path.exists():
            continue
        record = json.loads(record_path.read_text(encoding="utf-8"))
        cells = [
            f"[`{figure.name}.png`]({figure.name}.png)",
            figure.shows,
            figure.paper,
            figure.claim,
            f"`{figure.command()}`" + (" `--full`" if record["budget"] == "full" else ""),
            f"{record['key_number']} ({record['budget']} budget)",
        ]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    manifest = out / "README.md"
    previous = manifest.read_text(encoding="utf-8") if manifest.exists() else ""
    kept = "\n" + previous[previous.index(MANIFEST_KEPT) :] if MANIFEST_KEPT in previous else ""
    return atomic_write_text(manifest, MANIFEST_HEADER + "\n".join(rows) + "\n" + kept)


def summary_table(results: Sequence[FigureResult], wall_seconds: float | None = None) -> str:
    """The closing table of ``rftgrad figures``: figure, seconds (run + draw), the run's CPU seconds where
    measured, key number; the total, and the wall time when given (runs in parallel, on Ray, take less wall
    time than their sum)."""
    width = max([len("figure"), *(len(r.name) for r in results)])
    lines = [f"{'figure':<{width}}  {'seconds':>8}  {'cpu s':>8}  key number"]
    for r in results:
        seconds = f"{r.run_seconds + r.draw_seconds:8.1f}" + ("*" if r.reused_run else " ")
        cpu = f"{r.run_cpu_seconds:8.1f}" if r.run_cpu_seconds is not None else f"{'':8}"
        lines.append(f"{r.name:<{width}}  {seconds} {cpu}  {r.key_number}")
    total = sum(r.run_seconds + r.draw_seconds for r in results)
    lines.append(f"{'total':<{width}}  {total:8.1f}   (* results reused from an earlier run)")
    if wall_seconds is not None:
        lines.append(f"{'wall time':<{width}}  {wall_seconds:8.1f}")
    return "\n".join(lines)

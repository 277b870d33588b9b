"""Where units of work run: in this process one after another (``serial``, the default and the reference), or
as Ray tasks on a local Ray instance or a cluster (``ray``).

A :class:`Unit` is a call ``function(*args)`` of a module-level function (picklable by reference), with a
label and an expected cost. An executor's :meth:`Executor.map` runs the units and hands each result back to
the driver, in this process, as soon as that unit finishes (``on_result(unit, value)``): the driver, and only
the driver, writes run directories (records come back through Ray's object store, so a worker on another
machine needs no shared file system for them). Units are independent: their results do not depend on which
executor ran them or in which order, so the same config and seed give the same records, bitwise, at the same
thread count (each unit runs with the thread choice of the command, :func:`rftgrad.runtime.use_threads`).

The commands built on it (``rftgrad sweep``, ``rftgrad figures``, ``rftgrad check``; ``--executor`` and
``--address``) claim every unit's output before the first unit runs, skip units whose output is finished
(resume), and keep what finished when the driver is interrupted. With Ray, a worker process that dies
mid-unit (killed, out of memory) is retried by Ray up to ``max_retries`` times; its partial output never
reaches the driver, and a unit that checkpoints resumes from its checkpoints when the retry runs on the same
machine. An error raised by a unit itself is not retried: the other units finish, then the first such error
is raised in the driver.

Ray is an optional extra (``pip install -e ".[ray]"``); this module imports it only inside
:class:`RayExecutor`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from rftgrad.errors import ConfigError, RftgradError, first_line
from rftgrad.registry import EXECUTORS
from rftgrad.runtime import ThreadChoice, choose_threads, use_threads

__all__ = [
    "EXECUTORS",
    "RAY_INSTALL_HINT",
    "Unit",
    "UnitError",
    "Executor",
    "SerialExecutor",
    "RayExecutor",
    "make_executor",
    "run_unit",
]

#: what to run when ``--executor ray`` finds no Ray installed.
RAY_INSTALL_HINT = 'install Ray with pip install -e ".[ray]" (or pip install -c constraints.txt ray)'


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``function(*args)``; ``function`` is a module-level function (Ray pickles it by name)."""

    label: str  # what the progress bar and errors call it ("point 3: lr=0.1", "figure prevalence")
    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    cost: float = 0.0  # expected seconds, or any relative cost: units start largest first (0: keep the order)
    gpus: float = 0.0  # GPUs the unit asks Ray for (1 when the command runs with --device cuda)


class UnitError(RftgradError):
    """A unit of work failed with one of rftgrad's own errors (bad input found mid-run); names the unit."""


def run_unit(function: Callable[..., Any], args: tuple[Any, ...], threads: ThreadChoice) -> Any:  # noqa: ANN401
    """Call ``function(*args)`` with ``threads`` intra-op torch threads (the command's choice), as a worker does."""
    with use_threads(threads):
        return function(*args)


OnResult = Callable[[Unit, Any], None]


@dataclass
class Executor:
    """Runs units and hands each result to ``on_result`` in the driver as it finishes (see the module doc)."""

    threads: ThreadChoice = field(default_factory=choose_threads)  # intra-op torch threads of every unit
    name: str = "serial"

    def map(self, units: Sequence[Unit], on_result: OnResult, progress: bool = True, desc: str = "units") -> None:
        """Run ``units``; call ``on_result(unit, value)`` for each as it finishes. Raises the first unit's error
        (an :class:`UnitError` for one of rftgrad's errors) after the others are done."""
        raise NotImplementedError


def _ordered(units: Sequence[Unit]) -> list[Unit]:
    """Largest expected cost first (longest-processing-time scheduling); ties keep their order."""
    return sorted(units, key=lambda unit: -unit.cost)


def _unit_error(unit: Unit, error: RftgradError) -> UnitError:
    return UnitError(f"{unit.label}: {first_line(error)}")


@dataclass
class SerialExecutor(Executor):
    """Every unit in this process, one after another, in the given order: the reference executor."""

    name: str = "serial"

    def map(self, units: Sequence[Unit], on_result: OnResult, progress: bool = True, desc: str = "units") -> None:
        first_error: BaseException | None = None
        with tqdm(total=len(units), desc=desc, unit="unit", disable=not progress or len(units) < 2) as bar:
            for unit in units:
                bar.set_postfix_str(unit.label)
                try:
                    value = run_unit(unit.function, unit.args, self.threads)
                except RftgradError as error:
                    first_error = first_error or _unit_error(unit, error)
                else:
                    on_result(unit, value)
                bar.update()
        if first_error is not None:
            raise first_error


def _ray() -> Any:  # noqa: ANN401 - the ray module
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass
class RayExecutor(Executor):
    """Each unit a Ray task, ``threads.count`` CPUs (and ``Unit.gpus`` GPUs) each.

    ``address=None`` starts a local Ray instance sized to this machine (every CPU core this process may run
    on, every visible GPU) and stops it when done, unless Ray is already initialised in this process, which
    is then used as it is; ``"auto"`` joins the cluster this machine is part of (``ray start``),
    ``"ray://host:10001"`` a remote one through Ray Client, ``"host:6379"`` a cluster's head. A worker that
    dies is retried up to ``max_retries`` times; an exception raised by the unit is not retried.
    """

    address: str | None = None
    max_retries: int = 3
    name: str = "ray"
    dashboard_url: str | None = field(default=None, init=False)  # set while a started or joined Ray has one

    def _start(self) -> bool:
        """Initialise Ray if needed; returns whether this call did (and so must shut it down)."""
        ray = _ray()
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if self.address is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            options.update(num_cpus=cores, num_gpus=_gpu_count())
        else:
            options["address"] = self.address
        try:
            context = ray.init(**options)
        except ConnectionError as error:
            message = f"could not join the Ray cluster at {self.address!r} ({error}); check --address"
            raise ConfigError(message) from None
        self.dashboard_url = getattr(context, "dashboard_url", None) or None
        return True

    def map(self, units: Sequence[Unit], on_result: OnResult, progress: bool = True, desc: str = "units") -> None:
        if not units:
            return
        ray = _ray()
        started = self._start()
        try:
            self._map(ray, units, on_result, progress, desc)
        except BaseException:
            if started:  # stop (or leave) Ray; an error of Ray's own must not hide why we stopped
                with contextlib.suppress(Exception):
                    ray.shutdown()
            raise
        if started:
            ray.shutdown()

    def _map(self, ray: Any, units: Sequence[Unit], on_result: OnResult, progress: bool, desc: str) -> None:  # noqa: ANN401
        from ray.exceptions import RayTaskError

        cpus = self.threads.count
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        if self.dashboard_url and progress:
            print(f"Ray dashboard: http://{self.dashboard_url.removeprefix('http://')}", file=sys.stderr)
        task = ray.remote(run_unit)
        pending = {}
        for unit in _ordered(units):
            options = {"num_cpus": cpus, "num_gpus": unit.gpus, "max_retries": self.max_retries, "name": unit.label}
            reference = task.options(**options).remote(unit.function, unit.args, self.threads)
            pending[reference] = unit
        finished = failed = 0
        first_error: BaseException | None = None
        start = time.perf_counter()
        # An interrupted driver leaves its unfinished tasks to Ray, which ends a job's tasks when the job's driver
        # disconnects (map shuts Ray down, or leaves the cluster it joined). No ray.cancel(force=True): racing a
        # task that is just finishing, it can abort the driver inside Ray (Ray 2.60, task_manager.cc "Check
        # failed"), which would hide the interruption.
        with tqdm(total=len(units), desc=desc, unit="unit", disable=not progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for reference in done:
                    unit = pending.pop(reference)
                    try:
                        value = ray.get(reference)
                    except RayTaskError as error:
                        failed += 1
                        cause = error.cause
                        if isinstance(cause, RftgradError):
                            first_error = first_error or _unit_error(unit, cause)
                        else:
                            first_error = first_error or error  # a bug: its remote traceback is in str(error)
                    else:
                        finished += 1
                        on_result(unit, value)
                    bar.update()
                running = min(len(pending), slots)
                bar.set_postfix_str(
                    f"running {running}, queued {len(pending) - running}, finished {finished}, failed {failed}"
                )
        if progress:
            print(
                f"{desc}: {finished} finished, {failed} failed, on Ray ({slots} at a time), "
                f"{time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
        if first_error is not None:
            raise first_error


def make_executor(name: str = "serial", address: str | None = None, threads: ThreadChoice | None = None) -> Executor:
    """The executor ``--executor NAME [--address ADDR]`` asks for (:data:`EXECUTORS`).

    Raises:
        * :exc:`ConfigError`: an unknown name, ``--address`` without Ray, or Ray not installed.
    """
    choice = threads if threads is not None else choose_threads()
    if name == "serial":
        if address is not None:
            raise ConfigError("--address names a Ray cluster: add --executor ray, or drop --address")
        return SerialExecutor(threads=choice)
    if name == "ray":
        _ray()  # installed? (say so before anything runs)
        return RayExecutor(threads=choice, address=address)
    raise ConfigError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")

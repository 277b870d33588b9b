"""The property check behind ``rftgrad check``: every bound on many random instances.

Draws :class:`~rftgrad.theory.instances.InstanceSpec` at random, evaluates
:func:`~rftgrad.theory.bounds.bound_table` on each, and summarises per policy class:
examples, inputs, the largest ratio gradient / bound for every bound, and violations.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rftgrad.errors import ConfigError
from rftgrad.executors import Executor, SerialExecutor, Unit
from rftgrad.results import read_checksummed, write_checksummed
from rftgrad.runtime import is_count
from rftgrad.theory.bounds import BOUNDS, bound_columns, columns_as_arrays
from rftgrad.theory.instances import InstanceSpec, random_instance


def check_specs(specs: list[InstanceSpec], progress: bool = True, first_example: int = 0) -> pd.DataFrame:
    """One row per (example, input): the spec's fields, the bound table's columns and
    ``seconds`` (the time of that example, building it included). Examples are numbered from
    ``first_example`` (a chunk of a longer draw, :func:`run_check`).

    Each example is evaluated as tensors (:func:`~rftgrad.theory.bounds.bound_columns`); the rows of
    all examples become one DataFrame at the end (no DataFrame per example)."""
    columns: dict[str, list] = {}
    for example, spec in enumerate(tqdm(specs, desc="bound check", unit="example", disable=not progress)):
        start = time.perf_counter()
        env, policy = random_instance(spec)
        arrays = columns_as_arrays(bound_columns(policy, env))
        seconds = time.perf_counter() - start
        rows = len(arrays["replica"])
        number = first_example + example
        for key, value in {**arrays, "example": number, "seconds": seconds, **spec.as_dict()}.items():
            part = value.tolist() if isinstance(value, np.ndarray) else [value] * rows
            columns.setdefault(key, []).extend(part)
    return pd.DataFrame(columns)


def bound_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per policy class (``kind``) of a bound table (:func:`check_specs`, one row per example and
    input): ``examples`` (distinct examples), ``inputs``, ``max_ratio_<bound>`` (the largest ratio
    ‖∇V‖ / bound over the inputs, for every bound of :data:`~rftgrad.theory.BOUNDS`; Theorem 1,
    docs/paper.md §2) and ``violations`` (inputs whose gradient exceeds a bound)."""
    table = [
        {
            "kind": str(kind),
            "examples": int(part["example"].nunique()),
            "inputs": len(part),
            **{f"max_ratio_{name}": float(part[f"ratio_{name}"].max()) for name in BOUNDS},
            "violations": int(part["violation"].sum()),
        }
        for kind, part in rows.groupby("kind")
    ]
    return pd.DataFrame(table)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`bound_summary` per policy class plus a row ``all`` over every class, each with ``examples_per_s``."""
    seconds = rows.groupby("example")["seconds"].first()  # one value per example: the time it took
    kinds = rows.groupby("example")["kind"].first()
    overall = bound_summary(rows.assign(kind="all"))
    table = pd.concat([bound_summary(rows), overall], ignore_index=True)
    per_kind_seconds = {**seconds.groupby(kinds).sum().to_dict(), "all": seconds.sum()}
    table["examples_per_s"] = table["examples"] / table["kind"].map(per_kind_seconds)
    return table


#: examples per unit of work of a chunked check (:func:`run_check` with an executor or a checkpoint folder).
CHECK_CHUNK = 100


def run_check(
    specs: list[InstanceSpec],
    progress: bool = True,
    executor: Executor | None = None,
    chunk_size: int = CHECK_CHUNK,
    checkpoint_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate ``specs``; returns (rows, summary).

    Serially (``executor`` None or serial) without ``checkpoint_dir``: one pass in this process
    (:func:`check_specs`), with a bar per example. Otherwise in chunks of ``chunk_size`` examples, one unit of
    work each on ``executor`` (see :mod:`rftgrad.executors`): every finished chunk's rows are kept in
    ``checkpoint_dir`` (if given), and chunks found there are not computed again, so an interrupted check
    resumes. Each example's rows depend only on its spec, so the rows are the same however they were chunked,
    except ``seconds`` (timings).
    """
    if (executor is None or isinstance(executor, SerialExecutor)) and checkpoint_dir is None:
        rows = check_specs(specs, progress)
        return rows, summarize(rows)
    if not is_count(chunk_size):
        raise ConfigError(f"chunk_size={chunk_size!r} is invalid: give an integer number of examples >= 1")
    executor = executor or SerialExecutor()
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    starts = range(0, len(specs), chunk_size)
    chunks: dict[str, tuple[int, list[InstanceSpec]]] = {
        f"examples {start}-{min(start + chunk_size, len(specs)) - 1}": (start, specs[start : start + chunk_size])
        for start in starts
    }

    def saved(start: int, count: int) -> Path | None:
        return None if folder is None else folder / f"rows-{start:09d}-{count}.pickle"

    done: dict[int, pd.DataFrame] = {}
    for start, chunk in chunks.values():
        path = saved(start, len(chunk))
        if path is not None and path.exists():
            done[start] = pickle.loads(read_checksummed(path))

    def keep(unit: Unit, frame: pd.DataFrame) -> None:
        start, chunk = chunks[unit.label]
        done[start] = frame
        path = saved(start, len(chunk))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_checksummed(path, pickle.dumps(frame))

    units = [
        Unit(label, check_specs, (chunk, False, start), cost=len(chunk))
        for label, (start, chunk) in chunks.items()
        if start not in done
    ]
    executor.map(units, keep, progress, "bound check")
    rows = pd.concat([done[start] for start in starts], ignore_index=True) if specs else check_specs([], False)
    return rows, summarize(rows)

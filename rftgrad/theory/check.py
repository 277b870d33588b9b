"""The property check behind ``rftgrad check``: every bound on many random instances.

Draws :class:`~rftgrad.theory.instances.InstanceSpec` at random, evaluates
:func:`~rftgrad.theory.bounds.bound_table` on each, and summarises per policy class:
examples, inputs, the largest ratio gradient / bound for every bound, and violations.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rftgrad.theory.bounds import BOUNDS, bound_columns, columns_as_arrays
from rftgrad.theory.instances import InstanceSpec, random_instance


def check_specs(specs: list[InstanceSpec], progress: bool = True) -> pd.DataFrame:
    """One row per (example, input): the spec's fields, the bound table's columns and
    ``seconds`` (the time of that example, building it included).

    Each example is evaluated as tensors (:func:`~rftgrad.theory.bounds.bound_columns`); the rows of
    all examples become one DataFrame at the end (no DataFrame per example)."""
    columns: dict[str, list] = {}
    for example, spec in enumerate(tqdm(specs, desc="bound check", unit="example", disable=not progress)):
        start = time.perf_counter()
        env, policy = random_instance(spec)
        arrays = columns_as_arrays(bound_columns(policy, env))
        seconds = time.perf_counter() - start
        rows = len(arrays["replica"])
        for key, value in {**arrays, "example": example, "seconds": seconds, **spec.as_dict()}.items():
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


def run_check(specs: list[InstanceSpec], progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate ``specs``; returns (rows, summary)."""
    rows = check_specs(specs, progress)
    return rows, summarize(rows)

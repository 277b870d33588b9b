"""The property check behind ``rftgrad check``: every bound on many random instances.

Draws :class:`~rftgrad.theory.instances.InstanceSpec` at random, evaluates
:func:`~rftgrad.theory.bounds.bound_table` on each, and summarises per policy class:
examples, inputs, the largest ratio gradient / bound for every bound, and violations.
"""

from __future__ import annotations

import time

import pandas as pd
from tqdm.auto import tqdm

from rftgrad.theory.bounds import BOUNDS, bound_table
from rftgrad.theory.instances import InstanceSpec, random_instance


def check_specs(specs: list[InstanceSpec], progress: bool = True) -> pd.DataFrame:
    """One row per (example, input): the spec's fields, the bound table's columns and
    ``seconds`` (the time of that example, building it included)."""
    frames = []
    for example, spec in enumerate(tqdm(specs, desc="bound check", unit="example", disable=not progress)):
        start = time.perf_counter()
        env, policy = random_instance(spec)
        frame = bound_table(policy, env)
        seconds = time.perf_counter() - start
        for key, value in {"example": example, "seconds": seconds, **spec.as_dict()}.items():
            frame[key] = value
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per policy class and overall: examples, inputs, max ratio per bound, violations, examples/s."""
    per_example = rows.groupby("example").first()  # one row per example: its kind and its seconds

    def summary_row(kind: str, part: pd.DataFrame, examples: pd.DataFrame) -> dict[str, object]:
        return {
            "kind": kind,
            "examples": len(examples),
            "inputs": len(part),
            **{f"max_ratio_{name}": part[f"ratio_{name}"].max() for name in BOUNDS},
            "violations": int(part["violation"].sum()),
            "examples_per_s": len(examples) / examples["seconds"].sum(),
        }

    table = [summary_row(kind, part, per_example[per_example["kind"] == kind]) for kind, part in rows.groupby("kind")]
    table.append(summary_row("all", rows, per_example))
    return pd.DataFrame(table)


def run_check(specs: list[InstanceSpec], progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate ``specs``; returns (rows, summary)."""
    rows = check_specs(specs, progress)
    return rows, summarize(rows)

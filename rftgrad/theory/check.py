"""The property check behind ``rftgrad check``: every bound on many random instances.

Draws :class:`~rftgrad.theory.instances.InstanceSpec` at random, evaluates
:func:`~rftgrad.theory.bounds.bound_table` on each, and summarises per policy class:
examples, inputs, the largest ratio gradient / bound for every bound, and violations.
"""

from __future__ import annotations

import pickle
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rftgrad.errors import ConfigError
from rftgrad.executors import Executor, SerialExecutor, Unit
from rftgrad.results import read_checksummed, write_checksummed
from rftgrad.runtime import is_count
from rftgrad.theory.batched import ReplicaEnvs, stack_replicas
from rftgrad.theory.bounds import BOUNDS, bound_columns, columns_as_arrays
from rftgrad.theory.instances import HF_POLICY_KINDS, InstanceSpec, random_instance

#: instances evaluated together at most: a batch is one evaluation with a replica per instance
#: (:func:`check_specs`); 32 amortises the per-program overhead (measured in benchmarks/check.py).
CHECK_BATCH = 32
#: and at most this many numbers ``R·N·V^L`` (replicas, inputs, outputs) per batch, so that a batch of large
#: output spaces stays as small in memory as a few single instances (γ's calls are bounded by ``JACOBIAN_BUDGET``).
CHECK_BATCH_OUTPUTS = 2**16


#: policy classes whose batches hold instances of one ``N`` (no padded inputs): tabular (a logit table per
#: input) and the transformer, whose tiny instances are compute-bound, so padded inputs cost real time
#: (measured 13-39% fewer transformer examples/s with padding, four interleaved runs on the CLI's 2000 draw).
SAME_N_KINDS = ("tabular", "transformer")


def batch_key(spec: InstanceSpec) -> tuple[object, ...] | None:
    """What instances must share to be evaluated as the replicas of one evaluation: the policy class, ``V``,
    ``L``, the feature map (linear) and, for ``SAME_N_KINDS``, ``N`` (the MLP and linear policies pad
    fewer inputs, :class:`~rftgrad.theory.batched.ReplicaEnvs`). ``None``: evaluated alone (HF kinds)."""
    if spec.kind in HF_POLICY_KINDS:
        return None
    feature_map = spec.feature_map if spec.kind == "linear" else None
    inputs = spec.num_inputs if spec.kind in SAME_N_KINDS else None
    return spec.kind, spec.vocab_size, spec.length, feature_map, inputs


def plan_batches(specs: list[InstanceSpec], batch_size: int = CHECK_BATCH) -> list[list[int]]:
    """The indices of ``specs`` in batches of one :func:`batch_key`, each of at most ``batch_size`` instances and
    :data:`CHECK_BATCH_OUTPUTS` numbers (a single instance may exceed it), in order of their first instance."""
    if not is_count(batch_size):
        raise ConfigError(f"batch_size={batch_size!r} is invalid: give an integer number of instances >= 1")
    batches: list[list[int]] = []
    open_batch: dict[object, list[int]] = {}  # key -> the batch still filling
    for index, spec in enumerate(specs):
        key = batch_key(spec)
        batch = open_batch.get(key) if key is not None else None
        size = spec.num_inputs * spec.vocab_size**spec.length
        if batch is None or len(batch) >= batch_size or (len(batch) + 1) * size > CHECK_BATCH_OUTPUTS:
            batch = []
            batches.append(batch)
            if key is not None:
                open_batch[key] = batch
        batch.append(index)
    return batches


def _batch_columns(specs: list[InstanceSpec]) -> list[dict[str, np.ndarray]]:
    """The bound columns of each instance of one batch (:func:`plan_batches`), as :func:`columns_as_arrays`:
    one evaluation with replica ``r`` = instance ``r`` (its own parameters, temperature, inputs and rewards),
    the rows of each instance's real inputs cut out. A batch of one is evaluated as it is."""
    instances = [random_instance(spec) for spec in specs]
    if len(instances) == 1:
        env, policy = instances[0]
        return [columns_as_arrays(bound_columns(policy, env))]
    envs = ReplicaEnvs([env for env, _ in instances])
    columns = bound_columns(stack_replicas([policy for _, policy in instances]), envs)  # name -> (B, N)
    return [
        columns_as_arrays({key: value[replica : replica + 1, :count] for key, value in columns.items()})
        for replica, count in enumerate(envs.input_counts)
    ]


def check_batches(
    specs: list[InstanceSpec], batches: list[list[int]], numbers: list[int], progress: bool = False
) -> pd.DataFrame:
    """The rows of ``batches`` (lists of indices into ``specs``, e.g. :func:`plan_batches`), example ``i``
    numbered ``numbers[i]``, in the order of ``numbers``: what :func:`check_specs` and each unit of work of
    :func:`run_check` compute. A batch's rows depend only on its specs, so they are the same bit for bit
    in whichever call or process the batch is evaluated."""
    arrays: dict[int, dict[str, np.ndarray]] = {}
    seconds: dict[int, float] = {}
    with tqdm(total=sum(map(len, batches)), desc="bound check", unit="example", disable=not progress) as bar:
        for batch in batches:
            start = time.perf_counter()
            for index, columns in zip(batch, _batch_columns([specs[i] for i in batch]), strict=True):
                arrays[index] = columns
            share = (time.perf_counter() - start) / len(batch)
            seconds.update(dict.fromkeys(batch, share))
            bar.update(len(batch))
    columns: dict[str, list] = {}
    for index in sorted(arrays, key=lambda i: numbers[i]):
        rows = len(arrays[index]["replica"])
        extra = {"example": numbers[index], "seconds": seconds[index], **specs[index].as_dict()}
        for key, value in {**arrays[index], **extra}.items():
            part = value.tolist() if isinstance(value, np.ndarray) else [value] * rows
            columns.setdefault(key, []).extend(part)
    return pd.DataFrame(columns)


def check_specs(
    specs: list[InstanceSpec], progress: bool = True, first_example: int = 0, batch_size: int = CHECK_BATCH
) -> pd.DataFrame:
    """One row per (example, input): the spec's fields, the bound table's columns and ``seconds``.
    Examples are numbered from ``first_example``.

    Instances of one shape (:func:`batch_key`) are evaluated together, up to ``batch_size`` at a time
    (:func:`plan_batches`, :func:`check_batches`): the replicas of one
    :func:`~rftgrad.theory.bounds.bound_columns` call on :class:`~rftgrad.theory.batched.ReplicaEnvs`, one
    tensor program for the batch instead of one per instance. Each instance's rows are those of its
    evaluation alone, to round-off (tests/theory/test_check_batches.py), and keep their order;
    ``batch_size=1`` evaluates every instance alone. ``seconds`` is the time of the example's batch (building
    its instances included) divided by the batch's size. The rows of all examples become one DataFrame at
    the end (no DataFrame per example)."""
    numbers = [first_example + index for index in range(len(specs))]
    return check_batches(specs, plan_batches(specs, batch_size), numbers, progress)


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

    The batches are planned over all of ``specs`` (:func:`plan_batches`). Serially (``executor`` None or
    serial) without ``checkpoint_dir``: one pass in this process (:func:`check_specs`), with a bar per
    example. Otherwise in units of work of whole batches, consecutive in the plan, about ``chunk_size``
    examples each (at least one batch, so a unit may hold up to :data:`CHECK_BATCH`), on ``executor`` (see
    :mod:`rftgrad.executors`): every finished unit's rows are kept in ``checkpoint_dir`` (if given), and units
    found there are not computed again, so an interrupted check resumes. Each batch's rows depend only on its
    specs, so the rows are the same bit for bit however the work was chunked, except ``seconds`` (timings).
    """
    if (executor is None or isinstance(executor, SerialExecutor)) and checkpoint_dir is None:
        rows = check_specs(specs, progress)
        return rows, summarize(rows)
    if not is_count(chunk_size):
        raise ConfigError(f"chunk_size={chunk_size!r} is invalid: give an integer number of examples >= 1")
    executor = executor or SerialExecutor()
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    groups: list[list[list[int]]] = [[]]  # units of work, each a list of batches
    for batch in plan_batches(specs):
        if sum(map(len, groups[-1])) >= chunk_size:
            groups.append([])
        groups[-1].append(batch)
    chunks: dict[str, tuple[list[int], Path | None]] = {}  # label -> (example numbers, checkpoint file)
    for group in groups if specs else []:
        numbers = sorted(index for batch in group for index in batch)
        tag = zlib.crc32(",".join(map(str, numbers)).encode())  # which examples, beyond the first and count
        name = f"rows-{numbers[0]:09d}-{len(numbers)}-{tag:08x}.pickle"
        label = f"examples {numbers[0]}..{numbers[-1]} ({len(numbers)})"
        chunks[label] = (numbers, None if folder is None else folder / name)

    done: dict[str, pd.DataFrame] = {}
    for label, (_, path) in chunks.items():
        if path is not None and path.exists():
            done[label] = pickle.loads(read_checksummed(path))

    def keep(unit: Unit, frame: pd.DataFrame) -> None:
        done[unit.label] = frame
        path = chunks[unit.label][1]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_checksummed(path, pickle.dumps(frame))

    units = []
    for group, (label, (numbers, _)) in zip(groups, chunks.items(), strict=False):
        if label in done:
            continue
        local = {index: position for position, index in enumerate(numbers)}  # global -> position in the unit
        unit_specs = [specs[index] for index in numbers]
        unit_batches = [[local[index] for index in batch] for batch in group]
        units.append(Unit(label, check_batches, (unit_specs, unit_batches, numbers), cost=len(numbers)))
    executor.map(units, keep, progress, "bound check")
    if not specs:
        rows = check_specs([], False)
    else:
        rows = pd.concat([done[label] for label in chunks], ignore_index=True)
        rows = rows.sort_values("example", kind="stable", ignore_index=True)  # inputs keep their order
    return rows, summarize(rows)

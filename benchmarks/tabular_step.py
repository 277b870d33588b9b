"""One exact-RFT training step, generic ``torch.func`` path vs the closed-form prefix tree.

The step is what :func:`rftgrad.finetune.train` runs per step with ``estimator="exact"``, SGD
(lr 0.1), full batch: :meth:`rftgrad.finetune.ExactRFT.ascent` (``step_gradient``) and
:meth:`rftgrad.finetune.SGD.step`. ``old`` sets ``ExactRFT.closed_form = False`` (the logits of
every prefix by the vmapped program, the gradient by ``torch.func.vjp``, a contiguous table as before
the state-major storage: the documented generic baseline); ``new`` is the default (the policy's
:class:`~rftgrad.models.base.ClosedFormTree` and the fused closed-form step of ``step_gradient``: no
autograd, state-major layout; docs/exact_engine.md, "The closed-form training step").
Issue 19's targets at R = 64: ``new/floor <= 2`` and ``old/new >= 8``.

Tasks: ``tabular`` (``random_sequence_env(num_prompts=100, vocab_size=4, length=3,
reward="exact_match", seed=0)``, ``TabularPolicy.for_env``), and the linear policy on the same env
(its features; ``linear-input_last_token``, ``linear-input``). float32 by default, one torch thread
(``--threads``). Old and new steps alternate (old, new, old, new, ...) after a warm-up; the table
shows medians and ratios. With ``--block K`` each turn runs ``K`` consecutive steps of one path (its caches
warm, as in a training run) and counts their mean; the default ``1`` alternates single steps, so each step
starts after the other path has run (colder caches). The floor (tabular only): (a)
``torch.add(p, d, out=q)`` on tensors of the parameters' size (read and write the parameters once) plus
(b) one ``torch.exp`` over a tensor of the logits' size (``R·N·S·V``), timed in the same interleaved loop.

Usage: ``python benchmarks/tabular_step.py`` (R = 1, 8, 64, 512), ``--quick`` (fewer repeats,
R = 8, 64), ``--replicas 64 --repeats 200``; results go to ``benchmarks/results/tabular_step.csv``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from rftgrad.envs import RewardEnv, random_sequence_env
from rftgrad.finetune import SGD, ExactRFT, TrainConfig
from rftgrad.models import LinearSoftmaxPolicy, SoftmaxPolicy, TabularPolicy

RESULTS = Path(__file__).parent / "results"
TASKS = ("tabular", "linear-input_last_token", "linear-input")


def make_env() -> RewardEnv:
    """The benchmark's environment (issue 19's tabular task)."""
    return random_sequence_env(num_prompts=100, vocab_size=4, length=3, reward="exact_match", seed=0)


def make_policy(task: str, env: RewardEnv, replicas: int, dtype: str) -> SoftmaxPolicy:
    """``R = replicas`` replicas of the task's policy."""
    if task == "tabular":
        return TabularPolicy.for_env(env, num_replicas=replicas, dtype=dtype)
    features = task.split("-", 1)[1]
    return LinearSoftmaxPolicy.for_env(env, features=features, num_replicas=replicas, dtype=dtype)


def make_step(task: str, env: RewardEnv, replicas: int, dtype: str, closed_form: bool) -> Callable[[], None]:
    """One exact-RFT step (ascent + SGD) on its own policy; ``closed_form`` picks the path."""
    policy = make_policy(task, env, replicas, dtype)
    if not closed_form:  # the old step read a contiguous (R, N, S, V) table
        policy.params = {key: value.contiguous() for key, value in policy.params.items()}
    config = TrainConfig(arms=("rft:1",), optimizer="sgd", lr=(0.1,), seeds=replicas, dtype=dtype)
    zeros = torch.zeros(replicas, dtype=policy.dtype)
    objective = ExactRFT(policy, env, config, zeros, zeros, {k: v.clone() for k, v in policy.params.items()})
    objective.closed_form = closed_form
    optimizer = SGD(torch.full((replicas,), 0.1, dtype=policy.dtype))
    batch = objective.prepare(torch.full((replicas, env.num_inputs), 1.0 / env.num_inputs, dtype=policy.dtype), 0)

    def step() -> None:
        ascent, _ = objective.ascent(batch)
        optimizer.step(policy.params, ascent)

    return step


def make_floor(env: RewardEnv, replicas: int, dtype: str) -> Callable[[], None]:
    """(a) read + write the tabular parameters once, (b) one exp over a logits-sized tensor."""
    params = TabularPolicy.for_env(env, num_replicas=replicas, dtype=dtype).params["logits"]
    direction, target, logits = torch.randn_like(params), torch.empty_like(params), torch.randn_like(params)
    out = torch.empty_like(logits)

    def floor() -> None:
        torch.add(params, direction, out=target)
        torch.exp(logits, out=out)

    return floor


def interleaved(steps: dict[str, Callable[[], None]], repeats: int, warmup: int, block: int = 1) -> dict[str, float]:
    """Median seconds per step of each step function, timed in turn (a, b, a, b, ...) after ``warmup``
    rounds; each turn runs ``block`` consecutive steps (as a training run does) and counts its mean."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(warmup + repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(block):
                step()
            elapsed = (time.perf_counter() - start) / block
            if index >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=None, help="R values (default 1 8 64 512)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default: scaled with R)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="R = 8, 64 and few repeats")
    parser.add_argument(
        "--block",
        type=int,
        default=1,
        help="consecutive steps per turn (1: old, new, old, new step by step; 10: ten steps of one path, "
        "then ten of the next, so each path runs from its own warm caches as in a training run)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    replica_list = args.replicas or ([8, 64] if args.quick else [1, 8, 64, 512])
    env = make_env()
    env.reward_table()  # cached before timing
    rows = []
    for task in args.tasks:
        for replicas in replica_list:
            repeats = args.repeats or max(5, (10 if args.quick else 40) * 64 // max(replicas, 16))
            steps = {
                "old": make_step(task, env, replicas, args.dtype, closed_form=False),
                "new": make_step(task, env, replicas, args.dtype, closed_form=True),
            }
            if task == "tabular":
                steps["floor"] = make_floor(env, replicas, args.dtype)
            medians = interleaved(steps, repeats, warmup=3, block=args.block)
            row = {
                "task": task,
                "R": replicas,
                "old_ms": 1e3 * medians["old"],
                "new_ms": 1e3 * medians["new"],
                "old/new": medians["old"] / medians["new"],
                "floor_ms": 1e3 * medians["floor"] if "floor" in medians else float("nan"),
                "new/floor": medians["new"] / medians["floor"] if "floor" in medians else float("nan"),
                "repeats": repeats,
                "block": args.block,
                "loadavg_1m": os.getloadavg()[0],
            }
            rows.append(row)
            print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1, float_format="%.3f"), flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.dtype}, {args.threads} thread(s), load average {os.getloadavg()}")
    print(table.to_string(index=False, float_format="%.3f"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / "tabular_step.csv", index=False)


if __name__ == "__main__":
    main()

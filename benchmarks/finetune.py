"""Training throughput of the batched trainer against a plain per-run PyTorch loop.

Throughput is **replica-steps per second**: ``R × steps / seconds`` for ``R`` runs of
exact-expectation RFT (SGD, full batch). Two tasks:

* ``tabular``: ``random_sequence_env(num_prompts=100, vocab_size=4, length=3,
  reward="exact_match")`` with a tabular policy (independent logits per prompt and prefix);
* ``digits``: scikit-learn's 8x8 digits, 1,000 training images, an MLP with one hidden
  layer of 128 ReLU units, ±1 label rewards.

``rftgrad``: :func:`rftgrad.finetune.train` with ``estimator="exact"`` on ``R`` replicas
(one batched tensor program; the gradient comes from the exact engine's backward sweep
over the prefix tree and one VJP). The timed call is all-in: building the policy, one
evaluation at step 0 and one at the end (without per-input gradient norms), the steps and
the records. The time spent inside :func:`rftgrad.theory.exact.step_gradient` is clocked
separately (a timing wrapper around it, nothing else changes), so the table also shows the
trainer's own cost outside the exact gradient, per step: ``overhead_ms_per_step = (seconds -
step_gradient seconds) / steps``.

``loop``: what a single-run research script does: for each run, one after another,
parameters with ``requires_grad``, every output enumerated and scored by teacher forcing,
``V = mean_n Σ_y p(y|x_n) r(x_n, y)``, ``V.backward()``, an SGD step. Its time per
run-step is measured on ``min(R, --loop-runs)`` runs and multiplied out to ``R`` runs
(runs are independent and identical in cost).

Measurement: every configuration gets an untimed warm-up; then ``--repeats`` rounds, each
timing the loop and then ``rftgrad`` for every ``R`` (loop, rftgrad, loop, rftgrad, ...), so
that both see the same machine load. Reported: medians over the rounds and the median of the
per-round ratios (``speedup``). One torch thread unless ``--threads`` says otherwise; the load
average before and after goes into the JSON sidecar and the printed table.

Results go to ``benchmarks/results/finetune_<device>.csv`` (one row per task and ``R``),
``..._rounds.csv`` (every timing) and a JSON sidecar with the machine, versions, threads and
load. ``python benchmarks/finetune.py --help`` lists the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import torch

import rftgrad.finetune.objectives as objectives_module
from rftgrad.envs import RewardEnv, digits, random_sequence_env
from rftgrad.finetune import ReplicaSettings, TrainConfig, train
from rftgrad.models import MLPPolicy, SoftmaxPolicy, TabularPolicy
from rftgrad.runtime import environment_info, resolve_device

RESULTS = Path(__file__).parent / "results"


def make_task(name: str) -> tuple[RewardEnv, Callable[..., SoftmaxPolicy]]:
    """The environment and a policy builder ``(env, seed=..., device=..., dtype=..., temperature=...)``."""
    if name == "tabular":
        env = random_sequence_env(num_prompts=100, vocab_size=4, length=3, reward="exact_match", seed=0)
        return env, TabularPolicy.for_env
    env = digits(num_train=1000, seed=0).train
    return env, lambda env, **kw: MLPPolicy.for_env(env, hidden=(128,), **kw)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (CUDA), so that a clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def clock_step_gradient(device: torch.device) -> Iterator[list[float]]:
    """Inside the block, the objectives' ``step_gradient`` also adds its wall time to the yielded one-item list."""
    original = objectives_module.step_gradient
    spent = [0.0]

    def clocked(*args: object, **kwargs: object) -> object:
        synchronize(device)
        start = time.perf_counter()
        result = original(*args, **kwargs)
        synchronize(device)
        spent[0] += time.perf_counter() - start
        return result

    objectives_module.step_gradient = clocked
    try:
        yield spent
    finally:
        objectives_module.step_gradient = original


class RftgradTimer:
    """Times :func:`train` on one task: ``time(R, steps) -> (seconds, seconds inside step_gradient)``."""

    def __init__(self, task: str, device: torch.device, dtype: str) -> None:
        self.env, self.build = make_task(task)
        self.env.reward_table()  # cached before timing
        self.device, self.dtype = device, dtype

    def make_policy(self, settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> SoftmaxPolicy:
        seeds, temperatures = list(settings.seeds), list(settings.temperature)
        return self.build(self.env, seed=seeds, device=device, dtype=dtype, temperature=temperatures)

    def time(self, replicas: int, steps: int) -> tuple[float, float]:
        config = TrainConfig(
            arms=(f"rft:{steps}",), optimizer="sgd", lr=(0.1,), seeds=replicas, eval_every=steps,
            eval_grad_norm=False, device=str(self.device), dtype=self.dtype,
        )  # fmt: skip
        with clock_step_gradient(self.device) as inside:
            synchronize(self.device)
            start = time.perf_counter()
            train(self.make_policy, self.env, config, progress=False)
            synchronize(self.device)
            seconds = time.perf_counter() - start
        return seconds, inside[0]


class LoopTimer:
    """Times the per-run loop on one task: ``time(runs, steps) -> seconds`` for ``runs`` runs one after another."""

    def __init__(self, task: str, device: torch.device, dtype: torch.dtype) -> None:
        self.env, self.build = make_task(task)
        self.rewards = self.env.reward_table().to(device, dtype)  # (N, Y)
        self.outputs = self.env.output_space.enumerate(device)  # (Y, L)
        self.device, self.dtype = device, dtype

    def one_run(self, seed: int, num_steps: int) -> None:
        env, device = self.env, self.device
        policy = self.build(env, seed=seed, device=device, dtype=self.dtype)
        params = {key: value[0].clone().requires_grad_(True) for key, value in policy.params.items()}
        x = policy.inputs_from(env)
        ids = torch.arange(env.num_inputs, device=device)
        expanded = self.outputs[None].expand(env.num_inputs, -1, -1)  # (N, Y, L)
        for _ in range(num_steps):
            logits = policy.replica_sequence_logits(params, ids, x, expanded)  # (N, Y, L, V), teacher forcing
            logp = torch.log_softmax(logits, -1).gather(-1, expanded[..., None])[..., 0].sum(-1)  # (N, Y)
            value = (logp.exp() * self.rewards).sum(-1).mean()
            grads = torch.autograd.grad(value, list(params.values()))
            with torch.no_grad():
                for param, grad in zip(params.values(), grads, strict=True):
                    param.add_(0.1 * grad)

    def time(self, runs: int, steps: int) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        for seed in range(runs):
            self.one_run(seed, steps)
        synchronize(self.device)
        return time.perf_counter() - start


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def summarise(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per task and R: medians over the rounds, speedup the median of the per-round ratios."""
    rows = []
    for (task, replicas), group in rounds.groupby(["task", "replicas"], sort=False):
        steps = int(group["steps"].iloc[0])
        rate = replicas * steps / group["rftgrad_seconds"]  # replica-steps per second, per round
        loop_rate = group["loop_runs"] * steps / group["loop_seconds"]  # run-steps per second, per round
        rows.append(
            {
                "task": task,
                "replicas": replicas,
                "steps": steps,
                "rounds": len(group),
                "rftgrad_seconds": group["rftgrad_seconds"].median(),
                "rftgrad_replica_steps_per_s": rate.median(),
                "loop_run_steps_per_s": loop_rate.median(),
                "speedup": (rate / loop_rate).median(),
                "step_gradient_ms_per_step": (group["step_gradient_seconds"] / steps).median() * 1e3,
                "overhead_ms_per_step": ((group["rftgrad_seconds"] - group["step_gradient_seconds"]) / steps).median()
                * 1e3,
            }
        )
    return pd.DataFrame(rows)


def markdown(summary: pd.DataFrame, load: Sequence[float]) -> str:
    """The summary as a ready Markdown table, with the load average of the run."""
    lines = [
        "| task | R | rftgrad replica-steps/s | loop run-steps/s | speedup | step_gradient ms/step | other ms/step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary.itertuples():
        lines.append(
            f"| {row.task} | {row.replicas} | {row.rftgrad_replica_steps_per_s:,.0f} | {row.loop_run_steps_per_s:,.0f}"
            f" | {row.speedup:.1f}x | {row.step_gradient_ms_per_step:.2f} | {row.overhead_ms_per_step:.2f} |"
        )
    lines.append(f"\nload average (1, 5, 15 min) before and after: {load}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="tabular,digits", help="comma-separated: tabular, digits")
    parser.add_argument("--replicas", default="1,8,64,512", help="comma-separated R values")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5; medians reported)")
    parser.add_argument("--loop-runs", type=int, default=4, help="runs the per-run loop is timed on (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--dtype", default="float32", help="float32 | float64 (default float32)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tabular, R = 1 and 64, 5 steps, 2 rounds")
    parser.add_argument("--out", default=None, help="CSV path (default benchmarks/results/finetune_<device>.csv)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.replicas, args.steps, args.repeats = "tabular", "1,64", 5, 2
    torch.set_num_threads(args.threads)  # a script, not the library
    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    replica_counts = [int(r) for r in args.replicas.split(",")]
    load = [load_average()]
    print(f"load average {load[0]}; torch threads {torch.get_num_threads()}", flush=True)
    records = []
    for task in args.tasks.split(","):
        loop, rftgrad = LoopTimer(task, device, dtype), RftgradTimer(task, device, args.dtype)
        loop.one_run(0, 3)  # warm-up
        for replicas in replica_counts:
            rftgrad.time(replicas, 3)  # warm-up
        for round_index in range(args.repeats):
            for replicas in replica_counts:
                loop_runs = min(replicas, args.loop_runs)
                loop_seconds = loop.time(loop_runs, args.steps)
                seconds, inside = rftgrad.time(replicas, args.steps)
                records.append(
                    {
                        "task": task, "replicas": replicas, "steps": args.steps, "round": round_index,
                        "loop_runs": loop_runs, "loop_seconds": loop_seconds, "rftgrad_seconds": seconds,
                        "step_gradient_seconds": inside, "load_1min": os.getloadavg()[0],
                    }
                )  # fmt: skip
                speedup = (replicas * loop_seconds) / (loop_runs * seconds)
                print(
                    f"{task:8s} R={replicas:4d} round {round_index}: rftgrad {seconds * 1e3:9.1f} ms "
                    f"(step_gradient {inside * 1e3:8.1f} ms)  loop {loop_seconds / loop_runs * 1e3:8.1f} ms/run  "
                    f"speedup {speedup:6.1f}x",
                    flush=True,
                )
    load.append(load_average())
    rounds = pd.DataFrame(records)
    summary = summarise(rounds)
    out = Path(args.out) if args.out else RESULTS / f"finetune_{device.type}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out, index=False)
    rounds.to_csv(out.with_name(out.stem + "_rounds.csv"), index=False)
    sidecar = {
        "args": vars(args),
        "environment": environment_info(device),
        "threads": torch.get_num_threads(),
        "load_average_before_after": load,
    }
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    print(markdown(summary, load))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

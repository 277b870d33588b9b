"""Training throughput of the batched trainer against a plain per-run PyTorch loop.

Throughput is **replica-steps per second**: ``R × steps / seconds`` for ``R`` runs of
exact-expectation RFT (SGD, full batch). Two tasks:

* ``tabular``: ``random_sequence_env(num_prompts=100, vocab_size=4, length=3,
  reward="exact_match")`` with a tabular policy (independent logits per prompt and prefix);
* ``digits``: scikit-learn's 8x8 digits, 1,000 training images, an MLP with one hidden
  layer of 128 ReLU units, ±1 label rewards.

``rftgrad``: :func:`rftgrad.finetune.train` with ``estimator="exact"`` on ``R`` replicas
(one batched tensor program; the gradient comes from the exact engine's backward sweep
over the prefix tree and one VJP). Evaluation is kept out of the timing as far as the
trainer allows: one evaluation at step 0 and one at the end, without per-input
gradient norms; both are included in the time.

``loop``: what a single-run research script does: for each run, one after another,
parameters with ``requires_grad``, every output enumerated and scored by teacher forcing,
``V = mean_n Σ_y p(y|x_n) r(x_n, y)``, ``V.backward()``, an SGD step. Its time per
run-step is measured on ``min(R, --loop-runs)`` runs and multiplied out to ``R`` runs
(runs are independent and identical in cost).

Each configuration: one untimed warm-up of a few steps, then ``--steps`` timed steps.
Results go to ``benchmarks/results/finetune_<device>.csv`` plus a JSON sidecar with the
machine and versions. ``python benchmarks/finetune.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch

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


def time_rftgrad(task: str, replicas: int, steps: int, device: torch.device, dtype: str) -> float:
    """Seconds for ``steps`` steps of the batched trainer on ``replicas`` replicas (after a warm-up)."""
    env, build = make_task(task)
    env.reward_table()  # cached before timing

    def make_policy(settings: ReplicaSettings, dev: torch.device, dt: torch.dtype) -> SoftmaxPolicy:
        return build(env, seed=list(settings.seeds), device=dev, dtype=dt, temperature=list(settings.temperature))

    def run(num_steps: int) -> float:
        config = TrainConfig(
            arms=(f"rft:{num_steps}",), optimizer="sgd", lr=(0.1,), seeds=replicas, eval_every=num_steps,
            eval_grad_norm=False, device=str(device), dtype=dtype,
        )  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        train(make_policy, env, config, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run(3)  # warm-up
    return run(steps)


def time_loop(task: str, runs: int, steps: int, device: torch.device, dtype: torch.dtype) -> float:
    """Seconds for ``runs`` single-run loops of ``steps`` steps each, one after another."""
    env, build = make_task(task)
    rewards = env.reward_table().to(device, dtype)  # (N, Y)
    outputs = env.output_space.enumerate(device)  # (Y, L)
    num_inputs = env.num_inputs

    def one_run(seed: int, num_steps: int) -> None:
        policy = build(env, seed=seed, device=device, dtype=dtype)
        params = {key: value[0].clone().requires_grad_(True) for key, value in policy.params.items()}
        x = policy.inputs_from(env)
        ids = torch.arange(num_inputs, device=device)
        expanded = outputs[None].expand(num_inputs, -1, -1)  # (N, Y, L)
        for _ in range(num_steps):
            logits = policy.replica_sequence_logits(params, ids, x, expanded)  # (N, Y, L, V), teacher forcing
            logp = torch.log_softmax(logits, -1).gather(-1, expanded[..., None])[..., 0].sum(-1)  # (N, Y)
            value = (logp.exp() * rewards).sum(-1).mean()
            grads = torch.autograd.grad(value, list(params.values()))
            with torch.no_grad():
                for param, grad in zip(params.values(), grads, strict=True):
                    param.add_(0.1 * grad)

    one_run(0, 3)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for seed in range(runs):
        one_run(seed, steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="tabular,digits", help="comma-separated: tabular, digits")
    parser.add_argument("--replicas", default="1,8,64,512", help="comma-separated R values")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration (default 20)")
    parser.add_argument("--loop-runs", type=int, default=4, help="runs the per-run loop is timed on (default 4)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--dtype", default="float32", help="float32 | float64 (default float32)")
    parser.add_argument("--out", default=None, help="CSV path (default benchmarks/results/finetune_<device>.csv)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    rows = []
    for task in args.tasks.split(","):
        loop_runs = args.loop_runs
        loop_seconds = time_loop(task, loop_runs, args.steps, device, dtype)
        loop_rate = loop_runs * args.steps / loop_seconds  # run-steps per second
        for replicas in (int(r) for r in args.replicas.split(",")):
            seconds = time_rftgrad(task, replicas, args.steps, device, args.dtype)
            rate = replicas * args.steps / seconds
            rows.append(
                {
                    "task": task,
                    "replicas": replicas,
                    "steps": args.steps,
                    "rftgrad_seconds": seconds,
                    "rftgrad_replica_steps_per_s": rate,
                    "loop_run_steps_per_s": loop_rate,
                    "speedup": rate / loop_rate,
                }
            )
            print(
                f"{task:8s} R={replicas:4d}  rftgrad {rate:10.1f} replica-steps/s   "
                f"loop {loop_rate:8.1f} run-steps/s   speedup {rate / loop_rate:7.1f}x",
                flush=True,
            )
    out = Path(args.out) if args.out else RESULTS / f"finetune_{device.type}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    sidecar = {"args": vars(args), "environment": environment_info(device), "threads": torch.get_num_threads()}
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

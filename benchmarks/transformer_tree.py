"""Transformer prefix tree: the base per-level loop vs the KV-cached traversal (issue 19).

``rftgrad.theory.exact`` (``method="tree"``) scores every prefix of every level through
:meth:`SoftmaxPolicy.replica_tree_logits`. Two implementations of that hook on the same
:class:`TinyTransformerPolicy` weights are compared:

* ``loop``: the base class's per-level loop over ``replica_prefix_logits`` (every prefix
  ``[prompt, BOS, u]`` re-encoded from scratch), the reference; kept as issue 19 measured it, with
  every position through the last block too (``replica_prefix_logits`` itself now runs the last
  block at the read position only, which makes the library's own loop faster than this yardstick);
* ``kv``: the transformer's KV-cached traversal (``[prompt, BOS]`` once per input, one token
  per tree node, ancestors' keys and values reused).

For ``exact`` (per-input gradient norms, what experiments and ``rftgrad check`` call),
``evaluate`` and ``mean_gradient``, in float32 and float64, at two configurations:

* ``controlled``: the controlled experiment's ``sequence`` variant: 100 prompts of 4 tokens
  over 16, V = 4, L = 3, transformer d_model 32, 2 layers, 2 heads, R = 2 (its quick budget);
* ``prevalence``: the prevalence experiment: 5 tasks x 32 prompts of 1 + L tokens, V = 6,
  L = 4, d_model 32, 2 layers, 2 heads, R = 1 (its pretrained model).

Time: median wall time (``time.perf_counter``) of ``--repeats`` runs after one warm-up, the
two paths interleaved (loop, kv, loop, kv, ...). Peak memory: each (configuration, dtype,
function, path) runs once in a fresh subprocess, after a warm-up call on the configuration's
smallest size (10 or 5 prompts: code pages and buffers a first call touches); the peak is the process's resident-set
high-water mark ``VmHWM`` (reset through ``/proc/self/clear_refs`` after imports and building
the environment and policy) minus the resident set ``VmRSS`` at that point; where the reset
is unavailable, ``ru_maxrss`` after the run minus ``ru_maxrss`` before it. The table also
shows the largest difference between the two paths' values and gradient norms.

Run ``python benchmarks/transformer_tree.py --help`` for the options; ``--quick`` runs a
quarter of the prompts with 2 repeats. Results go to ``benchmarks/results/transformer_tree.csv``
plus a JSON sidecar with the machine, versions, arguments and load averages.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from rftgrad.envs import RewardEnv, language_env, sequence_task
from rftgrad.models import SoftmaxPolicy, TinyTransformerPolicy
from rftgrad.runtime import environment_info
from rftgrad.theory import evaluate, exact, mean_gradient

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CONFIGS = ("controlled", "prevalence")
DTYPES = ("float32", "float64")
FUNCTIONS: dict[str, Callable[[SoftmaxPolicy, RewardEnv], Any]] = {
    "exact": exact,
    "evaluate": evaluate,
    "mean_gradient": mean_gradient,
}


class LoopTransformer(TinyTransformerPolicy):
    """The transformer scored by the base class's per-level loop (each prefix from scratch), the yardstick
    of issue 19: every position of every prefix ``[prompt, BOS, u]`` through every block, read at the last."""

    replica_tree_logits = SoftmaxPolicy.replica_tree_logits

    def _readout_features(
        self, params: dict[str, torch.Tensor], ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        return self._hidden(params, x, prefixes)[:, :, -1, :]  # (N, M, d): the last block on all positions too


PATHS: dict[str, type[TinyTransformerPolicy]] = {"loop": LoopTransformer, "kv": TinyTransformerPolicy}


def build(config: str, dtype: str, path: str, prompt_share: float) -> tuple[SoftmaxPolicy, RewardEnv]:
    """The environment and the ``path`` policy of ``config`` (same weights for both paths)."""
    if config == "controlled":  # rftgrad.experiments.controlled, variant "sequence" (quick budget: 2 seeds)
        num_prompts = max(10, round(100 * prompt_share))
        env = sequence_task(
            num_prompts=num_prompts, num_prompt_groups=10, vocab_size=4, length=3, reward="exact_match",
            label_set_size=4, modify_fraction=0.1, data_seed=0,
        ).train  # fmt: skip
        replicas = 2
    else:  # rftgrad.experiments.prevalence: 5 tasks x 32 prompts, V = 6, L = 4
        env = language_env(prompts_per_task=max(1, round(32 * prompt_share)), vocab_size=6, length=4, seed=0)
        replicas = 1
    policy = PATHS[path].for_env(env, d_model=32, num_layers=2, num_heads=2, seed=0, num_replicas=replicas, dtype=dtype)
    return policy, env


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_one(config: str, dtype: str, function: str, path: str, prompt_share: float) -> dict[str, Any]:
    """One run in this (fresh) process: peak memory above the state after setup, in MiB."""
    policy, env = build(config, dtype, path, prompt_share)
    FUNCTIONS[function](*build(config, dtype, path, 0.0))  # the fewest prompts: pages in what a first call touches
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        base_kib, metric = _status_kib("VmRSS"), "VmHWM - VmRSS after setup"
    except OSError:
        base_kib, metric = None, "ru_maxrss after - before"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    FUNCTIONS[function](policy, env)
    if base_kib is not None and (peak := _status_kib("VmHWM")) is not None:
        used = peak - base_kib
    else:
        used, metric = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, "ru_maxrss after - before"
    return {"peak_mib": used / 1024, "metric": metric}


def measure_peak(config: str, dtype: str, function: str, path: str, prompt_share: float) -> dict[str, Any]:
    """:func:`peak_one` in a fresh subprocess."""
    command = [
        sys.executable,
        __file__,
        "--peak-one",
        config,
        dtype,
        function,
        path,
        "--prompt-share",
        str(prompt_share),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(result: Any) -> dict[str, torch.Tensor]:
    """The numbers compared between the paths: values, and gradient norms where computed."""
    out = {"value": result.value.double()}
    if hasattr(result, "grad_norm"):
        out["grad_norm"] = result.grad_norm.double()
    if hasattr(result, "mean_grad_norm"):
        out["mean_grad_norm"] = result.mean_grad_norm.double()
    return out


def time_pair(
    function: Callable[[SoftmaxPolicy, RewardEnv], Any],
    policies: dict[str, SoftmaxPolicy],
    env: RewardEnv,
    repeats: int,
) -> tuple[dict[str, list[float]], float]:
    """Warm-up, then ``repeats`` interleaved runs per path; also the largest difference of the results."""
    results = {path: summary(function(policy, env)) for path, policy in policies.items()}  # warm-up
    diff = max(float((results["loop"][k] - results["kv"][k]).abs().max()) for k in results["loop"])
    times: dict[str, list[float]] = {path: [] for path in policies}
    for _ in range(repeats):
        for path, policy in policies.items():
            start = time.perf_counter()
            function(policy, env)
            times[path].append(time.perf_counter() - start)
    return times, diff


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path (after one warm-up)")
    parser.add_argument("--prompt-share", type=float, default=1.0, help="share of each config's prompts")
    parser.add_argument("--quick", action="store_true", help="a quarter of the prompts, 2 repeats")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "transformer_tree.csv")
    parser.add_argument("--peak-one", nargs=4, metavar=("CONFIG", "DTYPE", "FUNCTION", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.peak_one:
        print(json.dumps(peak_one(*args.peak_one, prompt_share=args.prompt_share)))
        return
    if args.quick:
        args.repeats, args.prompt_share = 2, 0.25
    load_before = os.getloadavg()
    rows = []
    for config in args.configs:
        for dtype in args.dtypes:
            built = {path: build(config, dtype, path, args.prompt_share) for path in PATHS}
            env = built["kv"][1]
            policies = {path: policy for path, (policy, _) in built.items()}
            policies["kv"].params = {k: v.clone() for k, v in policies["loop"].params.items()}  # same weights
            for name in args.functions:
                times, diff = time_pair(FUNCTIONS[name], policies, env, args.repeats)
                row: dict[str, Any] = {
                    "config": config, "dtype": dtype, "function": name, "inputs": env.num_inputs,
                    "replicas": policies["kv"].num_replicas, "V": env.output_space.vocab_size,
                    "L": env.output_space.length, "loop_s": statistics.median(times["loop"]),
                    "kv_s": statistics.median(times["kv"]), "max_abs_diff": diff,
                }  # fmt: skip
                row["speedup"] = row["loop_s"] / row["kv_s"]
                if not args.no_memory:
                    for path in PATHS:
                        peak = measure_peak(config, dtype, name, path, args.prompt_share)
                        row[f"{path}_peak_mib"], row["memory_metric"] = peak["peak_mib"], peak["metric"]
                    row["memory_ratio"] = row["kv_peak_mib"] / row["loop_peak_mib"]
                row["loadavg_1m"] = os.getloadavg()[0]
                rows.append(row)
                print(_format_row(row), flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    meta = {
        "argv": sys.argv, "args": {k: str(v) for k, v in vars(args).items()}, "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(), "environment": environment_info("cpu"),
    }  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
    print()
    print(table.drop(columns=[c for c in ("memory_metric",) if c in table]).to_string(index=False, float_format="%.4g"))
    if "memory_metric" in table:
        print(f"peak memory: {table['memory_metric'].iloc[0]} (fresh subprocess per row and path)")
    print(f"load average before {load_before}, after {os.getloadavg()}; written {args.out}")


def _format_row(row: dict[str, Any]) -> str:
    text = (
        f"{row['config']:>10} {row['dtype']} {row['function']:>13}: loop {row['loop_s']:.4f} s, "
        f"kv {row['kv_s']:.4f} s, x{row['speedup']:.2f}, max |diff| {row['max_abs_diff']:.1e}"
    )
    if "memory_ratio" in row:
        text += f"; peak {row['loop_peak_mib']:.1f} -> {row['kv_peak_mib']:.1f} MiB (x{row['memory_ratio']:.3f})"
    return text + f"; load {row['loadavg_1m']:.2f}"


if __name__ == "__main__":
    main()

"""``transformers`` causal LMs in the exact engine: the packed prefix tree vs the per-level reference (issue 22).

:class:`rftgrad.models.HFCausalLM` scores the exact engine's prefix tree (``method="tree"``) in one
model call per input batch: the prompt and every tree node packed into one sequence with a custom 4D
attention mask (``packed``). The reference (``per_level``: ``packed_tree_limit=0``) is the base
class's loop, one model call per level on every prefix ``[prompt, u]`` encoded from scratch. Both on
the same weights, for ``exact`` (per-input gradient norms), ``evaluate`` and ``mean_gradient``, then
γ by the full Jacobian and by Lanczos (``rftgrad.theory.gamma``), at two configurations per
architecture (GPT-2 and Llama, random weights, float64):

* ``tiny``: the test configs (width 16, 2 layers, 2 heads), 3 prompts of 2-5 tokens, V = 4, L = 3;
* ``small``: width 64, 4 layers, 4 heads, 8 prompts of 4-10 tokens, V = 4, L = 4.

Time: median wall time (``time.perf_counter``) of ``--repeats`` runs after one warm-up, the two paths
interleaved (per_level, packed, per_level, packed, ...); γ's two methods likewise. The table also shows
the largest difference between the paths' values and gradient norms. ``--quick``: the tiny config
only, 2 repeats. Results: ``benchmarks/results/hf_tree.csv`` plus a JSON sidecar with the machine,
versions, arguments and load averages.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import GPT2Config, LlamaConfig

from rftgrad.envs import TextEnv, left_pad
from rftgrad.models import HFCausalLM
from rftgrad.runtime import environment_info, generator
from rftgrad.theory import evaluate, exact, gamma, mean_gradient

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIZES = {"tiny": dict(width=16, layers=2, heads=2, prompts=3, length=3), "small": dict(width=64, layers=4, heads=4,
         prompts=8, length=4)}  # fmt: skip
ARCHS = ("gpt2", "llama")
ANSWERS = (5, 9, 14, 20)
VOCAB = 32
FUNCTIONS: dict[str, Callable[..., Any]] = {"exact": exact, "evaluate": evaluate, "mean_gradient": mean_gradient}


def config_of(arch: str, width: int, layers: int, heads: int) -> GPT2Config | LlamaConfig:
    if arch == "gpt2":
        return GPT2Config(vocab_size=VOCAB, n_embd=width, n_layer=layers, n_head=heads, n_positions=64,
                          initializer_range=0.5, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return LlamaConfig(vocab_size=VOCAB, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=64,
                       initializer_range=0.5, bos_token_id=0, eos_token_id=0, pad_token_id=0)  # fmt: skip


def build(arch: str, size: str) -> tuple[dict[str, HFCausalLM], TextEnv]:
    """The environment and the two paths' policies (same weights: same config and seed)."""
    spec = SIZES[size]
    gen = generator(1)
    lengths = torch.randint(2 if size == "tiny" else 4, 6 if size == "tiny" else 11, (spec["prompts"],), generator=gen)
    prompts = [torch.randint(1, VOCAB, (int(n),), generator=gen).tolist() for n in lengths]
    rewards = torch.rand(len(prompts), len(ANSWERS) ** spec["length"], generator=gen, dtype=torch.float64) * 2 - 1
    env = TextEnv(left_pad(prompts), ANSWERS, spec["length"], rewards)
    config = config_of(arch, spec["width"], spec["layers"], spec["heads"])
    policies = {
        path: HFCausalLM.from_config(config, ANSWERS, max_length=spec["length"], packed_tree_limit=limit)
        for path, limit in (("per_level", 0), ("packed", 1 << 20))
    }
    return policies, env


def interleaved(calls: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Warm-up each call, then ``repeats`` interleaved timed runs; median seconds and the warm-up results."""
    results = {name: call() for name, call in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, results


def largest_difference(a: Any, b: Any) -> float:
    fields = [f for f in ("value", "grad_norm", "mean_grad_norm") if hasattr(a, f)]
    return max(float((getattr(a, f) - getattr(b, f)).abs().max()) for f in fields)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path (after one warm-up)")
    parser.add_argument("--quick", action="store_true", help="the tiny size only, 2 repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "hf_tree.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats, args.sizes = 2, ["tiny"]
    load_before = os.getloadavg()
    rows = []
    for arch in args.archs:
        for size in args.sizes:
            policies, env = build(arch, size)
            base = {"arch": arch, "size": size, "inputs": env.num_inputs, "V": env.output_space.vocab_size,
                    "L": env.output_space.length, "params": policies["packed"].num_parameters}  # fmt: skip
            for name, function in FUNCTIONS.items():
                calls = {path: functools.partial(function, policy, env) for path, policy in policies.items()}
                medians, results = interleaved(calls, args.repeats)
                rows.append({**base, "what": name, "reference": "per_level", "reference_s": medians["per_level"],
                             "new": "packed", "new_s": medians["packed"],
                             "ratio": medians["per_level"] / medians["packed"],
                             "max_abs_diff": largest_difference(results["per_level"], results["packed"])})  # fmt: skip
            packed = policies["packed"]
            calls = {method: functools.partial(gamma, packed, env, method=method) for method in ("jacobian", "lanczos")}
            medians, results = interleaved(calls, args.repeats)
            relative = (results["lanczos"] - results["jacobian"]) / results["jacobian"]
            ratio = medians["jacobian"] / medians["lanczos"]
            rows.append({**base, "what": "gamma", "reference": "jacobian", "reference_s": medians["jacobian"],
                         "new": "lanczos", "new_s": medians["lanczos"], "ratio": ratio,
                         "max_abs_diff": float(relative.abs().max())})  # fmt: skip
    frame = pd.DataFrame(rows)
    load_after = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    sidecar = {"environment": environment_info(), "args": {k: str(v) for k, v in vars(args).items()},
               "loadavg_before": load_before, "loadavg_after": load_after}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str))
    print(f"load average before {load_before}, after {load_after}; ratio = reference_s / new_s; gamma's "
          "max_abs_diff is relative")  # fmt: skip
    print(frame.to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()

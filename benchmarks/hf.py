"""Theorem 1's checks on ``transformers`` causal LMs: the HF wrapper against the built-in transformer, and size limits.

Two parts, one torch thread, float64, CPU:

* ``compare``: ``exact`` and ``gamma`` (``method="jacobian"`` and ``"lanczos"``) on
  :class:`rftgrad.models.HFCausalLM` with a GPT-2 config against :class:`TinyTransformerPolicy` at the
  same size: the same width, layers and heads (both pre-LN GPT blocks with a 4·width GELU MLP), the same
  ``V``, ``L`` and ``N`` prompts of one :func:`random_sequence_env` (exact-match reward). GPT-2's
  vocabulary holds the prompt tokens, one spare id and the ``V`` answer tokens, as the built-in model's
  token table holds prompt tokens, BOS and outputs. The two run interleaved (tiny, hf, tiny, hf, ...)
  after a warm-up; the table gives median milliseconds and the median of the per-repeat ratios hf / tiny.
* ``sweep``: one ``rftgrad check``-style example on one input (build the policy, ``exact``, ``gamma``,
  the bound columns: what :func:`rftgrad.theory.check.check_specs` times per example) for growing GPT-2
  (or Llama) sizes, width 16 ... 1024 (heads ``max(2, width // 64)``) at each layer count, ``V = 4``
  answer tokens of a 16-token vocabulary, ``L = 3`` and ``L = 1``, with γ by either method; a layer count
  stops growing at its first width past ``--limit`` seconds (default 1 s) for both methods, or past
  ``--max-params`` parameters. Medians of ``--repeats`` runs, the two γ methods interleaved.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/hf.py [--quick] [--repeats 5] [--parts compare sweep]

Writes ``benchmarks/results/hf.json`` (with the load averages) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rftgrad.envs import RewardEnv, random_sequence_env
from rftgrad.models import HFCausalLM, SoftmaxPolicy, TinyTransformerPolicy
from rftgrad.runtime import environment_info
from rftgrad.theory import exact, gamma
from rftgrad.theory.bounds import bound_columns, columns_as_arrays
from rftgrad.theory.instances import hf_config

RESULTS = Path(__file__).resolve().parent / "results"
FUNCTIONS: dict[str, Callable[[SoftmaxPolicy, RewardEnv], Any]] = {
    "exact": exact,
    "gamma jacobian": lambda policy, env: gamma(policy, env, method="jacobian"),
    "gamma lanczos": lambda policy, env: gamma(policy, env, method="lanczos"),
}
SWEEP_VOCAB, SWEEP_MODEL_VOCAB, SWEEP_PROMPT = 4, 16, 4  # V answer tokens of a 16-token vocabulary; 4 prompt tokens
WIDTHS = (16, 32, 64, 128, 192, 256, 384, 512, 768, 1024)


def heads_for(width: int) -> int:
    """GPT-2's head width of 64 where the width allows it, and at least 2 heads."""
    return max(2, width // 64)


def pair(width: int, layers: int, heads: int, env: RewardEnv) -> dict[str, SoftmaxPolicy]:
    """The built-in transformer and GPT-2 (HFCausalLM) of one size for ``env``."""
    space, prompt_vocab = env.output_space, env.prompt_vocab_size
    tiny = TinyTransformerPolicy.for_env(env, d_model=width, num_layers=layers, num_heads=heads, seed=0)
    model_vocab = prompt_vocab + 1 + space.vocab_size  # prompt tokens, a spare id (the built-in BOS), answers
    config = hf_config("gpt2", model_vocab, env.prompts.shape[1] + space.length, width, layers, heads)
    answers = list(range(prompt_vocab + 1, model_vocab))
    hf = HFCausalLM.from_config(config, answer_tokens=answers, max_length=space.length, seed=0)
    return {"tiny": tiny, "hf": hf}


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def compare(sizes: list[tuple[int, int, int]], prompts: int, vocab: int, length: int, repeats: int) -> list[dict]:
    """Median seconds of each function on both policies of each size, interleaved."""
    env = random_sequence_env(num_prompts=prompts, vocab_size=vocab, length=length, prompt_length=4,
                              prompt_vocab_size=8, seed=0)  # fmt: skip
    rows = []
    for width, layers, heads in sizes:
        policies = pair(width, layers, heads, env)
        for name, function in FUNCTIONS.items():
            times: dict[str, list[float]] = {impl: [] for impl in policies}
            for policy in policies.values():  # warm-up
                function(policy, env)
            for _ in range(repeats):
                for impl, policy in policies.items():
                    times[impl].append(timed(lambda f=function, p=policy: f(p, env)))
            ratios = [h / t for h, t in zip(times["hf"], times["tiny"], strict=True)]
            row = {
                "width": width, "layers": layers, "heads": heads, "N": prompts, "V": vocab, "L": length,
                "function": name, "tiny_params": policies["tiny"].num_parameters,
                "hf_params": policies["hf"].num_parameters, "tiny_ms": 1e3 * statistics.median(times["tiny"]),
                "hf_ms": 1e3 * statistics.median(times["hf"]), "hf_over_tiny": statistics.median(ratios),
                "loadavg_1m": os.getloadavg()[0],
            }  # fmt: skip
            rows.append(row)
            print(f"  {width}x{layers}x{heads} {name}: tiny {row['tiny_ms']:.1f} ms, hf {row['hf_ms']:.1f} ms, "
                  f"x{row['hf_over_tiny']:.2f}", flush=True)  # fmt: skip
    return rows


def check_example(kind: str, width: int, layers: int, length: int, method: str, env: RewardEnv) -> dict[str, float]:
    """Seconds of one ``rftgrad check``-style example: build, exact, γ by ``method``, the bound columns."""
    times = {}
    start = time.perf_counter()
    config = hf_config(kind, SWEEP_MODEL_VOCAB, SWEEP_PROMPT + length, width, layers, heads_for(width))
    answers = list(range(SWEEP_MODEL_VOCAB - SWEEP_VOCAB, SWEEP_MODEL_VOCAB))
    policy = HFCausalLM.from_config(config, answer_tokens=answers, max_length=length, seed=0)
    times["build"] = time.perf_counter() - start
    start = time.perf_counter()
    result = exact(policy, env)
    times["exact"] = time.perf_counter() - start
    start = time.perf_counter()
    norms = gamma(policy, env, method=method)
    times["gamma"] = time.perf_counter() - start
    start = time.perf_counter()
    columns_as_arrays(bound_columns(policy, env, result, norms))
    times["bounds"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    times["params"] = policy.num_parameters
    return times


def sweep(kind: str, lengths: list[int], layer_counts: list[int], repeats: int, limit: float, max_params: int) -> list:
    """Per (L, layers): widths in increasing order until both γ methods' examples take more than ``limit`` s."""
    rows = []
    for length in lengths:
        env = random_sequence_env(num_prompts=1, vocab_size=SWEEP_VOCAB, length=length, prompt_length=SWEEP_PROMPT,
                                  prompt_vocab_size=8, seed=0)  # fmt: skip
        for method in ("jacobian", "lanczos"):  # warm-up at the smallest size
            check_example(kind, WIDTHS[0], 1, length, method, env)
        for layers in layer_counts:
            for width in WIDTHS:
                params = hf_params(kind, width, layers, length)
                if params > max_params:
                    break
                runs: dict[str, list[dict[str, float]]] = {"jacobian": [], "lanczos": []}
                for _ in range(repeats):
                    for method in runs:
                        runs[method].append(check_example(kind, width, layers, length, method, env))
                row: dict[str, Any] = {"kind": kind, "L": length, "width": width, "layers": layers,
                                       "heads": heads_for(width), "params": params}  # fmt: skip
                for method, measured in runs.items():
                    for key in ("build", "exact", "gamma", "bounds", "total"):
                        row[f"{method}_{key}_s"] = statistics.median(m[key] for m in measured)
                row["loadavg_1m"] = os.getloadavg()[0]
                rows.append(row)
                jacobian_s, lanczos_s = row["jacobian_total_s"], row["lanczos_total_s"]
                print(f"  {kind} L={length} {width}x{layers}: {params} params, {jacobian_s:.3f} s (jacobian), "
                      f"{lanczos_s:.3f} s (lanczos)", flush=True)  # fmt: skip
                if min(jacobian_s, lanczos_s) > limit:
                    break
    return rows


def hf_params(kind: str, width: int, layers: int, length: int) -> int:
    """Parameters of the sweep's model (built on the meta device: no memory, no time)."""
    from transformers import AutoModelForCausalLM

    config = hf_config(kind, SWEEP_MODEL_VOCAB, SWEEP_PROMPT + length, width, layers, heads_for(width))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def largest(rows: list[dict], method: str, limit: float) -> dict[int, dict | None]:
    """Per L: the row with the most parameters whose example takes at most ``limit`` s with γ by ``method``."""
    best: dict[int, dict | None] = {}
    for row in rows:
        fits = row[f"{method}_total_s"] <= limit
        current = best.get(row["L"])
        if fits and (current is None or row["params"] > current["params"]):
            best[row["L"]] = row
        else:
            best.setdefault(row["L"], None)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["compare", "sweep"], choices=["compare", "sweep"])
    parser.add_argument("--sizes", nargs="+", default=["8x1x2", "16x2x2", "32x2x2"],
                        help="compare: WIDTHxLAYERSxHEADS (default: check's 8x1x2, 16x2x2, 32x2x2)")  # fmt: skip
    parser.add_argument("--prompts", type=int, default=16, help="compare: N prompts (default 16)")
    parser.add_argument("--vocab", type=int, default=4, help="compare: V (default 4)")
    parser.add_argument("--length", type=int, default=3, help="compare: L (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (default 5)")
    parser.add_argument("--kind", default="gpt2", choices=["gpt2", "llama"], help="sweep: the architecture")
    parser.add_argument("--lengths", nargs="+", type=int, default=[3, 1], help="sweep: L values (default 3 1)")
    parser.add_argument("--layers", nargs="+", type=int, default=[1, 2, 4, 8], help="sweep: layer counts")
    parser.add_argument("--limit", type=float, default=1.0, help="sweep: seconds per example (default 1)")
    parser.add_argument("--max-params", type=int, default=20_000_000, help="sweep: largest model (memory)")
    parser.add_argument("--quick", action="store_true", help="2 repeats, sizes 8x1x2 and 16x2x2, layers 1 2")
    parser.add_argument("--out", type=Path, default=RESULTS / "hf.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.repeats, args.sizes, args.layers = 2, ["8x1x2", "16x2x2"], [1, 2]
    sizes = [tuple(int(part) for part in size.split("x")) for size in args.sizes]
    load_before = os.getloadavg()
    report: dict[str, Any] = {"argv": sys.argv, "args": {k: str(v) for k, v in vars(args).items()},
                              "loadavg_before": load_before}  # fmt: skip
    if "compare" in args.parts:
        print(f"compare: N={args.prompts}, V={args.vocab}, L={args.length}, {args.repeats} repeats")
        report["compare"] = compare(sizes, args.prompts, args.vocab, args.length, args.repeats)
    if "sweep" in args.parts:
        print(f"sweep: {args.kind}, L in {args.lengths}, layers {args.layers}, limit {args.limit} s")
        report["sweep"] = sweep(args.kind, args.lengths, args.layers, args.repeats, args.limit, args.max_params)
    report["loadavg_after"] = os.getloadavg()
    report["environment"] = environment_info("cpu")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))

    if "compare" in report:
        print(f"\nexact and γ, HFCausalLM (GPT-2) vs TinyTransformerPolicy, N={args.prompts}, V={args.vocab}, "
              f"L={args.length}, float64, 1 thread, median of {args.repeats} interleaved repeats:\n")  # fmt: skip
        print("| width x layers x heads | params tiny / hf | function | tiny ms | hf ms | hf / tiny |")
        print("| --- | ---: | --- | ---: | ---: | ---: |")
        for row in report["compare"]:
            size = f"{row['width']} x {row['layers']} x {row['heads']}"
            params = f"{row['tiny_params']} / {row['hf_params']}"
            print(f"| {size} | {params} | {row['function']} | {row['tiny_ms']:.1f} | {row['hf_ms']:.1f} "
                  f"| {row['hf_over_tiny']:.2f}x |")  # fmt: skip
    if "sweep" in report:
        print(f"\none check-style example on 1 input ({args.kind}, V={SWEEP_VOCAB} of {SWEEP_MODEL_VOCAB} tokens): "
              f"build + exact + γ + bounds, seconds, median of {args.repeats}:\n")  # fmt: skip
        print("| L | width x layers (heads) | params | build | exact | γ jacobian | total (jacobian) "
              "| γ lanczos | total (lanczos) |")  # fmt: skip
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in report["sweep"]:
            cells = [f"{row[f'jacobian_{key}_s']:.3f}" for key in ("build", "exact", "gamma", "total")]
            cells += [f"{row[f'lanczos_{key}_s']:.3f}" for key in ("gamma", "total")]
            print(f"| {row['L']} | {row['width']} x {row['layers']} ({row['heads']}) | {row['params']:,} | "
                  + " | ".join(cells) + " |")  # fmt: skip
        for method in ("jacobian", "lanczos"):
            for length, row in largest(report["sweep"], method, args.limit).items():
                text = "none" if row is None else (
                    f"width {row['width']} x {row['layers']} layers ({row['params']:,} parameters, "
                    f"{row[f'{method}_total_s']:.2f} s)")  # fmt: skip
                print(f"largest within {args.limit} s, L={length}, γ by {method}: {text}")
    print(f"load average before {load_before}, after {report['loadavg_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()

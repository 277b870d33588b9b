"""Throughput of ``rftgrad check`` per policy class: this checkout against a baseline checkout.

A block is the CLI's draw, ``draw_specs(--examples, seed)`` over every kind (``rftgrad check --examples N``
draws exactly these with seed 0; V 2..6, L 1..5 with V^L <= 1024, 1-3 inputs), evaluated by
``check_specs`` (instance, exact engine, γ and every bound; this checkout batches instances of one shape,
``CHECK_BATCH``). ``examples/s`` per kind is what ``rftgrad check`` reports (``summarize``: examples / Σ
per-example seconds, start-up excluded). With ``--baseline DIR`` (a checkout of the old code, e.g.
``git archive <commit> | tar -x -C DIR``) two long-lived worker processes, old and new, take turns on the
same blocks (old, new, old, new, ...), ``--repeats`` blocks of seeds ``seed, seed + 1, ...``; the table
gives the median examples/s and the median of the per-block ratios new / old. It also splits the new
code's time per example into instance, ``exact``, ``gamma`` and the rest, batch by batch as ``check_specs``
runs them, and measures examples/s against the batch size (interleaved, in one process).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/check.py --baseline /tmp/base [--quick] [--examples 2000]

Writes ``benchmarks/results/check.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("tabular", "linear", "mlp", "transformer")
ROOT = Path(__file__).resolve().parents[1]


def worker(warmup: int, seed: int) -> None:
    """Serve blocks: read ``count seed`` lines on stdin, answer the per-kind examples/s (JSON) of ``check_specs``
    on ``draw_specs(count, seed)`` as ``rftgrad check`` reports them, with whatever ``rftgrad`` is on the path,
    one torch thread."""
    import torch

    from rftgrad.theory.check import check_specs, summarize
    from rftgrad.theory.instances import draw_specs

    torch.set_num_threads(1)
    for _ in range(2):  # warm up every kind first (lazy imports and first-call costs of torch and pandas)
        check_specs(draw_specs(warmup * len(KINDS), seed=seed + 10_000), progress=False)
    print("ready", flush=True)
    for line in sys.stdin:
        count, block_seed = line.split()
        summary = summarize(check_specs(draw_specs(int(count), seed=int(block_seed)), progress=False))
        print(json.dumps(dict(zip(summary["kind"], summary["examples_per_s"], strict=True))), flush=True)


class Worker:
    """A long-lived worker process on the code at ``path`` (``PYTHONPATH=path``)."""

    def __init__(self, path: Path, warmup: int, seed: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, __file__, "--worker", "--warmup", str(warmup), "--seed", str(seed)]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        self.process = subprocess.Popen(cmd, env=env, cwd=path, text=True, **pipes)
        assert self.process.stdout.readline().strip() == "ready"

    def rates(self, count: int, seed: int) -> dict[str, float]:
        self.process.stdin.write(f"{count} {seed}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def phases(examples: int, seed: int) -> dict:
    """Milliseconds per example in instance building, ``exact``, ``gamma`` and the bound columns (this checkout,
    batched as ``check_specs`` batches them)."""
    import torch

    from rftgrad.theory import exact, gamma
    from rftgrad.theory.batched import ReplicaEnvs, stack_replicas
    from rftgrad.theory.bounds import bound_columns, columns_as_arrays
    from rftgrad.theory.check import plan_batches
    from rftgrad.theory.instances import draw_specs, random_instance

    torch.set_num_threads(1)
    specs = draw_specs(examples, seed=seed)
    totals = {kind: dict.fromkeys(("instance", "exact", "gamma", "bounds"), 0.0) for kind in KINDS}
    counts = dict.fromkeys(KINDS, 0)
    for batch in plan_batches(specs):
        kind = specs[batch[0]].kind
        t0 = time.perf_counter()
        instances = [random_instance(specs[i]) for i in batch]
        env, policy = instances[0]
        if len(instances) > 1:
            env, policy = ReplicaEnvs([e for e, _ in instances]), stack_replicas([p for _, p in instances])
        t1 = time.perf_counter()
        result = exact(policy, env)
        t2 = time.perf_counter()
        g = gamma(policy, env)
        t3 = time.perf_counter()
        columns_as_arrays(bound_columns(policy, env, result, g))
        t4 = time.perf_counter()
        for key, dt in zip(totals[kind], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[kind][key] += dt
        counts[kind] += len(batch)
    return {kind: {key: 1e3 * value / max(1, counts[kind]) for key, value in totals[kind].items()} for kind in KINDS}


def batch_sizes(examples: int, seed: int, sizes: tuple[int, ...], repeats: int) -> dict:
    """Per kind, the median examples/s of ``check_specs(draw_specs(examples, seed), batch_size=b)`` for each size,
    interleaved over ``repeats`` rounds (this checkout)."""
    import torch

    from rftgrad.theory.check import check_specs, summarize
    from rftgrad.theory.instances import draw_specs

    torch.set_num_threads(1)
    specs = draw_specs(examples, seed=seed)
    runs: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    for _ in range(repeats):
        for size in sizes:
            summary = summarize(check_specs(specs, progress=False, batch_size=size))
            runs[size].append(dict(zip(summary["kind"], summary["examples_per_s"], strict=True)))
    return {size: {k: statistics.median(r[k] for r in rs) for k in (*KINDS, "all")} for size, rs in runs.items()}


def gamma_methods(examples: int, seed: int, repeats: int) -> dict:
    """Median seconds of γ over ``examples`` instances per method (MLP and transformer), interleaved."""
    import torch

    from rftgrad.theory import gamma
    from rftgrad.theory.instances import draw_specs, random_instance

    torch.set_num_threads(1)
    out = {}
    for kind in ("mlp", "transformer"):
        instances = [random_instance(s) for s in draw_specs(examples, seed=seed, kinds=(kind,))]
        times: dict[str, list[float]] = {"jacobian": [], "lanczos": []}
        for _ in range(repeats + 1):  # the first round warms up
            for method in times:
                start = time.perf_counter()
                for env, policy in instances:
                    gamma(policy, env, method=method)
                times[method].append(time.perf_counter() - start)
        out[kind] = {m: examples / statistics.median(t[1:]) for m, t in times.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=None, help="checkout of the old code (omit: new only)")
    parser.add_argument("--examples", type=int, default=2000, help="examples per block (the CLI's draw)")
    parser.add_argument("--repeats", type=int, default=3, help="blocks per code, interleaved old/new")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="first block's draw seed (rftgrad check draws seed 0)")
    parser.add_argument("--batch-sizes", default="1,8,32,64", help="batch sizes to compare (this checkout)")
    parser.add_argument("--quick", action="store_true", help="400 examples, 2 repeats")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "check.json")
    args = parser.parse_args()
    if args.quick:
        args.examples, args.repeats = 400, 2
    if args.worker:
        worker(args.warmup, args.seed)
        return
    load_before = os.getloadavg()
    codes = {"new": ROOT} if args.baseline is None else {"old": args.baseline.resolve(), "new": ROOT}
    workers = {name: Worker(path, args.warmup, args.seed) for name, path in codes.items()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
    for block in range(args.repeats):
        for name, work in workers.items():  # interleaved: old, new, old, new, ... on the same draws
            runs[name].append(work.rates(args.examples, args.seed + block))
    for work in workers.values():
        work.close()
    rows = (*KINDS, "all")
    medians = {name: {kind: statistics.median(r[kind] for r in rs) for kind in rows} for name, rs in runs.items()}
    ratios = (
        {k: statistics.median(n[k] / o[k] for n, o in zip(runs["new"], runs["old"], strict=True)) for k in rows}
        if "old" in codes
        else {}
    )
    split = phases(args.examples, args.seed)
    sizes = tuple(int(size) for size in args.batch_sizes.split(","))
    by_size = batch_sizes(args.examples, args.seed, sizes, max(1, args.repeats - 1))
    report = {
        "examples_per_block": args.examples,
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "examples_per_s": runs,
        "median_examples_per_s": medians,
        "median_ratio_new_over_old": ratios,
        "ms_per_example_new": split,
        "examples_per_s_by_batch_size": by_size,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    head = "| kind | " + " | ".join(f"{n} ex/s" for n in codes) + (" | new/old" if "old" in codes else "")
    print(head + " | instance ms | exact ms | gamma ms | bounds ms |")
    print("|---" * (head.count("|") + 4) + "|")
    for kind in rows:
        cells = [f"{medians[n][kind]:.1f}" for n in codes]
        if "old" in codes:
            cells.append(f"{ratios[kind]:.2f}x")
        ms = split.get(kind)
        cells += [f"{ms[k]:.2f}" for k in ("instance", "exact", "gamma", "bounds")] if ms else [""] * 4
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("\nexamples/s by batch size (this checkout, median of interleaved rounds):")
    print("| batch | " + " | ".join(rows) + " |\n" + "|---" * (len(rows) + 1) + "|")
    for size, row in by_size.items():
        print(f"| {size} | " + " | ".join(f"{row[k]:.1f}" for k in rows) + " |")
    print(f"load average before {load_before}, after {report['loadavg_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()

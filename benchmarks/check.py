"""Throughput of ``rftgrad check`` per policy class: this checkout against a baseline checkout.

Each example is a random instance (``draw_specs``: V 2..6, L 1..5 with V^L <= 1024, 1-3 inputs)
evaluated exactly: instance, exact engine, γ and every bound (``check_specs``). ``examples/s`` is
examples / Σ per-example seconds, as ``rftgrad check`` reports it (start-up excluded). With
``--baseline DIR`` (a checkout of the old code, e.g. ``git archive <commit> | tar -x -C DIR``) two
long-lived worker processes, old and new, take turns on blocks of ``--examples`` specs of one kind
(old, new, old, new, ...: the same specs for both), ``--repeats`` blocks per kind; the table gives
the median examples/s and the median of the per-block ratios new / old. It also splits the new
code's time per example into instance, ``exact``, ``gamma`` and the rest (the share inside ``exact``
predicts the gain of a faster engine), and times ``gamma(method="jacobian")`` against
``method="lanczos"`` (interleaved, in one process).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/check.py --baseline /tmp/base [--quick] [--examples 25 --repeats 8]

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
    """Serve blocks: read ``kind count seed`` lines on stdin, answer examples/s of ``check_specs`` on
    ``draw_specs(count, seed, kinds=(kind,))`` (per-example seconds, as ``rftgrad check`` counts them) with
    whatever ``rftgrad`` is on the path, one torch thread."""
    import torch

    from rftgrad.theory.check import check_specs
    from rftgrad.theory.instances import draw_specs

    torch.set_num_threads(1)
    for _ in range(2):  # warm up every kind first (lazy imports and first-call costs of torch and pandas)
        check_specs(draw_specs(warmup * len(KINDS), seed=seed + 1), progress=False)
    print("ready", flush=True)
    for line in sys.stdin:
        kind, count, block_seed = line.split()
        rows = check_specs(draw_specs(int(count), seed=int(block_seed), kinds=(kind,)), progress=False)
        print(int(count) / rows.groupby("example")["seconds"].first().sum(), flush=True)


class Worker:
    """A long-lived worker process on the code at ``path`` (``PYTHONPATH=path``)."""

    def __init__(self, path: Path, warmup: int, seed: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, __file__, "--worker", "--warmup", str(warmup), "--seed", str(seed)]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        self.process = subprocess.Popen(cmd, env=env, cwd=path, text=True, **pipes)
        assert self.process.stdout.readline().strip() == "ready"

    def rate(self, kind: str, count: int, seed: int) -> float:
        self.process.stdin.write(f"{kind} {count} {seed}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def phases(examples: int, seed: int, warmup: int) -> dict:
    """Milliseconds per example in instance building, ``exact``, ``gamma`` and the bound columns (this checkout)."""
    import torch

    from rftgrad.theory import exact, gamma
    from rftgrad.theory.bounds import bound_columns, columns_as_arrays
    from rftgrad.theory.instances import draw_specs, random_instance

    torch.set_num_threads(1)
    out = {}
    for kind in KINDS:
        specs = draw_specs(warmup, seed=seed + 1, kinds=(kind,)) + draw_specs(examples, seed=seed, kinds=(kind,))
        totals = dict.fromkeys(("instance", "exact", "gamma", "bounds"), 0.0)
        for index, spec in enumerate(specs):
            t0 = time.perf_counter()
            env, policy = random_instance(spec)
            t1 = time.perf_counter()
            result = exact(policy, env)
            t2 = time.perf_counter()
            g = gamma(policy, env)
            t3 = time.perf_counter()
            columns_as_arrays(bound_columns(policy, env, result, g))
            t4 = time.perf_counter()
            if index >= warmup:
                for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    totals[key] += dt
        out[kind] = {key: 1e3 * value / examples for key, value in totals.items()}
    return out


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
    parser.add_argument("--examples", type=int, default=25, help="examples per block (one kind, one code)")
    parser.add_argument("--repeats", type=int, default=8, help="blocks per kind and code, interleaved old/new")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="40 examples, 2 repeats")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "check.json")
    args = parser.parse_args()
    if args.quick:
        args.examples, args.repeats = 10, 3
    if args.worker:
        worker(args.warmup, args.seed)
        return
    load_before = os.getloadavg()
    codes = {"new": ROOT} if args.baseline is None else {"old": args.baseline.resolve(), "new": ROOT}
    workers = {name: Worker(path, args.warmup, args.seed) for name, path in codes.items()}
    runs: dict[str, dict[str, list[float]]] = {name: {kind: [] for kind in KINDS} for name in codes}
    for block in range(args.repeats):
        for kind in KINDS:
            for name, work in workers.items():  # interleaved: old, new, old, new, ... on the same specs
                runs[name][kind].append(work.rate(kind, args.examples, args.seed + 1000 * block))
    for work in workers.values():
        work.close()
    medians = {name: {kind: statistics.median(rs[kind]) for kind in KINDS} for name, rs in runs.items()}
    ratios = (
        {k: statistics.median(n / o for n, o in zip(runs["new"][k], runs["old"][k], strict=True)) for k in KINDS}
        if "old" in codes
        else {}
    )
    split = phases(args.examples * 4, args.seed, args.warmup)
    methods = gamma_methods(max(10, args.examples), args.seed, min(args.repeats, 4))
    report = {
        "examples_per_block": args.examples,
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "examples_per_s": runs,
        "median_examples_per_s": medians,
        "median_ratio_new_over_old": ratios,
        "ms_per_example_new": split,
        "gamma_examples_per_s": methods,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    head = "| kind | " + " | ".join(f"{n} ex/s" for n in codes) + (" | new/old" if "old" in codes else "")
    print(head + " | instance ms | exact ms | gamma ms | bounds ms | exact share |")
    print("|---" * (head.count("|") + 5) + "|")
    for kind in KINDS:
        cells = [f"{medians[n][kind]:.1f}" for n in codes]
        if "old" in codes:
            cells.append(f"{ratios[kind]:.2f}x")
        ms = split[kind]
        share = ms["exact"] / sum(ms.values())
        cells += [f"{ms[k]:.2f}" for k in ("instance", "exact", "gamma", "bounds")] + [f"{share:.0%}"]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("\nγ alone, examples/s (median of interleaved repeats):")
    for kind, row in methods.items():
        print(f"  {kind}: jacobian {row['jacobian']:.1f}, lanczos {row['lanczos']:.1f}")
    print(f"load average before {load_before}, after {report['loadavg_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()

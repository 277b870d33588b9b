"""``rftgrad sweep`` serial against a local Ray on the same machine: wall time, Ray's start-up cost, per-unit seconds.

A sweep of ``--units`` points (at least 8) of ``compare`` at its paper-scale budget (``--full``: 2000 RFT and
2000 SFT steps, 8 seeds batched as replicas: about 5-20 s a unit on one core), run through
:func:`rftgrad.sweep.run_sweep` with the serial executor and with a local Ray started for the call (sized to
the machine, shut down after, as ``--executor ray`` does), interleaved: serial, ray, serial, ray, ...
(``--repeats`` each; ``--quick``: one each at the quick budget, for a smoke test). Every sweep writes into a
fresh folder, so every unit runs. One intra-op torch thread per unit (``OMP_NUM_THREADS=1``, also for the Ray
workers). Ray's start-up is measured apart: ``ray.init`` to the first trivial task's result, and
``ray.shutdown``.

    python benchmarks/sweep.py                 # 8 units, 2 repeats each (about 2 minutes on 2 idle cores)
    python benchmarks/sweep.py --quick         # seconds: quick budget, 1 repeat each
    python benchmarks/sweep.py --units 16 --repeats 3

Prints a markdown table (medians, ratio serial / ray) and writes ``benchmarks/results/sweep.json`` (every
timing, per-unit seconds, the machine, the load averages before and after, the arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported; Ray's workers inherit it

import torch  # noqa: E402

from rftgrad.executors import RayExecutor, SerialExecutor  # noqa: E402
from rftgrad.runtime import choose_threads, environment_info, use_threads  # noqa: E402
from rftgrad.sweep import run_sweep  # noqa: E402

RESULTS = Path(__file__).parent / "results"
LRS = ("0.003", "0.01", "0.03", "0.1", "0.3", "0.001", "0.02", "0.05")  # learning rates, 2 vocab sizes each


def grid(units: int) -> list[str]:
    """``units`` points: ``units / 2`` learning rates x vocab_size 8, 10."""
    if units < 8 or units % 2 or units // 2 > len(LRS):
        raise SystemExit(f"--units takes an even number from 8 to {2 * len(LRS)}, got {units}")
    return [f"lr={','.join(LRS[: units // 2])}", "vocab_size=8,10"]


def ray_startup(cores: int) -> dict[str, float]:
    """Seconds from ``ray.init`` to the first trivial task's result, and of ``ray.shutdown``."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")
    ray.get(ray.remote(lambda: None).remote())
    ready = time.perf_counter()
    ray.shutdown()
    return {"init_to_first_task_s": ready - start, "shutdown_s": time.perf_counter() - ready}


def time_sweep(executor_name: str, units: int, full: bool, root: Path, index: int) -> dict[str, object]:
    """One sweep into a fresh folder; its wall seconds (Ray start and stop included) and per-unit seconds."""
    threads = choose_threads()
    executor = SerialExecutor(threads=threads) if executor_name == "serial" else RayExecutor(threads=threads)
    out = root / f"{executor_name}-{index}"
    sets = [] if full else ["trainer.seeds=2"]
    start = time.perf_counter()
    result = run_sweep("compare", grid(units), out, sets=sets, full=full, executor=executor, progress=False)
    wall = time.perf_counter() - start
    return {"executor": executor_name, "repeat": index, "wall_s": wall, "unit_seconds": result.unit_seconds}


def markdown(summary: dict[str, object]) -> str:
    """The ready table of the README."""
    rows = [
        "| executor | units | median wall (s) | median unit (s) | runs |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("serial", "ray"):
        part = summary[name]
        rows.append(f"| {name} | {summary['units']} | {part['median_wall_s']:.1f} | {part['median_unit_s']:.1f} | "
                    f"{part['runs']} |")  # fmt: skip
    startup = summary["ray_startup"]
    rows.append("")
    rows.append(
        f"serial / ray wall: **{summary['ratio_serial_over_ray']:.2f}x** on {summary['cores']} cores; Ray start-up "
        f"(init to first task) {startup['init_to_first_task_s']:.1f} s, shutdown {startup['shutdown_s']:.1f} s; "
        f"load average before {summary['load_before']}, after {summary['load_after']}"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=8, help="points of the sweep, even, 8 to 16 (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="timed sweeps per executor, interleaved (default 2)")
    parser.add_argument("--quick", action="store_true", help="quick budget, one sweep each: a smoke test")
    parser.add_argument("--out", default=str(RESULTS / "sweep.json"), help="JSON path")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats = 1 if args.quick else args.repeats
    full = not args.quick
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load_before = [round(x, 2) for x in os.getloadavg()]
    startup = ray_startup(cores)
    timings = []
    with tempfile.TemporaryDirectory(prefix="rftgrad-sweep-bench-") as scratch, use_threads(choose_threads()):
        for index in range(repeats):
            for name in ("serial", "ray"):
                timing = time_sweep(name, args.units, full, Path(scratch), index)
                timings.append(timing)
                print(f"{name} #{index}: {timing['wall_s']:.1f} s", flush=True)
    load_after = [round(x, 2) for x in os.getloadavg()]
    summary: dict[str, object] = {
        "units": args.units, "repeats": repeats, "full": full, "cores": cores, "ray_startup": startup,
        "load_before": load_before, "load_after": load_after,
    }  # fmt: skip
    for name in ("serial", "ray"):
        mine = [t for t in timings if t["executor"] == name]
        units = [s for t in mine for s in t["unit_seconds"].values()]
        summary[name] = {"median_wall_s": statistics.median(t["wall_s"] for t in mine),
                         "median_unit_s": statistics.median(units), "runs": len(mine)}  # fmt: skip
    summary["ratio_serial_over_ray"] = summary["serial"]["median_wall_s"] / summary["ray"]["median_wall_s"]
    table = markdown(summary)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"summary": summary, "timings": timings, "markdown": table, "args": vars(args),
              "environment": environment_info()}  # fmt: skip
    out.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

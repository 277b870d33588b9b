"""The thread policy, measured: ``rftgrad figures --tiny`` at each thread setting, idle and beside a busy process.

The CLI runs with one intra-op torch thread unless ``--threads N`` or ``OMP_NUM_THREADS`` says otherwise
(:func:`rftgrad.runtime.choose_threads`). This script checks that default against the other settings on this
machine: for each condition (``idle``; ``loaded``: one CPU-bound process spinning beside the command, as another
user's job would) and each setting (``default``: no flag and no ``OMP_NUM_THREADS``, i.e. the policy's choice;
``--threads N`` for N in ``--threads``), it times the whole command (fresh ``--runs`` folder each time, so every
experiment runs; the pretrained-transformer cache is warmed first, so no run pays for pretraining), repeats
interleaved (setting A, B, A, B, ...), and reports per condition the median seconds per setting and the ratio of
the default's median to the best setting's (the issue's target: at most 1.2 in both conditions).

    python benchmarks/threads.py                      # default: --threads 1,2 --repeats 2 (about 8 minutes)
    python benchmarks/threads.py --repeats 3 --threads 1,2,4

Writes ``benchmarks/results/threads.csv`` (one row per timed command) and a JSON sidecar with the machine,
the load averages before and after, and the arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rftgrad.runtime import environment_info

RESULTS = Path(__file__).parent / "results"
SPIN = "while True: pass"  # one CPU-bound process: what "another process using one core" means here


def figures_command(runs: Path, threads: int | None) -> list[str]:
    """``rftgrad figures --tiny`` into a fresh folder, optionally with ``--threads``."""
    command = [sys.executable, "-m", "rftgrad.cli", "figures", "--tiny", "--no-progress"]
    command += ["--runs", str(runs), "--out", str(runs / "gallery")]
    return command + ([] if threads is None else ["--threads", str(threads)])


def time_command(command: list[str]) -> float:
    """Wall seconds of ``command`` run without ``OMP_NUM_THREADS`` (so the CLI's own policy decides)."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="explicit --threads settings, comma-separated (default 1,2)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per setting and condition (default 2)")
    parser.add_argument("--conditions", default="idle,loaded", help="idle, loaded or both (default both)")
    parser.add_argument("--out", default=str(RESULTS / "threads.csv"), help="CSV path")
    args = parser.parse_args(argv)
    settings: list[int | None] = [None, *(int(t) for t in args.threads.split(","))]
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rftgrad-threads-") as tmp:
        time_command(figures_command(Path(tmp) / "warm-up", None))  # fills the pretrained cache; untimed
        for condition in args.conditions.split(","):
            spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if condition == "loaded" else None
            try:
                for repeat in range(args.repeats):
                    for threads in settings:
                        runs = Path(tmp) / f"{condition}-{repeat}-{threads}"
                        seconds = time_command(figures_command(runs, threads))
                        setting = "default" if threads is None else f"--threads {threads}"
                        rows.append({"condition": condition, "setting": setting, "repeat": repeat, "seconds": seconds,
                                     "load_1min": os.getloadavg()[0]})  # fmt: skip
                        print(f"{condition:7s} {setting:12s} repeat {repeat}: {seconds:7.1f} s", flush=True)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    medians = frame.groupby(["condition", "setting"])["seconds"].median().unstack("setting")
    medians["default / best"] = medians["default"] / medians.min(axis=1)
    print(medians.round(2).to_string())
    sidecar = {"args": vars(args), "environment": environment_info("cpu"), "cpu_count": os.cpu_count(),
               "load_before": load_before, "load_after": os.getloadavg()}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

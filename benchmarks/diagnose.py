"""`rftgrad diagnose` on a TRL-sized run: where the time goes, and the scatter's labels A/B.

Writes a synthetic TRL 1.16 completions folder (``completions/completions_00001.parquet``, ...:
``step, prompt, completion, accuracy_reward, format_reward, advantage``; ``--steps`` steps of
``--groups`` groups of ``--group-size`` completions, the accuracy a Bernoulli of a per-group rate,
the format reward continuous with 5% ``None``), then times, with one torch thread:

* ``read``: :func:`rftgrad.diagnose.read_rollouts` on the folder;
* ``stats``: :func:`rftgrad.diagnose.diagnose_log` (per-group table, TRL's metrics, summary);
* ``figure``: :func:`rftgrad.diagnose.plot_mean_vs_std` saved as PNG and PDF (what dominates
  :func:`rftgrad.diagnose.write_report`; its CSV and JSON take well under a second);

for two settings of the scatter, interleaved ``--repeats`` times: ``labels`` (before: every shared
point labelled ``×k``, full-size markers: ``max_labels`` and ``sparse`` past any count) and
``capped`` (now: the defaults, at most ``SCATTER_MAX_LABELS`` labels, none past ``SCATTER_SPARSE``
points, smaller markers).
Prints the medians and the ratio; results are in benchmarks/README.md.

    OMP_NUM_THREADS=1 python benchmarks/diagnose.py --steps 500
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rftgrad.diagnose import diagnose_log, plot_mean_vs_std, read_rollouts
from rftgrad.plotting import save_figure


def write_trl_folder(folder: Path, steps: int, groups: int, group_size: int, seed: int = 0) -> int:
    """A TRL completions folder of ``steps`` parquet files; returns the number of rows."""
    rng = np.random.default_rng(seed)
    (folder / "completions").mkdir(parents=True)
    for step in range(1, steps + 1):
        prompts = np.repeat([f"prompt {rng.integers(0, 5000)}" for _ in range(groups)], group_size)
        rate = rng.random(groups).repeat(group_size)
        accuracy = (rng.random(groups * group_size) < rate).astype(float)
        fmt = np.where(rng.random(groups * group_size) < 0.05, np.nan, rng.random(groups * group_size).round(1))
        table = {"step": step, "prompt": prompts, "completion": "x", "accuracy_reward": accuracy}
        table |= {"format_reward": fmt, "advantage": 0.0}
        pd.DataFrame(table).to_parquet(folder / "completions" / f"completions_{step:05d}.parquet")
    return steps * groups * group_size


def one_run(folder: Path, out: Path, capped: bool) -> dict[str, float]:
    """Seconds of each phase of one diagnosis; ``capped=False`` draws the scatter as it was."""
    limits = {} if capped else {"max_labels": 10**12, "sparse": 10**12}  # a label on every shared point
    start = time.perf_counter()
    log = read_rollouts(folder, reward_weights=[1.0, 0.5])
    read = time.perf_counter()
    diagnosis = diagnose_log(log, reward_range=(0.0, 1.5))
    stats = time.perf_counter()
    save_figure(plot_mean_vs_std(diagnosis, **limits), out / "mean_vs_std")  # PNG and PDF, as write_report
    end = time.perf_counter()
    return {"read": read - start, "stats": stats - read, "figure": end - stats, "total": end - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_trl_folder(Path(tmp) / "trl", args.steps, args.groups, args.group_size)
        print(f"{args.steps} files, {rows} rows, {args.steps * args.groups} groups")
        times: dict[str, list[dict[str, float]]] = {"labels": [], "capped": []}
        for repeat in range(args.repeats):
            for setting in ("labels", "capped"):  # interleaved A/B
                times[setting].append(
                    one_run(Path(tmp) / "trl", Path(tmp) / f"out-{setting}-{repeat}", setting == "capped")
                )
        for setting, runs in times.items():
            medians = {phase: statistics.median(run[phase] for run in runs) for phase in runs[0]}
            print(setting, " ".join(f"{phase} {seconds:.2f} s" for phase, seconds in medians.items()))
        before, after = (statistics.median(run["total"] for run in times[s]) for s in ("labels", "capped"))
        print(f"ratio labels / capped: {before / after:.1f}x")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

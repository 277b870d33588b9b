"""Pretraining cost of the prevalence mixture: two-valued (M = 0) vs graded (M near misses).

The graded mixture with M = 1 reuses the covered prompts' echo slot, so it has the same
``S = 3`` outputs per prompt as the two-valued one and should cost the same per Adam step;
every further near miss adds an output (a teacher-forced pass) per prompt. Interleaved repeats
(M = 0, 1, 2, 0, 1, 2, ...), one torch thread, medians and ratios to M = 0, and the load average.

    PYTHONPATH=. python benchmarks/prevalence_mixture.py [--quick] [--steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from rftgrad.envs.language import language_env, pretraining_mixture
from rftgrad.finetune.pretraining import pretrain
from rftgrad.models.transformer import TinyTransformerPolicy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 steps, 2 repeats")
    parser.add_argument("--steps", type=int, default=40, help="Adam steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per setting")
    parser.add_argument("--prompts-per-task", type=int, default=32, help="the prevalence default")
    args = parser.parse_args()
    steps, repeats = (10, 2) if args.quick else (args.steps, args.repeats)
    torch.set_num_threads(1)
    env = language_env(prompts_per_task=args.prompts_per_task, seed=0)
    settings = {0: (1.0, 1.0), 1: (0.0, 1.0), 2: (0.0, 1.0)}
    mixtures = {
        m: pretraining_mixture(env, None, 0.01, 0, near_misses=m, reference_range=r) for m, r in settings.items()
    }

    def once(m: int, count: int) -> float:
        policy = TinyTransformerPolicy.for_env(env, d_model=32, num_heads=2, num_layers=2, seed=0, dtype="float32")
        start = time.perf_counter()
        pretrain(policy, env, mixtures[m].outputs, mixtures[m].weights, steps=count, lr=0.01)
        return (time.perf_counter() - start) / count

    for m in mixtures:  # warm-up
        once(m, 2)
    times: dict[int, list[float]] = {m: [] for m in mixtures}
    for _ in range(repeats):
        for m in mixtures:
            times[m].append(once(m, steps))
    medians = {m: statistics.median(t) for m, t in times.items()}
    print(f"load average {os.getloadavg()}; {steps} steps x {repeats} repeats; N = {env.num_inputs} prompts")
    print("| near_misses | outputs S | ms per step (median) | ratio to M = 0 | s per 1,500 steps |")
    print("|---:|---:|---:|---:|---:|")
    for m, median in medians.items():
        size = mixtures[m].outputs.shape[1]
        print(f"| {m} | {size} | {1e3 * median:.1f} | {median / medians[0]:.2f} | {1500 * median:.0f} |")
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "load": os.getloadavg(),
        "steps": steps,
        "repeats": repeats,
        "times": {str(m): t for m, t in times.items()},
    }
    (out / "prevalence_mixture.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

"""Write examples/rollouts.jsonl (TRL-style columns) and examples/rollouts.csv (verl-style columns).

A deterministic stand-in for a GRPO training log: 200 prompts of rftgrad's ``sequence``
environment (outputs of L = 3 tokens over V = 4, exact-match reward), 8 outputs each sampled
from a tabular softmax policy that puts a chosen probability p on each prompt's target:

* 30 easy prompts, p = 0.9;
* 110 mixed prompts, p uniform in [0.15, 0.85];
* 60 hard prompts, p = 0.001 (reward STD about 0 with the mean far from the maximum).

The reward is the environment's exact-match reward mapped from {-1, +1} to {0, 1}, like a
verifier's accuracy reward. The prompts are split over 4 steps of 50. Run from the repository
root: ``python examples/make_rollouts.py`` (same files every run).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rftgrad.envs import random_sequence_env
from rftgrad.models import TabularPolicy

HERE = Path(__file__).resolve().parent
NUM_PROMPTS, SAMPLES, STEPS, SEED = 200, 8, 4, 0
EASY, MIXED, HARD = 30, 110, 60


def success_probabilities(rng: np.random.Generator) -> np.ndarray:
    """``(200,)`` target probabilities, easy / mixed / hard prompts in a seeded random order."""
    probs = np.concatenate([np.full(EASY, 0.9), rng.uniform(0.15, 0.85, MIXED), np.full(HARD, 1e-3)])
    return probs[rng.permutation(NUM_PROMPTS)]


def rollouts() -> pd.DataFrame:
    """One row per sampled output: ``step, prompt, completion, reward, advantage`` (TRL's table columns)."""
    rng = np.random.default_rng(SEED)
    env = random_sequence_env(num_prompts=NUM_PROMPTS, vocab_size=4, length=3, reward="exact_match", seed=SEED)
    policy = TabularPolicy.for_env(env, seed=SEED, dtype="float64")
    policy.set_output_probability(env, torch.as_tensor(success_probabilities(rng))[None, :])  # (R=1, N)
    ids = torch.arange(NUM_PROMPTS)
    outputs = policy.sample(ids, policy.inputs_from(env), SAMPLES, length=3, seed=SEED)[0]  # (N, M, L)
    prompt_ids = ids.repeat_interleave(SAMPLES)  # (N*M,)
    rewards = (env.reward(prompt_ids, outputs.reshape(-1, 3)).numpy() + 1) / 2  # (N*M,) in {0, 1}
    grouped = rewards.reshape(NUM_PROMPTS, SAMPLES)
    # GRPO's advantage as TRL logs it: (r - group mean) / (group Bessel STD + 1e-4)
    advantages = (grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, ddof=1, keepdims=True) + 1e-4)
    prompts = [f"Q{i:03d}: continue " + " ".join(map(str, env.prompts[i].tolist())) for i in range(NUM_PROMPTS)]
    return pd.DataFrame(
        {
            "step": prompt_ids.numpy() // (NUM_PROMPTS // STEPS) + 1,
            "prompt": [prompts[i] for i in prompt_ids.tolist()],
            "completion": [" ".join(map(str, y)) for y in outputs.reshape(-1, 3).tolist()],
            "reward": rewards,
            "advantage": advantages.reshape(-1).round(4),
        }
    )


def main() -> None:
    frame = rollouts()
    with (HERE / "rollouts.jsonl").open("w", encoding="utf-8") as stream:
        for record in frame.to_dict(orient="records"):
            stream.write(json.dumps({k: v.item() if hasattr(v, "item") else v for k, v in record.items()}) + "\n")
    verl = frame.rename(columns={"prompt": "input", "completion": "output", "reward": "score"})
    verl[["input", "output", "score", "step"]].to_csv(HERE / "rollouts.csv", index=False)
    print(f"wrote {HERE / 'rollouts.jsonl'} and {HERE / 'rollouts.csv'}: {len(frame)} rows")


if __name__ == "__main__":
    main()

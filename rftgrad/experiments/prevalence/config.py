"""Settings of the ``prevalence`` experiment (paper Section 4.1, docs/paper.md §5).

A tiny causal transformer is pretrained on an uneven mixture of the synthetic language's
tasks (:mod:`rftgrad.envs.language`, :mod:`rftgrad.finetune.pretraining`; cached on disk).
By default the covered prompts' targets are graded (``near_misses = 1``: a covered prompt puts
a share ``u_n`` uniform on ``reference_range`` of its mass on the reference and the rest on a
near miss), so the initial STD spans a continuum and the per-prompt correlation of the gain
with it can be tested; ``--set near_misses=0 --set reference_range=1,1`` gives the earlier
two-valued mixture (covered prompts on the reference, uncovered ones on the echo).
Under it, per task and reward, each prompt's reward mean and STD are measured exactly and
from ``num_samples`` samples (the paper's 10), the latter ``sample_draws`` times to show
the estimator's error. Then, for each reward in ``train_rewards``, RFT (the sampled
``estimator``) and SFT (toward the reference outputs) train for the same ``steps`` from the
pretrained weights, at every learning rate in ``lr`` (replicas); the analysis reports each
method at its best learning rate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rftgrad.envs.language import DEFAULT_COVERAGE, LANGUAGE_REWARDS, TASKS
from rftgrad.errors import ConfigError
from rftgrad.finetune.config import TrainConfig
from rftgrad.theory.bounds import FAR_FRACTION


@dataclass(frozen=True)
class Config:
    """Prevalence of small-STD, far-from-optimal prompts per task, and RFT vs SFT from a pretrained transformer."""

    DERIVED = ("trainer.arms",)  # rft:steps and sft:steps (equal_arms)

    tasks: tuple[str, ...] = tuple(TASKS)  # tasks of the language (copy, reverse, sort, add, keyword)
    coverage: tuple[float, ...] = tuple(DEFAULT_COVERAGE.values())  # pretraining coverage per task (same order)
    prompts_per_task: int = 32  # prompts per task
    vocab_size: int = 6  # V, output symbols
    length: int = 4  # L, output length (V^L outputs are enumerated exactly)
    noise: float = 0.01  # pretraining mass on a random output per prompt
    near_misses: int = 1  # M near-miss outputs (1-2 symbols off y*) a covered prompt's target shares; 0: two-valued
    reference_range: tuple[float, float] = (0.0, 1.0)  # a covered prompt's share u_n of y* is uniform on it; 0: (1, 1)
    data_seed: int = 0  # seed of the prompts, the coverage draw and the learned reward
    pretrain_steps: int = 1500  # full-batch Adam steps of pretraining (cached on disk afterwards)
    pretrain_lr: float = 0.01  # pretraining learning rate
    d_model: int = 32  # transformer width
    num_layers: int = 2  # transformer blocks
    num_heads: int = 2  # attention heads
    rewards: tuple[str, ...] = LANGUAGE_REWARDS  # rewards of the mean-vs-STD measurement
    train_rewards: tuple[str, ...] = ("exact_match", "position_match")  # rewards RFT and SFT are trained on
    num_samples: int = 10  # samples per prompt of the sampled estimate (the paper's 10)
    sample_draws: int = 20  # independent num_samples-draws per prompt (the spread is the estimator's error)
    sample_seed: int = 0  # seed of those draws
    far_fraction: float = FAR_FRACTION  # "far from optimal": V more than this share of the reward range below the best
    steps: int = 400  # RFT and SFT steps (equal budgets)
    trainer: TrainConfig = TrainConfig(
        estimator="rloo",
        num_generations=8,
        lr=(0.001, 0.003),
        seeds=1,
        eval_every=400,
        eval_grad_norm=False,
        checkpoint_every=100,
        dtype="float32",
    )  # RFT's sampled estimator (as the paper's PPO), Adam lrs (each method at its best), float32 as pretrained

    def __post_init__(self) -> None:
        if not self.tasks or any(t not in TASKS for t in self.tasks) or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"tasks {self.tasks!r} invalid; give distinct names from {', '.join(TASKS)}")
        if len(self.coverage) != len(self.tasks) or any(not 0 <= c <= 1 for c in self.coverage):
            raise ConfigError(
                f"coverage needs one value in [0, 1] per task ({len(self.tasks)} tasks), got {self.coverage}"
            )
        low, high = self.reference_range if len(self.reference_range) == 2 else (-1.0, -1.0)
        if self.near_misses < 0 or not 0 <= low <= high <= 1 or (self.near_misses == 0 and low < 1):
            raise ConfigError(
                f"near_misses={self.near_misses}, reference_range={self.reference_range} invalid; use near_misses "
                ">= 1 with 0 <= low <= high <= 1, or near_misses=0 with reference_range=1,1 (the two-valued mixture)"
            )
        for name in ("rewards", "train_rewards"):
            chosen = getattr(self, name)
            if not chosen or any(r not in LANGUAGE_REWARDS for r in chosen):
                raise ConfigError(f"{name} {chosen!r} invalid; choose from {', '.join(LANGUAGE_REWARDS)}")
        if not set(self.train_rewards) <= set(self.rewards):
            raise ConfigError(f"train_rewards {self.train_rewards} must be among rewards {self.rewards}")
        if self.num_samples < 2 or self.sample_draws < 1:
            raise ConfigError("num_samples must be >= 2 (a sample STD needs two samples) and sample_draws >= 1")
        if not 0 < self.far_fraction < 1:
            raise ConfigError(f"far_fraction must lie in (0, 1), got {self.far_fraction}")
        if self.steps < 1 or self.pretrain_steps < 1:
            raise ConfigError("steps and pretrain_steps must be >= 1")

    def equal_arms(self) -> tuple[str, str]:
        """RFT and SFT for the same number of steps."""
        return f"rft:{self.steps}", f"sft:{self.steps}"

    def equal_trainer(self) -> TrainConfig:
        """The trainer section with :meth:`equal_arms`."""
        return dataclasses.replace(self.trainer, arms=self.equal_arms())


#: the paper-scale budget (``--full``): longer training, every reward, two seeds per learning rate.
FULL: dict[str, object] = {
    "steps": 1000,
    "eval_every": 250,
    "train_rewards": LANGUAGE_REWARDS,
    "seeds": 2,
}

#: a budget the test suite runs in seconds (small model, few prompts and steps).
TESTING: dict[str, object] = {
    "prompts_per_task": 6,
    "vocab_size": 4,
    "length": 3,
    "pretrain_steps": 150,
    "d_model": 16,
    "num_layers": 1,
    "steps": 20,
    "eval_every": 20,
    "sample_draws": 3,
    "train_rewards": ("exact_match",),
}

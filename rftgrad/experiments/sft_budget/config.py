"""Settings of the ``sft_budget`` experiment (paper Section 5.2, docs/paper.md §6).

Task with shared structure: Gaussian clusters whose first ``family_size`` classes share a
common direction; pretrain to uniform k-label sets; the finetuning targets of every input
of those classes follow one rule, "answer ``ℓ*``", with ``ℓ*`` outside their sets (the
pretrained model gives it probability about 0: small STD, reward about -1) but trained by
other classes (a shared output, as a token of a vocabulary is). Arms: an initial SFT phase
on a fraction of the labelled inputs for a number of steps, then RFT on all inputs;
RFT alone; and full SFT (all inputs, ``full_sft_steps``) then RFT as the reference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rftgrad.envs.tasks import check_task_settings
from rftgrad.errors import ConfigError
from rftgrad.finetune.config import TrainConfig


@dataclass(frozen=True)
class Config:
    """A short SFT phase on a few inputs, then RFT, against RFT alone and full SFT + RFT."""

    DERIVED = ("trainer.arms",)  # the arms come from the grid: budget_arms()

    family_size: int = 3  # classes whose inputs follow the relabelling rule (the small-STD family)
    family_weight: float = 0.8  # weight of the family's shared direction in its class centres (0: no shared structure)
    sft_fractions: tuple[float, ...] = (0.01, 0.05, 0.1, 1.0)  # shares of the labelled inputs the SFT phase sees
    sft_steps: tuple[int, ...] = (3, 10, 30, 100)  # SFT phase lengths of the grid
    rft_steps: int = 300  # RFT steps after the SFT phase (and of RFT alone)
    full_sft_steps: int = 300  # SFT steps on every input of the reference arm (full SFT + RFT)
    num_train: int = 100  # points per class (80% train)
    cluster_dim: int = 64  # feature dimension
    cluster_noise: float = 0.1  # within-cluster noise per coordinate (cluster centres 3 apart)
    label_set_size: int = 5  # k: labels per class's pretraining set
    wrong_reward: float = -1.0  # reward of a wrong answer
    pretrain_steps: int = 300  # full-batch Adam steps of pretraining (linear policy, temperature 1)
    pretrain_lr: float = 0.1  # pretraining learning rate
    data_seed: int = 0  # seed of the data, the label sets and the rule's label
    trainer: TrainConfig = TrainConfig(
        optimizer="sgd", lr=(0.3,), seeds=3, eval_every=25
    )  # both phases: sgd (the gradient's size is what vanishes; Adam: docs/experiments.md); seeds draw the SFT subset

    def __post_init__(self) -> None:
        check_task_settings(self)
        if not 1 <= self.family_size < 10:
            raise ConfigError(f"family_size must lie in [1, 9] (10 classes), got {self.family_size}")
        if not self.sft_fractions or any(not 0 < f <= 1 for f in self.sft_fractions):
            raise ConfigError(f"sft_fractions must be non-empty, each in (0, 1], got {self.sft_fractions}")
        if not self.sft_steps or min(self.sft_steps) < 1:
            raise ConfigError(f"sft_steps must be non-empty, each >= 1, got {self.sft_steps}")
        if self.rft_steps < 1 or self.full_sft_steps < 1:
            raise ConfigError("rft_steps and full_sft_steps must be >= 1")

    def budget_trainer(self) -> TrainConfig:
        """The trainer section with the grid's arms (:meth:`budget_arms`)."""
        return dataclasses.replace(self.trainer, arms=self.budget_arms())

    def budget_arms(self) -> tuple[str, ...]:
        """RFT alone, every ``sft:S@f+rft:N`` of the grid, and full SFT + RFT (the reference)."""
        grid = [
            f"sft:{steps}@{fraction:g}+rft:{self.rft_steps}" if fraction < 1 else f"sft:{steps}+rft:{self.rft_steps}"
            for fraction in self.sft_fractions
            for steps in self.sft_steps
        ]
        reference = f"sft:{self.full_sft_steps}+rft:{self.rft_steps}"
        return tuple(dict.fromkeys([f"rft:{self.rft_steps}", *grid, reference]))


#: the paper-scale budget (``--full``): a finer grid, more seeds.
FULL: dict[str, object] = {
    "sft_fractions": (0.005, 0.01, 0.02, 0.05, 0.1, 1.0),
    "sft_steps": (1, 3, 10, 30, 100),
    "seeds": 5,
}

#: a budget the test suite runs in seconds (the issue's check: RFT alone < 0.05, SFT on 1% then RFT > 0.3).
TESTING: dict[str, object] = {
    "sft_fractions": (0.01, 1.0),
    "sft_steps": (30,),
    "rft_steps": 150,
    "full_sft_steps": 100,
    "seeds": 2,
}

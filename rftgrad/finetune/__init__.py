"""Finetuning: objectives (exact RFT, sampled estimators, SFT) and the batched trainer.

Modules::

    config.py      TrainConfig (typed, checked), phases, the replica grid
    advantages.py  advantage formulas: REINFORCE, baseline, RLOO, GRPO, Dr. GRPO, DAPO, PPO-clip
    objectives.py  what a step ascends: exact RFT, sampled RFT, SFT (+ entropy / KL)
    pretraining.py pretrain(), PretrainedPolicies (one pretraining, every arm), the cached transformer
    optim.py       SGD and Adam with one state and learning rate per replica
    trainer.py     train(): arms of phases, exact evaluation per group, checkpoints, records

See docs/finetune.md for the formulas and the design.
"""

from rftgrad.finetune.advantages import (
    MonteCarloUpdate,
    advantages,
    clipped_surrogate,
    dapo_samples_per_input,
    first_informative_group,
    group_std,
    monte_carlo_update,
    pass_k_advantages,
    pass_k_estimate,
    zero_std_groups,
)
from rftgrad.finetune.config import ESTIMATORS, Phase, ReplicaSettings, TrainConfig, parse_arm, replica_grid
from rftgrad.finetune.objectives import SFT, ExactRFT, Objective, SampledRFT, StepBatch, make_objective
from rftgrad.finetune.optim import SGD, Adam, make_optimizer
from rftgrad.finetune.pretraining import (
    PretrainedPolicies,
    cache_root,
    pretrain,
    pretrained_transformer,
    task_summary,
)
from rftgrad.finetune.trainer import (
    RECORD_COLUMNS,
    TrainResult,
    choose_inputs,
    group_means,
    per_input_metrics,
    phase_subset,
    train,
)

__all__ = [
    "ESTIMATORS", "RECORD_COLUMNS", "SFT", "SGD", "Adam", "ExactRFT", "MonteCarloUpdate", "Objective", "Phase",
    "PretrainedPolicies", "ReplicaSettings", "SampledRFT", "StepBatch", "TrainConfig", "TrainResult", "advantages",
    "cache_root", "choose_inputs", "clipped_surrogate", "dapo_samples_per_input", "first_informative_group",
    "group_means", "group_std", "make_objective", "make_optimizer", "monte_carlo_update", "parse_arm",
    "pass_k_advantages", "pass_k_estimate", "per_input_metrics", "phase_subset", "pretrain", "pretrained_transformer",
    "replica_grid", "task_summary", "train", "zero_std_groups",
]  # fmt: skip

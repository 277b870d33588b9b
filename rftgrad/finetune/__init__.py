"""Finetuning: objectives (exact RFT, sampled estimators, SFT) and the batched trainer.

    config.py      TrainConfig (typed, checked), phases, the replica grid
    advantages.py  advantage formulas: REINFORCE, baseline, RLOO, GRPO, Dr. GRPO, DAPO, PPO-clip
    objectives.py  what a step ascends: exact RFT, sampled RFT, SFT (+ entropy / KL)
    pretraining.py pretrain(), PretrainedPolicies (one pretraining, every arm), the cached transformer
    optim.py       SGD and Adam with one state and learning rate per replica
    trainer.py     train(): arms of phases, exact evaluation per group, checkpoints, records

See docs/finetune.md for the formulas and the design.
"""

from rftgrad.finetune.config import ESTIMATORS, Phase, ReplicaSettings, TrainConfig, parse_arm, replica_grid
from rftgrad.finetune.pretraining import PretrainedPolicies, pretrain, pretrained_transformer
from rftgrad.finetune.trainer import RECORD_COLUMNS, TrainResult, train

__all__ = [
    "ESTIMATORS",
    "RECORD_COLUMNS",
    "Phase",
    "PretrainedPolicies",
    "ReplicaSettings",
    "TrainConfig",
    "TrainResult",
    "parse_arm",
    "pretrain",
    "pretrained_transformer",
    "replica_grid",
    "train",
]

"""Settings of the ``controlled`` experiment (docs/paper.md §4) and its named variants.

Protocol: pretrain to a uniform distribution over a set of k outputs per input (the k-label
set of its class, or the output set of its prompt group); give a ``modify_fraction`` of the
training inputs a new target outside that set (probability about 0: expected reward about
-1 and STD about 0); finetune from the pretrained weights with exact-expectation RFT and
with SFT, side by side (``arms``), several seeds as replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

from rftgrad.envs.tasks import check_task_settings
from rftgrad.errors import ConfigError
from rftgrad.finetune.config import TrainConfig

SEQUENCE_REWARDS = ("exact_match", "position_match")


@dataclass(frozen=True)
class Config:
    """Controlled finetuning from a pretrained, uncertain policy (see the module doc)."""

    variant: str = "gaussian-linear"  # digits-mlp, digits-mlp-high-init, gaussian-linear or sequence
    policy: str = "linear"  # linear or mlp (classification); transformer or tabular (sequence)
    hidden: int = 128  # MLP hidden width (one layer)
    num_train: int = 0  # digits: training images kept (0: all 1,437); gaussian: points per class
    cluster_dim: int = 512  # gaussian: feature dimension (>= training points, so a linear model can fit any labels)
    cluster_noise: float = 0.1  # gaussian: within-cluster noise per coordinate (cluster centres 3 apart)
    num_outputs: int = 0  # classification: output tokens (0: one per class, 10); more add outputs no input asks for
    label_set_size: int = 5  # k: outputs per pretraining set
    modify_fraction: float = 0.1  # share of training inputs whose target moves outside their set
    wrong_reward: float = -1.0  # reward of a wrong answer on a modified input (0.5: high initial reward)
    pretrain_steps: int = 300  # full-batch Adam steps of pretraining
    pretrain_lr: float = 0.01  # pretraining learning rate
    num_prompts: int = 100  # sequence: prompts
    num_prompt_groups: int = 10  # sequence: prompt groups, each with its own set of k outputs
    vocab_size: int = 4  # sequence: V
    length: int = 3  # sequence: L
    reward: str = "exact_match"  # sequence: exact_match (sparse) or position_match (dense)
    data_seed: int = 0  # seed of the data, the label sets and the modification
    trainer: TrainConfig = TrainConfig()  # the finetuning: arms, optimiser, learning rates, seeds, evaluation

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        allowed = ("transformer", "tabular") if self.variant == "sequence" else ("linear", "mlp")
        if self.policy not in allowed:
            raise ConfigError(f"variant {self.variant} takes policy {' or '.join(allowed)}, got {self.policy!r}")
        if self.reward not in SEQUENCE_REWARDS:
            raise ConfigError(f"unknown reward {self.reward!r}; choose one of {', '.join(SEQUENCE_REWARDS)}")
        check_task_settings(self)


_DIGITS = {
    "policy": "mlp",
    "arms": ("rft:800", "sft:800"),
    "lr": (3e-3,),
    "seeds": 3,
    "eval_every": 40,
    "pretrain_steps": 400,
}

#: variant -> overrides of the defaults (the quick budget: minutes at most on a 2-core CPU).
VARIANTS: dict[str, dict[str, object]] = {
    "digits-mlp": dict(_DIGITS),
    "digits-mlp-high-init": {**_DIGITS, "wrong_reward": 0.5},
    "gaussian-linear": {
        "policy": "linear",
        "num_train": 40,
        "arms": ("rft:300", "sft:300"),
        "lr": (0.01,),
        "pretrain_lr": 0.1,
    },
    "sequence": {
        "policy": "transformer",
        "arms": ("rft:300", "sft:300"),
        "lr": (3e-3,),
        "pretrain_steps": 300,
        "label_set_size": 4,
        "eval_every": 20,
    },
}

#: variant -> the paper-scale budget (``--full``): Adam, thousands of full-batch steps, 5 seeds.
FULL_VARIANTS: dict[str, dict[str, object]] = {
    "digits-mlp": {"arms": ("rft:4000", "sft:4000"), "lr": (1e-3,), "seeds": 5, "eval_every": 100},
    "digits-mlp-high-init": {"arms": ("rft:4000", "sft:4000"), "lr": (1e-3,), "seeds": 5, "eval_every": 100},
    "gaussian-linear": {"arms": ("rft:3000", "sft:3000"), "lr": (1e-3,), "seeds": 5, "eval_every": 50},
    # float32: the transformer's exact step over 100 prompts x 21 prefixes takes 0.3 s at R = 5 (0.8 s in float64)
    "sequence": {"arms": ("rft:1000", "sft:1000"), "lr": (3e-3,), "seeds": 5, "eval_every": 50, "dtype": "float32"},
}
#: the paper-scale budget shared by every variant; each variant's own is in :data:`FULL_VARIANTS`.
FULL: dict[str, object] = {}

#: variant -> a budget the test suite runs in seconds.
TESTING: dict[str, dict[str, object]] = {
    "digits-mlp": {"num_train": 200, "arms": ("rft:10", "sft:10"), "pretrain_steps": 50, "seeds": 2, "eval_every": 5},
    "digits-mlp-high-init": {"num_train": 200, "arms": ("rft:10", "sft:10"), "pretrain_steps": 50, "seeds": 2},
    "gaussian-linear": {"num_train": 20, "arms": ("rft:150", "sft:150"), "seeds": 2, "eval_every": 25},
    "sequence": {
        "num_prompts": 20,
        "num_prompt_groups": 4,
        "arms": ("rft:10", "sft:10"),
        "pretrain_steps": 60,
        "seeds": 2,
        "eval_every": 5,
    },
}

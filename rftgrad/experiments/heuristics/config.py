"""Settings of the ``heuristics`` experiment (paper Section 5.1, docs/paper.md §6).

Protocol: the controlled task (pretrain to uniform k-label sets, modify 10% of the labels
to an answer outside the set: small STD, reward far from optimal), then exact-expectation
RFT with one heuristic turned up at a time, each sweep's values as replicas of one run:

* learning rate ``lr`` (the first value is the baseline; default x1, x10, x100),
* sampling temperature ``temperature`` (the policy samples, and RFT optimises, at T),
* entropy bonus ``entropy_coef`` (objective ``V + β H``),

the other two held at their first (baseline) values; the ``lr`` sweep also trains SFT at
each learning rate for reference. Everything is repeated for output spaces of growing
size (``output_sizes``): outputs past the 10 classes are answers no input asks for, like
most tokens of a large vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

from rftgrad.envs.tasks import check_task_settings
from rftgrad.errors import ConfigError
from rftgrad.finetune.config import TrainConfig

#: the replica-valued trainer fields swept one at a time; the first value of each is the baseline.
SWEEPS = ("lr", "temperature", "entropy_coef")
#: the classification variants and the policy each trains.
VARIANT_POLICIES = {"gaussian-linear": "linear", "digits-mlp": "mlp"}


@dataclass(frozen=True)
class Config:
    """Heuristics against the vanishing gradient, one at a time, for several output-space sizes."""

    variant: str = "gaussian-linear"  # the controlled classification task: gaussian-linear or digits-mlp
    policy: str = "linear"  # linear or mlp
    hidden: int = 128  # MLP hidden width (one layer)
    output_sizes: tuple[int, ...] = (10, 100, 1000)  # output-space sizes to repeat the sweeps for (>= 10)
    sft_reference: bool = True  # the lr sweep also trains SFT at each learning rate
    num_train: int = 16  # gaussian: points per class, 80% train (digits: training images kept, 0: all)
    cluster_dim: int = 160  # gaussian: feature dimension (>= training points, so a linear model can fit any labels)
    cluster_noise: float = 0.1  # gaussian: within-cluster noise per coordinate (cluster centres 3 apart)
    label_set_size: int = 5  # k: outputs per pretraining set
    modify_fraction: float = 0.1  # share of training inputs whose target moves outside their set
    wrong_reward: float = -1.0  # reward of a wrong answer on a modified input
    pretrain_steps: int = 300  # full-batch Adam steps of pretraining
    pretrain_lr: float = 0.1  # pretraining learning rate
    data_seed: int = 0  # seed of the data, the label sets and the modification
    trainer: TrainConfig = TrainConfig(
        arms=("rft:300",),
        lr=(0.01, 0.1, 1.0),
        temperature=(1.0, 1.5, 2.0),
        entropy_coef=(0.0, 0.01, 0.1),
        eval_every=25,
        eval_grad_norm=False,  # per-input ||∇V|| costs a VJP per input (10 s per evaluation at 1,000 outputs)
    )  # RFT arms; trainer.lr, .temperature, .entropy_coef are the three sweeps (first value: baseline)

    def __post_init__(self) -> None:
        if self.variant not in VARIANT_POLICIES:
            raise ConfigError(
                f"heuristics runs on the classification variants ({', '.join(VARIANT_POLICIES)}), got {self.variant!r}"
            )
        if self.policy not in ("linear", "mlp"):
            raise ConfigError(f"variant {self.variant} takes policy linear or mlp, got {self.policy!r}")
        check_task_settings(self)
        if not self.output_sizes or min(self.output_sizes) < 10:
            raise ConfigError(f"output_sizes must be non-empty, each >= the 10 classes, got {self.output_sizes}")


#: variant -> overrides of the defaults (the quick budget, minutes on a 2-core CPU).
VARIANTS: dict[str, dict[str, object]] = {
    "gaussian-linear": {},
    "digits-mlp": {
        "policy": "mlp",
        "num_train": 0,
        "pretrain_steps": 400,
        "pretrain_lr": 0.01,
        "lr": (3e-3, 3e-2, 3e-1),
        "arms": ("rft:400",),
        "output_sizes": (10, 100),
        "eval_every": 40,
    },
}

#: variant -> the paper-scale budget (``--full``).
FULL_VARIANTS: dict[str, dict[str, object]] = {
    "gaussian-linear": {"arms": ("rft:1000",), "seeds": 3, "eval_every": 50},
    "digits-mlp": {"arms": ("rft:2000",), "lr": (1e-3, 1e-2, 1e-1), "output_sizes": (10, 100, 1000), "seeds": 3},
}
#: the paper-scale budget shared by every variant; each variant's own is in :data:`FULL_VARIANTS`.
FULL: dict[str, object] = {}

#: a budget the test suite runs in seconds.
TESTING: dict[str, object] = {
    "num_train": 10,
    "cluster_dim": 128,
    "output_sizes": (10, 100),
    "arms": ("rft:40",),
    "pretrain_steps": 150,
    "eval_every": 10,
    "seeds": 1,
}

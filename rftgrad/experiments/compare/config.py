"""Settings of the ``compare`` experiment: environment and policy, plus the trainer section ``trainer``."""

from __future__ import annotations

from dataclasses import dataclass

from rftgrad.envs import check_env_settings
from rftgrad.errors import ConfigError
from rftgrad.finetune.config import TrainConfig
from rftgrad.models import POLICIES
from rftgrad.registry import TRAINING_ENVIRONMENTS
from rftgrad.runtime import check_seed


@dataclass(frozen=True)
class Config:
    """Train ``trainer.arms`` (default RFT and SFT) on one environment and policy; see TrainConfig for the trainer."""

    env: str = "orthonormal"  # environment: orthonormal, gaussian, digits or sequence
    num_inputs: int = 32  # inputs (orthonormal), prompts (sequence), training images (digits), points/class (gaussian)
    vocab_size: int = 10  # V: classes, or the output vocabulary of the sequence env
    length: int = 1  # L: output length (sequence env)
    reward: str = "exact_match"  # sequence reward: exact_match, position_match, contains_token, random_network
    policy: str = "linear"  # tabular, linear, mlp or transformer
    features: str = "input_last_token"  # linear policy feature map
    hidden: int = 64  # MLP hidden width (one layer)
    p0: float = 1e-3  # start a share of the inputs with probability p0 on their target (0: random init only)
    p0_fraction: float = 0.25  # that share (seeded by data_seed); the others keep their initial target probability
    data_seed: int = 0  # seed of the data (split, prompts, targets)
    trainer: TrainConfig = TrainConfig()  # the trainer: arms, estimator, optimiser, replicas, evaluation

    def __post_init__(self) -> None:
        if self.env not in TRAINING_ENVIRONMENTS:
            raise ConfigError(f"unknown env {self.env!r}; choose one of {', '.join(TRAINING_ENVIRONMENTS)}")
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        if not 0.0 <= self.p0 < 1.0:
            raise ConfigError(f"p0 must lie in [0, 1) (0: random initialisation), got {self.p0}")
        if not 0.0 <= self.p0_fraction <= 1.0:
            raise ConfigError(f"p0_fraction must lie in [0, 1], got {self.p0_fraction}")
        for name in ("num_inputs", "vocab_size", "length", "hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_seed(self.data_seed, "data_seed")
        # settings the environment ignores must keep their neutral value (L = 1, the default reward,
        # digits' 10 classes); any other value would be dropped silently
        neutral = {"length": 1, "reward": "exact_match", "vocab_size": 10 if self.env == "digits" else self.vocab_size}
        check_env_settings(self.env, [name for name, value in neutral.items() if getattr(self, name) != value])


#: a longer budget (``--full``): more steps and seeds.
FULL: dict[str, object] = {"trainer": {"arms": ("rft:2000", "sft:2000"), "seeds": 8, "eval_every": 50}}

#: a budget the test suite runs in seconds.
TESTING: dict[str, object] = {"trainer": {"arms": ("rft:20", "sft:20"), "seeds": 2, "eval_every": 5}}

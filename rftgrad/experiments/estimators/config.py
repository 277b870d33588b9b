"""Settings of the ``estimators`` experiment (docs/paper.md §7; defaults: the quick budget).

Two parts share one config:

1. closed forms vs Monte Carlo: for each estimator in ``mc_estimators``, group size in
   ``group_sizes`` and success probability ``p`` on a log grid from ``p_min`` to ``p_max``, the
   expected update along the correct output (:mod:`rftgrad.theory.group_updates`) against the mean of
   simulated groups run through the library's estimators, and ``frac_reward_zero_std``;
2. learning curves on the controlled sequence task (:func:`rftgrad.envs.sequence_task`, the
   ``controlled`` experiment's ``sequence`` variant): one run per estimator in ``curve_estimators``
   and a pass@k run (``estimator`` with ``pass_k``), all from the same pretrained weights. The
   ``trainer`` section (``arms``, ``num_generations``, ``max_resample``, ``std_eps``, ``lr``,
   ``seeds``, ...) applies to every run; ``trainer.std_eps`` and ``trainer.max_resample`` also to
   part 1; ``trainer.estimator`` and ``trainer.pass_k`` are set per run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rftgrad.envs.tasks import check_task_settings
from rftgrad.errors import ConfigError
from rftgrad.finetune.config import TrainConfig
from rftgrad.registry import ESTIMATORS
from rftgrad.theory.group_updates import ESTIMATOR_FORMS


@dataclass(frozen=True)
class Config:
    """Group estimators: closed forms, Monte Carlo and learning curves at equal sample budgets."""

    DERIVED = ("trainer.estimator", "trainer.pass_k")  # set per learning-curve run (see run_configs)

    group_sizes: tuple[int, ...] = (2, 4, 8, 16, 64)  # G of the closed-form / Monte Carlo sweep
    mc_estimators: tuple[str, ...] = ("reinforce", "rloo", "dr_grpo", "grpo", "dapo")  # estimators of the sweep
    p_min: float = 1e-4  # smallest success probability p of the sweep
    p_max: float = 0.5  # largest p of the sweep
    points_per_decade: int = 2  # log-spaced p per decade (p_min and p_max included)
    mc_informative: int = 500  # Monte Carlo draws per point: about this many informative groups (SE ≈ 1/sqrt)
    mc_max_draws: int = 5_000_000  # cap on the draws of one point
    mc_seed: int = 0  # seed of the Monte Carlo draws
    fit_window: float = 0.1  # fitted power over p <= fit_window / (G·B) (B: DAPO's tries, else 1), >= 2 points
    curve_estimators: tuple[str, ...] = ("reinforce", "rloo", "dr_grpo", "grpo", "dapo")  # learning-curve runs
    estimator: str = "rloo"  # estimator of the pass@k comparison: rloo (sampled, G > pass_k) or exact
    pass_k: int = 4  # k of the pass@k run, compared with the same estimator at pass@1
    # the controlled sequence task (paper Section 4.2), with fewer pretraining steps: modified inputs start
    # at p ≈ 1e-3, not 1e-5
    policy: str = "transformer"  # transformer or tabular
    num_prompts: int = 100  # prompts
    num_prompt_groups: int = 10  # prompt groups, each with its own set of k outputs
    vocab_size: int = 4  # V
    length: int = 3  # L
    reward: str = "exact_match"  # exact_match (sparse) or position_match (dense)
    label_set_size: int = 4  # k: outputs per prompt group's pretraining set
    modify_fraction: float = 0.1  # share of prompts whose target moves outside their group's set
    pretrain_steps: int = 150  # full-batch Adam steps of pretraining
    pretrain_lr: float = 0.01  # pretraining learning rate
    data_seed: int = 0  # seed of the prompts, the sets and the modification
    trainer: TrainConfig = TrainConfig(
        arms=("rft:100",), num_generations=8, lr=(3e-3,), seeds=3, eval_every=10, eval_grad_norm=False, dtype="float32"
    )  # every learning-curve run: one arm rft:steps, G, Adam lr, seeds; std_eps and max_resample also in the sweep

    def __post_init__(self) -> None:
        if self.policy not in ("transformer", "tabular"):
            raise ConfigError(f"estimators trains a transformer or tabular policy, got {self.policy!r}")
        if self.reward not in ("exact_match", "position_match"):
            raise ConfigError(f"unknown reward {self.reward!r}; choose one of exact_match, position_match")
        check_task_settings(self)
        arms = self.trainer.arms
        if len(arms) != 1 or any(not part.startswith("rft:") for part in arms[0].split("+")):
            raise ConfigError(f"estimators takes one RFT arm such as rft:100, got trainer.arms={arms}")
        self.pass_k_trainer()  # the trainer's own checks of estimator and pass_k (e.g. pass_k > 1 needs exact or rloo)
        if self.pass_k < 2:
            raise ConfigError(f"pass_k must be >= 2 for the pass@k comparison, got {self.pass_k}")
        for name, valid in (("mc_estimators", ESTIMATOR_FORMS), ("curve_estimators", ESTIMATORS)):
            values = getattr(self, name)
            bad = [v for v in values if v not in valid or v == "exact"]
            if not values or bad:
                choices = ", ".join(v for v in valid if v != "exact")
                raise ConfigError(f"{name} needs one or more of {choices}; got {', '.join(bad) or 'none'}")
        if not self.group_sizes or min(self.group_sizes) < 2:
            raise ConfigError(f"group_sizes needs values >= 2 (a group baseline needs G >= 2), got {self.group_sizes}")
        if not 0.0 < self.p_min < self.p_max <= 0.5:
            raise ConfigError(f"need 0 < p_min < p_max <= 0.5, got p_min={self.p_min}, p_max={self.p_max}")
        for name in ("points_per_decade", "mc_informative", "mc_max_draws"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.fit_window <= 1.0:
            raise ConfigError(f"fit_window must lie in (0, 1], got {self.fit_window}")

    def pass_k_trainer(self) -> TrainConfig:
        """The trainer of the pass@k run: ``estimator`` at ``pass_k``."""
        return dataclasses.replace(self.trainer, estimator=self.estimator, pass_k=self.pass_k)


#: the bigger budget (``--full``): 10x the Monte Carlo draws, 4 p per decade, 400 steps, 5 seeds.
FULL: dict[str, object] = {
    "mc_informative": 5000,
    "points_per_decade": 4,
    "arms": ("rft:400",),
    "seeds": 5,
    "eval_every": 20,
}

#: a budget the test suite runs in seconds.
TESTING: dict[str, object] = {
    "group_sizes": (2, 8),
    "p_min": 1e-3,
    "mc_informative": 100,
    "curve_estimators": ("rloo", "grpo", "dapo"),
    "policy": "tabular",
    "num_prompts": 20,
    "num_prompt_groups": 4,
    "pretrain_steps": 40,
    "pretrain_lr": 0.1,
    "arms": ("rft:6",),
    "seeds": 2,
    "eval_every": 2,
}

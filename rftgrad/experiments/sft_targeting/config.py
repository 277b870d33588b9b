"""Settings of the ``sft_targeting`` experiment: which inputs should a small SFT phase label? (past the paper)

The paper's SFT phase (Razin et al., ICLR 2024, Section 5.2) labels a random share of the
inputs. The inputs whose gradient vanishes are visible before training, so a practitioner can
choose. At equal labelling budgets (a share ``f`` of the training inputs: ``max(1, round(f·N))``
inputs, the trainer's count for ``sft:S@f``), each *strategy* picks the inputs of the SFT
phase; then ``sft_steps`` SFT steps on them and ``rft_steps`` exact RFT steps on all inputs.
References: RFT alone and full SFT (every input, ``full_sft_steps``) + RFT. Two tasks:

* ``family``: the ``sft_budget`` task (:func:`rftgrad.envs.family_task`, linear policy
  pretrained to uniform k-label sets; plain gradient descent, the trainer section);
* ``language``: the synthetic language (:func:`rftgrad.envs.language.language_env`, the
  default pretraining mixture, a tiny transformer from
  :func:`rftgrad.finetune.pretraining.pretrained_transformer`; Adam, float32).
"""

from __future__ import annotations

from dataclasses import dataclass

from rftgrad.envs.language import LANGUAGE_REWARDS
from rftgrad.envs.tasks import check_task_settings
from rftgrad.errors import ConfigError
from rftgrad.finetune.config import TrainConfig

#: the selection rules: random (the paper), smallest exact STD, smallest STD from G samples, the stalled
#: flag of ``rftgrad diagnose`` from G samples, largest gap best reward - exact V.
STRATEGY_KINDS = ("random", "exact_std", "sample_std", "stalled_flag", "largest_gap")
#: the tasks the experiment knows.
TASK_NAMES = ("family", "language")
#: optimisers the language task may use.
LANGUAGE_OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class Config:
    """Random vs informed choice of a small SFT phase's inputs, then exact RFT, on two tasks."""

    DERIVED = ("trainer.arms",)  # the arms come from the budgets (run.budget_arms)

    tasks: tuple[str, ...] = TASK_NAMES  # tasks to run: family and/or language
    strategies: tuple[str, ...] = STRATEGY_KINDS  # selection rules (sample_std runs once per sample_sizes entry)
    sample_sizes: tuple[int, ...] = (4, 8, 16)  # G: sampled outputs per input behind the sample_std strategies
    flag_samples: int = 8  # G of the stalled_flag strategy (diagnose's default thresholds on G samples)
    sample_seed: int = 0  # seed of the sampled outputs (per replica seed, as policy.sample draws)
    budgets: tuple[float, ...] = (0.0025, 0.01, 0.02, 0.05)  # labelled shares of the training inputs
    sft_steps: int = 10  # SFT steps on the chosen inputs
    rft_steps: int = 120  # exact RFT steps on all inputs after the SFT phase (and of RFT alone)
    full_sft_steps: int = 150  # SFT steps on every input of the reference arm (full SFT + RFT)
    family_size: int = 3  # family task: classes following the relabelling rule (the stalled family)
    family_weight: float = 0.8  # family task: weight of the family's shared direction
    num_train: int = 100  # family task: points per class (80% train)
    cluster_dim: int = 64  # family task: feature dimension
    cluster_noise: float = 0.1  # family task: within-cluster noise per coordinate
    label_set_size: int = 5  # family task: k, labels per class's pretraining set
    wrong_reward: float = -1.0  # family task: reward of a wrong answer
    pretrain_steps: int = 300  # family task: full-batch Adam pretraining steps (linear policy, T = 1)
    pretrain_lr: float = 0.1  # family task: pretraining learning rate
    data_seed: int = 0  # seed of both tasks' data (and the language's pretraining mixture and model init)
    vocab_size: int = 4  # language: V, output symbols
    length: int = 2  # language: L, output length (V^L outputs enumerated exactly)
    prompts_per_task: int = 16  # language: prompts per task (5 tasks)
    reward: str = "exact_match"  # language: reward (exact_match, position_match, learned)
    d_model: int = 16  # language: transformer width
    num_layers: int = 1  # language: transformer blocks
    num_heads: int = 2  # language: attention heads
    language_pretrain_steps: int = 600  # language: full-batch Adam pretraining steps (cached on disk)
    language_pretrain_lr: float = 0.03  # language: pretraining learning rate
    language_optimizer: str = "adam"  # language: optimiser of both phases (sgd or adam)
    language_lr: float = 0.01  # language: learning rate of both phases
    trainer: TrainConfig = TrainConfig(
        optimizer="sgd", lr=(0.3,), seeds=10, eval_every=1000, eval_grad_norm=False, checkpoint_every=100
    )  # family task as sft_budget (sgd lr 0.3, exact); seeds draw the random subsets and break ties

    def __post_init__(self) -> None:
        check_task_settings(self)
        if not self.tasks or any(t not in TASK_NAMES for t in self.tasks) or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"tasks {self.tasks!r} invalid; give distinct names from {', '.join(TASK_NAMES)}")
        bad = [s for s in self.strategies if s not in STRATEGY_KINDS]
        if not self.strategies or bad or len(set(self.strategies)) != len(self.strategies):
            raise ConfigError(f"strategies {self.strategies!r} invalid; give distinct names from {STRATEGY_KINDS}")
        if not self.sample_sizes or min(self.sample_sizes) < 2 or self.flag_samples < 2:
            raise ConfigError("sample_sizes and flag_samples must be >= 2 (a sample STD needs two samples)")
        if not self.budgets or any(not 0 < b < 1 for b in self.budgets) or len(set(self.budgets)) != len(self.budgets):
            raise ConfigError(f"budgets must be distinct shares in (0, 1), got {self.budgets}")
        if min(self.sft_steps, self.rft_steps, self.full_sft_steps, self.language_pretrain_steps) < 1:
            raise ConfigError("sft_steps, rft_steps, full_sft_steps and language_pretrain_steps must be >= 1")
        if not 1 <= self.family_size < 10:
            raise ConfigError(f"family_size must lie in [1, 9] (10 classes), got {self.family_size}")
        if self.trainer.estimator != "exact":
            raise ConfigError(f"sft_targeting runs RFT exactly; set estimator=exact, not {self.trainer.estimator}")
        if self.trainer.seeds < 2:
            raise ConfigError(f"trainer.seeds must be >= 2 (the seed spread is reported), got {self.trainer.seeds}")
        if self.reward not in LANGUAGE_REWARDS:
            raise ConfigError(f"unknown reward {self.reward!r}; choose one of {', '.join(LANGUAGE_REWARDS)}")
        if self.language_optimizer not in LANGUAGE_OPTIMIZERS or not self.language_lr > 0:
            raise ConfigError(f"language_optimizer must be one of {LANGUAGE_OPTIMIZERS} and language_lr > 0")
        if not self.language_pretrain_lr > 0:
            raise ConfigError(f"language_pretrain_lr must be > 0, got {self.language_pretrain_lr}")

    def strategy_names(self) -> tuple[str, ...]:
        """The strategies as run: ``sample_std`` becomes ``sample_std_G4``, ... (one per ``sample_sizes`` entry),
        ``stalled_flag`` becomes ``stalled_flag_G{flag_samples}``."""
        names: list[str] = []
        for kind in self.strategies:
            if kind == "sample_std":
                names += [f"sample_std_G{g}" for g in self.sample_sizes]
            elif kind == "stalled_flag":
                names.append(f"stalled_flag_G{self.flag_samples}")
            else:
                names.append(kind)
        return tuple(names)


#: the larger budget (``--full``): more budgets, twice the seeds, longer RFT and full SFT.
FULL: dict[str, object] = {
    "budgets": (0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1),
    "rft_steps": 200,
    "full_sft_steps": 300,
    "seeds": 20,
}

#: a budget the test suite runs in seconds: the family task, random vs largest gap at 1%.
TESTING: dict[str, object] = {
    "tasks": ("family",),
    "strategies": ("random", "largest_gap"),
    "budgets": (0.01,),
    "rft_steps": 80,
    "full_sft_steps": 50,
}

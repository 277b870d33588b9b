"""Settings of a finetuning run: objective, estimator, optimiser, replicas, schedule.

:class:`TrainConfig` is a flat, typed dataclass (see :mod:`rftgrad.configs`); an
experiment's ``Config`` holds one as its ``trainer`` section (``--set trainer.lr=...``) next to
its own fields. Values are
checked when the config is built, before any output is written, so a bad value ends
the run with one clear :class:`ConfigError` and no directory.

Schedule. ``arms`` lists the runs trained side by side. Each arm is a sequence of phases
joined by ``+``; a phase is ``objective:steps`` or ``objective:steps@fraction``, with
``objective`` ``rft`` (the configured ``estimator``) or ``sft`` and ``fraction`` the seeded
share of training inputs the phase trains on. ``"sft:20@0.01+rft:200"`` is 20 SFT steps on
1% of the inputs, then 200 RFT steps on all (docs/paper.md §6).

pass@k. ``pass_k = k > 1`` trains on ``E[max of k samples]`` instead of the expected reward
(docs/paper.md §7): exactly (``estimator="exact"``, binary rewards) or with the unbiased
leave-one-out estimator (``estimator="rloo"``, ``num_generations > pass_k``); see
:mod:`rftgrad.finetune.objectives`.

Replicas. ``lr``, ``temperature``, ``entropy_coef`` and ``kl_coef`` take one value or
several: the replicas are every combination of them times ``seeds`` seeds, trained as one
batched program (:func:`replica_grid`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import typing
from dataclasses import dataclass

from rftgrad.errors import ConfigError
from rftgrad.models import check_temperatures
from rftgrad.registry import ADVANTAGES, ESTIMATORS, GROUP_ESTIMATORS, OBJECTIVES, OPTIMIZERS, SCALE_REWARDS
from rftgrad.runtime import check_seed


@dataclass(frozen=True)
class Phase:
    """One phase of an arm: ``steps`` steps of ``objective`` on a ``fraction`` of the inputs."""

    objective: str
    steps: int
    fraction: float = 1.0

    @property
    def label(self) -> str:
        """``objective:steps[@fraction]``, the phase as written in a config."""
        return f"{self.objective}:{self.steps}" + ("" if self.fraction == 1.0 else f"@{self.fraction:g}")


def parse_arm(text: str) -> tuple[Phase, ...]:
    """``"sft:20@0.01+rft:200"`` -> its phases; raises :class:`ConfigError` on a bad spec."""
    phases = []
    for part in text.split("+"):
        objective, sep, rest = part.strip().partition(":")
        steps_text, at, fraction_text = rest.partition("@")
        try:
            steps = int(steps_text)
            fraction = float(fraction_text) if at else 1.0
        except ValueError:
            steps, fraction = -1, 1.0
        if not sep or objective not in OBJECTIVES or steps < 1:
            raise ConfigError(
                f"bad phase {part.strip()!r} in arm {text!r}; write objective:steps[@fraction] with objective "
                f"in {', '.join(OBJECTIVES)} and steps >= 1, phases joined by '+' (e.g. sft:20@0.01+rft:200)"
            )
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"phase fraction must lie in (0, 1], got {fraction} in arm {text!r}")
        phases.append(Phase(objective, steps, fraction))
    return tuple(phases)


def _check_choice(name: str, value: str, choices: tuple[str, ...] | dict[str, str]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _typed(name: str, kind: type, value: object, example: object, many: bool = False) -> object:
    """``value`` as ``kind`` (an int is a float too; a bool is neither), or :class:`ConfigError`
    (``many``: the field is a tuple of ``kind``)."""
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    takes = f"{_KINDS[kind]} or a list of them" if many else _KINDS[kind]
    raise ConfigError(f"{name}={value!r} is invalid: TrainConfig.{name} takes {takes}; give e.g. {name}={example!r}")


def _check_positive(name: str, values: tuple[float, ...] | float, allow_zero: bool = False) -> None:
    for value in values if isinstance(values, tuple) else (values,):
        ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(f"{name} must be finite and {bound}, got {value}")


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings shared by every finetuning experiment (see module doc).

    Every field is checked when the config is built: its type (a tuple field also takes one value,
    stored as a 1-tuple: ``TrainConfig(lr=0.1)`` means ``lr=(0.1,)``; an int is accepted for a float)
    and its range (see each field's comment and the checks below; seeds are >= 0, temperatures lie
    in :func:`rftgrad.models.temperature_range` of ``dtype``).
    """

    arms: tuple[str, ...] = ("rft:200", "sft:200")  # runs side by side: phases objective:steps[@fraction] joined by +
    estimator: str = "exact"  # RFT gradient: exact, reinforce, reinforce_baseline, rloo, grpo, dr_grpo, dapo, ppo
    num_generations: int = 8  # G, sampled outputs per input (sampled estimators)
    scale_rewards: str = "group"  # GRPO/DAPO std normalisation: group, batch or none
    std_eps: float = 1e-4  # ε added to the std in GRPO/DAPO advantages: TRL's 1e-4 (verl's is 1e-6: docs/verl.md)
    max_resample: int = 4  # DAPO: tries per input before an all-equal group is dropped
    pass_k: int = 1  # k of the pass@k objective E[max of k samples] (1: the expected reward); exact or rloo
    ppo_epochs: int = 4  # PPO: optimiser updates per sampled batch
    clip_eps: float = 0.2  # PPO: ratio clipping range 1 ± clip_eps
    ppo_advantage: str = "rloo"  # PPO: advantage estimator (reinforce, reinforce_baseline, rloo, grpo, dr_grpo)
    optimizer: str = "adam"  # sgd or adam (state per replica, reset at each phase)
    lr: tuple[float, ...] = (0.01,)  # learning rates; several values make more replicas
    temperature: tuple[float, ...] = (1.0,)  # sampling temperatures T of the policy; several make more replicas
    entropy_coef: tuple[float, ...] = (0.0,)  # entropy bonus β (objective + β H); several make more replicas
    kl_coef: tuple[float, ...] = (0.0,)  # KL penalty κ to the initial policy (objective - κ KL)
    adam_beta1: float = 0.9  # Adam β1
    adam_beta2: float = 0.999  # Adam β2
    adam_eps: float = 1e-8  # Adam ε
    batch_size: int = 0  # inputs per step, drawn per replica and step (0: every input of the phase)
    eval_every: int = 10  # steps between exact evaluations (also the first and last step)
    eval_grad_norm: bool = True  # evaluate per-input ||∇V|| (costs per-input VJPs)
    std_threshold: float = 0.1  # inputs with initial STD below this form the small_std group
    checkpoint_every: int = 50  # steps between checkpoints (an interrupted run resumes from the last)
    seeds: int = 2  # seeds per hyperparameter setting
    seed: int = 0  # first seed (seeds seed, seed+1, ...)
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    dtype: str = "float64"  # float32 or float64

    def _normalise_types(self) -> None:
        """Check each field's type; a single value of a tuple field becomes a 1-tuple (frozen: object.__setattr__)."""
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value, hint = getattr(self, field.name), hints[field.name]
            if typing.get_origin(hint) is tuple:
                kind = typing.get_args(hint)[0]
                example = field.default[0] if field.default else None
                items = value if isinstance(value, list | tuple) else (value,)
                value = tuple(_typed(field.name, kind, item, example, many=True) for item in items)
            else:
                value = _typed(field.name, hint, value, field.default)
            object.__setattr__(self, field.name, value)

    def __post_init__(self) -> None:
        self._normalise_types()
        if not self.arms:
            raise ConfigError("arms is empty; give at least one arm such as rft:200")
        for arm in self.arms:
            parse_arm(arm)
        _check_choice("estimator", self.estimator, ESTIMATORS)
        _check_choice("scale_rewards", self.scale_rewards, SCALE_REWARDS)
        _check_choice("ppo_advantage", self.ppo_advantage, ADVANTAGES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("dtype", self.dtype, ("float32", "float64"))
        group = self.estimator in GROUP_ESTIMATORS or (self.estimator == "ppo" and self.ppo_advantage != "reinforce")
        minimum = 2 if group else 1
        if self.num_generations < minimum:
            raise ConfigError(
                f"num_generations must be >= {minimum} for estimator {self.estimator!r}"
                + (" (a group baseline needs G >= 2)" if group else "")
                + f", got {self.num_generations}"
            )
        if self.pass_k < 1:
            raise ConfigError(f"pass_k must be >= 1 (1: the plain expected reward), got {self.pass_k}")
        if self.pass_k > 1 and self.estimator not in ("exact", "rloo"):
            raise ConfigError(f"pass_k > 1 supports estimator exact or rloo, got {self.estimator!r}")
        if self.pass_k > 1 and self.estimator == "rloo" and self.num_generations <= self.pass_k:
            raise ConfigError(
                f"pass_k={self.pass_k} with rloo needs num_generations > pass_k (the leave-one-out baseline "
                f"uses k of the other G-1 samples), got num_generations={self.num_generations}"
            )
        for name in ("lr", "temperature", "entropy_coef", "kl_coef"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is empty; give at least one value")
        _check_positive("lr", self.lr)
        _check_positive("temperature", self.temperature)
        check_temperatures(self.temperature, self.dtype)
        _check_positive("entropy_coef", self.entropy_coef, allow_zero=True)
        _check_positive("kl_coef", self.kl_coef, allow_zero=True)
        _check_positive("std_eps", self.std_eps, allow_zero=True)
        _check_positive("clip_eps", self.clip_eps)
        _check_positive("adam_eps", self.adam_eps)
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        for name in ("max_resample", "ppo_epochs", "eval_every", "checkpoint_every", "seeds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be >= 0 (0: all inputs), got {self.batch_size}")
        if not 0.0 <= self.std_threshold <= 1.0:
            raise ConfigError(f"std_threshold must lie in [0, 1], got {self.std_threshold}")
        check_seed(self.seed, "seed")

    def phases(self) -> dict[str, tuple[Phase, ...]]:
        """Arm spec -> its phases."""
        return {arm: parse_arm(arm) for arm in self.arms}


@dataclass(frozen=True)
class ReplicaSettings:
    """Per-replica hyperparameters, each a tuple of length R (one replica per entry)."""

    seeds: tuple[int, ...]
    lr: tuple[float, ...]
    temperature: tuple[float, ...]
    entropy_coef: tuple[float, ...]
    kl_coef: tuple[float, ...]

    @property
    def num_replicas(self) -> int:
        """R."""
        return len(self.seeds)

    def rows(self) -> list[dict[str, float]]:
        """One dict per replica (the ``replicas`` table of a run)."""
        return [
            {"replica": r, "seed": s, "lr": lr, "temperature": t, "entropy_coef": e, "kl_coef": k}
            for r, (s, lr, t, e, k) in enumerate(
                zip(self.seeds, self.lr, self.temperature, self.entropy_coef, self.kl_coef, strict=True)
            )
        ]


def replica_grid(config: TrainConfig) -> ReplicaSettings:
    """Every combination of ``lr x temperature x entropy_coef x kl_coef``, times ``seeds`` seeds.

    Seeds run fastest: replica ``r`` has seed ``config.seed + r % seeds``, so each setting is
    trained with the same ``seeds`` seeds and replica ``r`` equals a single run with that
    seed and setting.
    """
    combos = list(itertools.product(config.lr, config.temperature, config.entropy_coef, config.kl_coef))
    rows = [(config.seed + s, *combo) for combo in combos for s in range(config.seeds)]
    seeds, lr, temperature, entropy, kl = (tuple(column) for column in zip(*rows, strict=True))
    return ReplicaSettings(seeds, lr, temperature, entropy, kl)

"""Environments and policies by name, shared by the CLI and the experiments' configs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rftgrad.envs import BanditEnv, RewardEnv, digits, gaussian_clusters, orthonormal, random_sequence_env
from rftgrad.errors import ConfigError
from rftgrad.models import POLICIES, SoftmaxPolicy


def build_env(
    name: str,
    num_inputs: int,
    vocab_size: int,
    length: int = 1,
    reward: str = "exact_match",
    seed: int = 0,
    bandit_rewards: Sequence[float] = (1.0, -1.0, -1.0, 0.5),
) -> tuple[RewardEnv, RewardEnv | None]:
    """``(train, test)`` environments named ``name`` (``test`` is None where there is no split).

    ``num_inputs`` is the number of inputs (orthonormal), prompts (sequence), training images
    (digits) or points per class (gaussian); ``vocab_size`` the classes or output vocabulary.
    """
    if name == "bandit":
        return BanditEnv(list(bandit_rewards)), None
    if name == "orthonormal":
        return orthonormal(num_inputs, vocab_size, seed=seed), None
    if name == "gaussian":
        split = gaussian_clusters(num_classes=vocab_size, per_class=num_inputs, seed=seed)
        return split.train, split.test
    if name == "digits":
        split = digits(num_train=num_inputs, seed=seed)
        return split.train, split.test
    if name == "sequence":
        env = random_sequence_env(
            num_prompts=num_inputs, vocab_size=vocab_size, length=length, reward=reward, seed=seed
        )
        return env, None
    raise ConfigError(f"unknown environment {name!r}; choose one of bandit, orthonormal, gaussian, digits, sequence")


def build_policy(
    kind: str,
    env: RewardEnv,
    seeds: int | Sequence[int],
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    temperature: float | Sequence[float] = 1.0,
    features: str = "input_last_token",
    hidden: Sequence[int] = (64,),
    d_model: int = 32,
    num_layers: int = 2,
    num_replicas: int | None = None,
) -> SoftmaxPolicy:
    """A ``kind`` policy (tabular, linear, mlp, transformer) sized for ``env``, one replica per seed."""
    if kind not in POLICIES:
        raise ConfigError(f"unknown policy {kind!r}; choose one of {', '.join(POLICIES)}")
    extra: dict[str, Any] = {}
    if kind == "linear":
        extra["features"] = features
    elif kind == "mlp":
        extra["hidden"] = tuple(hidden)
    elif kind == "transformer":
        extra.update(d_model=d_model, num_layers=num_layers)
    cls = POLICIES[kind][0]
    seed_arg = list(seeds) if not isinstance(seeds, int) else seeds
    return cls.for_env(
        env, seed=seed_arg, num_replicas=num_replicas, device=device, dtype=dtype, temperature=temperature, **extra
    )

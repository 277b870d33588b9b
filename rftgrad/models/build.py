"""Policies by name (``--policy``, an experiment's ``policy`` key), sized for an environment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, RewardEnv
from rftgrad.errors import ConfigError
from rftgrad.models.base import SoftmaxPolicy
from rftgrad.models.linear import FEATURE_MAPS, LinearSoftmaxPolicy
from rftgrad.models.mlp import MLPPolicy
from rftgrad.models.tabular import TabularPolicy
from rftgrad.models.transformer import TinyTransformerPolicy

#: name -> (class, one-line description), for ``rftgrad list`` and the CLI.
POLICIES: dict[str, tuple[type[SoftmaxPolicy], str]] = {
    "tabular": (TabularPolicy, "independent logits per input and prefix; gamma = 1/T"),
    "linear": (LinearSoftmaxPolicy, "logits W phi(x, prefix); feature maps " + ", ".join(FEATURE_MAPS)),
    "mlp": (MLPPolicy, "multilayer perceptron over features, classification (L = 1)"),
    "transformer": (TinyTransformerPolicy, "tiny causal transformer over prompt + output tokens"),
}


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
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
) -> SoftmaxPolicy:
    """A ``kind`` policy (tabular, linear, mlp, transformer) sized for ``env``, one replica per seed.

    Every kind refuses an output space past the enumeration limit (``V^L > max_outputs``,
    :class:`~rftgrad.errors.EnumerationLimitError`) before allocating anything: the trainer and the
    theory evaluate every output exactly, and a tabular policy's table alone has more than ``N · V^L``
    logits. ``hidden`` widths, ``d_model`` and ``num_layers`` are >= 1 (checked by the policy classes).
    """
    if kind not in POLICIES:
        raise ConfigError(f"unknown policy {kind!r}; choose one of {', '.join(POLICIES)}")
    env.output_space.check_enumerable(max_outputs)
    extra: dict[str, Any] = {}
    if kind == "tabular":
        extra["max_outputs"] = max_outputs
    elif kind == "linear":
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

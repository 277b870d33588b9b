"""Small builders shared by the model tests: environments and one policy of every kind.

Every policy kind is built by :func:`make_policy` from a kind name, so tests parametrize
over :data:`KINDS` instead of repeating constructor calls.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.autograd.functional import jacobian

from rftgrad.envs import RewardEnv, digits, gaussian_clusters, orthonormal, random_sequence_env
from rftgrad.models import (
    FEATURE_MAPS,
    LinearSoftmaxPolicy,
    MLPPolicy,
    SoftmaxPolicy,
    TabularPolicy,
    TinyTransformerPolicy,
)

#: every policy kind: tabular, linear with each feature map, MLP (L = 1), transformer.
KINDS = ("tabular", *(f"linear-{name}" for name in FEATURE_MAPS), "mlp", "transformer")


def sequence_env(**overrides: Any) -> RewardEnv:
    """4 prompts of 2 tokens over 5, outputs of L = 3 tokens over V = 3 (27 outputs)."""
    kwargs = {"num_prompts": 4, "vocab_size": 3, "length": 3, "prompt_length": 2, "prompt_vocab_size": 5, "seed": 1}
    return random_sequence_env(**{**kwargs, **overrides})


def cluster_env(num_classes: int = 3, per_class: int = 3, dim: int = 5) -> RewardEnv:
    """Gaussian-cluster classification (L = 1), every input in the train split."""
    return gaussian_clusters(num_classes=num_classes, per_class=per_class, dim=dim, test_fraction=0.0, seed=2).train


def orthonormal_env(num_inputs: int = 6, num_classes: int = 4) -> RewardEnv:
    """Theorem 2's setting: orthonormal inputs, one token."""
    return orthonormal(num_inputs, num_classes, seed=0)


@functools.lru_cache(maxsize=1)
def digits_env(num_inputs: int = 50) -> RewardEnv:
    """The first ``num_inputs`` training images of scikit-learn's 8x8 digits (64 features)."""
    return digits(num_train=num_inputs, seed=0).train


def env_for(kind: str) -> RewardEnv:
    """The default environment for a policy kind (sequence env; clusters for the MLP)."""
    return cluster_env() if kind == "mlp" else sequence_env()


def make_policy(kind: str, env: RewardEnv, **kwargs: Any) -> SoftmaxPolicy:
    """A policy of ``kind`` sized for ``env`` (float64 unless ``dtype`` is given)."""
    kwargs.setdefault("dtype", "float64")
    if kind == "tabular":
        return TabularPolicy.for_env(env, **kwargs)
    if kind.startswith("linear-"):
        return LinearSoftmaxPolicy.for_env(env, features=kind.removeprefix("linear-"), **kwargs)
    if kind == "mlp":
        kwargs.setdefault("hidden", (8, 6))
        kwargs.setdefault("activation", "tanh")
        return MLPPolicy.for_env(env, **kwargs)
    if kind == "transformer":
        kwargs.setdefault("d_model", 8)
        kwargs.setdefault("num_heads", 2)
        kwargs.setdefault("num_layers", 2)
        return TinyTransformerPolicy.for_env(env, **kwargs)
    raise ValueError(f"unknown policy kind {kind!r}")


def all_outputs(env: RewardEnv) -> torch.Tensor:
    """Every output for every input: ``(N, V**L, L)``."""
    outputs = env.output_space.enumerate()
    return outputs[None].expand(env.num_inputs, -1, -1)


def ids_of(env: RewardEnv) -> torch.Tensor:
    """``arange(N)``."""
    return torch.arange(env.num_inputs)


def brute_force_jacobian_norms(
    policy: SoftmaxPolicy, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
) -> torch.Tensor:
    """``||∂(f_θ(x_n, u)/T_r)/∂θ_r||_2`` by ``torch.autograd.functional.jacobian``: ``(N, M, l) -> (R, N, M)``.

    One state at a time: the full ``V x P`` Jacobian of one replica's logits, then its
    largest singular value.
    """
    keys = list(policy.params)
    num_inputs, num_prefixes, _ = prefixes.shape
    norms = torch.empty(policy.num_replicas, num_inputs, num_prefixes, dtype=torch.float64)
    for r in range(policy.num_replicas):
        for n in range(num_inputs):
            for m in range(num_prefixes):

                def logits(*tensors: torch.Tensor, n: int = n, m: int = m, r: int = r) -> torch.Tensor:
                    params = dict(zip(keys, tensors, strict=True))
                    state = prefixes[n : n + 1, m : m + 1]  # (1, 1, l)
                    out = policy.replica_prefix_logits(params, ids[n : n + 1], x[n : n + 1], state)
                    return out[0, 0] / policy.temperature[r]  # (V,)

                jac = jacobian(logits, tuple(policy.params[key][r] for key in keys))
                matrix = torch.cat([j.reshape(policy.vocab_size, -1) for j in jac], dim=1)  # (V, P)
                norms[r, n, m] = torch.linalg.matrix_norm(matrix.double(), ord=2)
    return norms

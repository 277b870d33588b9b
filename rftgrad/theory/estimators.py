"""Group estimators in closed form: how often a group carries no signal, and what it updates.

For an input whose sampled reward takes value ``v_j`` with probability ``q_j``, a group of
``G`` independent samples has all-equal rewards (zero group STD, no GRPO/RLOO signal) with
probability

    P(all equal) = Σ_j q_j^G                                  (PAPER.md section 7)

which for a binary reward with success probability ``p`` is ``p^G + (1-p)^G``, the quantity
production libraries log as ``frac_reward_zero_std``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rftgrad.errors import ConfigError


def prob_all_equal(value_probs: npt.ArrayLike, group_size: int) -> np.ndarray:
    """``Σ_j q_j^G`` over the last axis: the chance that ``G`` samples share one reward value.

    Args:
        value_probs: ``(..., K)`` probabilities ``q_j`` of the reward values (rows sum to 1).
        group_size: ``G >= 1``.

    Returns:
        ``(...)`` probabilities (1 for ``G = 1``).
    """
    probs = np.asarray(value_probs, dtype=np.float64)
    if group_size < 1:
        raise ConfigError(f"group size must be >= 1, got {group_size}")
    if probs.ndim == 0 or np.any(probs < 0) or not np.allclose(probs.sum(-1), 1.0, atol=1e-9):
        raise ConfigError("value_probs must be non-negative with rows summing to 1 over the last axis")
    return (probs**group_size).sum(-1)


def frac_reward_zero_std(success_prob: npt.ArrayLike, group_size: int) -> np.ndarray:
    """Binary reward: ``p^G + (1-p)^G``, elementwise over ``success_prob``."""
    p = np.asarray(success_prob, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ConfigError("success_prob must lie in [0, 1]")
    return prob_all_equal(np.stack([p, 1.0 - p], axis=-1), group_size)

"""Sampled estimates of the expected gradient, to check the exact engine against.

REINFORCE (Williams, 1992) estimates ``∇_θ V(x;θ) = E_y[(r - b) ∇_θ log p_θ(y|x)]`` by
the sample mean over ``M`` outputs ``y_m ~ p_θ(·|x)``:

    ĝ = (1/N) Σ_n (1/M) Σ_m (r(x_n, y_nm) - b) ∇_θ log p_θ(y_nm | x_n),

unbiased for the mean objective ``(1/N) Σ_n V(x_n;θ)`` for any constant baseline ``b``
(``E[∇ log p] = 0``). Its per-coordinate standard error is ``σ/sqrt(N·M)`` where ``σ²``
is the variance of one sample's term; tests compare with the exact gradient within a
multiple of that.
"""

from __future__ import annotations

import torch
from torch.func import grad

from rftgrad.envs.base import RewardEnv
from rftgrad.models.base import Params, SoftmaxPolicy

__all__ = [
    "reinforce_gradient",
]


def reinforce_gradient(
    policy: SoftmaxPolicy, env: RewardEnv, num_samples: int, seed: int = 0, baseline: float = 0.0
) -> Params:
    """REINFORCE estimate of ``∇_θ (1/N) Σ_n V(x_n;θ)`` from ``num_samples`` outputs per input.

    Returns name -> ``(R, *shape)``. Replica ``r`` uses its own seeded samples
    (:meth:`~rftgrad.models.SoftmaxPolicy.sample`).
    """
    x = policy.inputs_from(env)
    num_inputs = env.num_inputs
    ids = torch.arange(num_inputs, device=policy.device)
    samples = policy.sample(ids, x, num_samples, env.output_space.length, seed=seed)  # (R, N, M, L)
    flat_ids = ids.cpu().repeat_interleave(num_samples).repeat(policy.num_replicas)  # (R·N·M,)
    rewards = env.reward(flat_ids, samples.reshape(-1, samples.shape[-1]).cpu())
    advantages = (rewards - baseline).reshape(samples.shape[:-1]).to(policy.device, policy.dtype)  # (R, N, M)

    def surrogate(params: Params) -> torch.Tensor:
        log_probs = policy.log_prob(ids, x, samples, params)  # (R, N, M)
        return (advantages * log_probs).mean(dim=(1, 2)).sum()  # replicas are independent: sum keeps each one's grad

    return grad(surrogate)(policy.params)

"""γ(x;θ): the largest spectral norm of the logits' Jacobian (docs/paper.md §2).

Theorem 1 of Razin et al. (ICLR 2024) bounds ``||∇_θ V(x;θ)|| <= 6 L γ(x;θ) STD^(2/3)``
with ``γ(x;θ) = max_l max_{y_<l} ||J_l||_2`` and ``J_l = ∂ f_θ(x, y_<l) / ∂θ`` (``V x P``).
The maximum runs over *all* prefixes, not only likely ones.

Tabular and linear policies give ``||J||_2`` in closed form
(:meth:`SoftmaxPolicy.closed_form_jacobian_norms`); any other policy gets it from
``torch.func.jacrev``: ``||J||_2 = sqrt(λ_max(J J^T))`` with the ``V x V`` Gram matrix
``J J^T = Σ_params J_k J_k^T``. The temperature is part of the logits (``J/T``).
"""

from __future__ import annotations

import torch
from torch.func import jacrev, vmap

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, RewardEnv
from rftgrad.models.base import Params, SoftmaxPolicy

__all__ = [
    "JACOBIAN_BUDGET",
    "jacobian_spectral_norms",
    "gamma",
]

#: numbers (R · states · V · P) one jacrev batch may hold.
JACOBIAN_BUDGET = 2**24


def jacobian_spectral_norms(
    policy: SoftmaxPolicy, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
) -> torch.Tensor:
    """``||∂(f_θ(x_n, u)/T)/∂θ||_2`` for each replica, input and prefix: ``(N, M, l) -> (R, N, M)``."""
    closed = policy.closed_form_jacobian_norms(ids, x, prefixes)
    if closed is not None:
        return closed
    num_inputs, num_prefixes, _ = prefixes.shape

    def state_norm(
        params: Params, temperature: torch.Tensor, input_id: torch.Tensor, x_n: torch.Tensor, prefix: torch.Tensor
    ) -> torch.Tensor:
        def logits(p: Params) -> torch.Tensor:
            logit = policy.replica_prefix_logits(p, input_id[None], x_n[None], prefix[None, None])  # (1, 1, V)
            return logit[0, 0] / temperature  # (V,)

        jac = jacrev(logits)(params)  # name -> (V, *shape)
        gram = sum(j.flatten(1) @ j.flatten(1).T for j in jac.values())  # (V, V)
        return torch.linalg.eigvalsh(gram)[-1].clamp_min(0).sqrt()

    over_states = vmap(state_norm, in_dims=(None, None, 0, 0, 0))
    over_replicas = vmap(over_states, in_dims=(0, 0, None, None, None))
    state_ids = ids.repeat_interleave(num_prefixes)  # (N·M,)
    state_x = x.repeat_interleave(num_prefixes, dim=0)  # (N·M, ...)
    state_prefixes = prefixes.reshape(num_inputs * num_prefixes, -1)  # (N·M, l)
    per_state = policy.num_replicas * policy.vocab_size * policy.num_parameters
    chunk = max(1, JACOBIAN_BUDGET // per_state)
    norms = [
        over_replicas(
            policy.params,
            policy.temperature,
            state_ids[s : s + chunk],
            state_x[s : s + chunk],
            state_prefixes[s : s + chunk],
        )
        for s in range(0, state_ids.shape[0], chunk)
    ]
    return torch.cat(norms, dim=1).reshape(policy.num_replicas, num_inputs, num_prefixes)


def gamma(policy: SoftmaxPolicy, env: RewardEnv, max_outputs: int = DEFAULT_MAX_OUTPUTS) -> torch.Tensor:
    """``γ(x;θ) = max_l max_{u ∈ [V]^l} ||J_l(x, u)||_2`` for each replica and input: ``(R, N)``.

    Enumerates all ``Σ_{l<L} V^l`` prefixes, so it refuses output spaces past ``max_outputs``.
    """
    space = env.output_space
    space.check_enumerable(max_outputs)
    x = policy.inputs_from(env)
    ids = torch.arange(env.num_inputs, device=policy.device)
    per_level = [
        jacobian_spectral_norms(
            policy, ids, x, space.prefixes(level, policy.device)[None].expand(env.num_inputs, -1, -1)
        ).amax(-1)
        for level in range(space.length)
    ]  # each (R, N)
    return torch.stack(per_level).amax(0)

"""Tabular softmax policy: independent logits for every (input, prefix).

``f_θ(x_n, u) = θ[n, u] ∈ R^V``, one free logit vector per input and prefix state (all
``Σ_{l<L} V^l`` prefixes). The Jacobian of a logit vector with respect to θ selects its
own block, so ``γ = 1/T``. Per-prefix parameters give ``||∇_θ V|| <= sqrt(max_a π_∅(a)) · STD / T``
(the largest non-empty-prefix probability; ``sqrt(max_y p(y))`` only when ``L = 1``;
docs/theorem1.md section 4).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, OutputSpace, RewardEnv
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.models.base import Params, SoftmaxPolicy


class TabularPolicy(SoftmaxPolicy):
    """Free logits ``θ`` of shape ``(R, N, S, V)``, ``S = Σ_{l<L} V^l`` prefix states.

    The table holds ``N · Σ_{l<L} V^l · V`` logits per replica, more than ``N · V^L``, so like exact
    enumeration it refuses output spaces past ``max_outputs`` (before allocating anything).

    Args:
        num_inputs: ``N >= 1``.
        vocab_size: ``V >= 2``.
        max_length: ``L >= 1``.
        init_scale: logits start as ``init_scale · N(0, 1)`` (0: uniform policy); finite, >= 0.
        max_outputs: refuse ``V^L > max_outputs`` (:class:`~rftgrad.errors.EnumerationLimitError`).
        **kwargs: seed, num_replicas, device, dtype, temperature (see SoftmaxPolicy).
    """

    name = "tabular"
    input_kind = "index"

    def __init__(
        self,
        num_inputs: int,
        vocab_size: int,
        max_length: int = 1,
        init_scale: float = 1.0,
        max_outputs: int = DEFAULT_MAX_OUTPUTS,
        **kwargs: Any,
    ) -> None:
        OutputSpace(int(vocab_size), int(max_length)).check_enumerable(max_outputs)  # refuses huge tables first
        if isinstance(num_inputs, bool) or int(num_inputs) != num_inputs or num_inputs < 1:
            raise ConfigError(f"num_inputs={num_inputs!r} is invalid: a tabular policy needs at least 1 input")
        if not math.isfinite(init_scale) or init_scale < 0:
            raise ConfigError(f"init_scale={init_scale!r} is invalid: give a finite scale >= 0 (0: uniform policy)")
        self.num_inputs = int(num_inputs)
        self.init_scale = float(init_scale)
        self._num_states = sum(int(vocab_size) ** level for level in range(int(max_length)))
        super().__init__(vocab_size, max_length, **kwargs)

    @classmethod
    def for_env(cls, env: RewardEnv, **kwargs: Any) -> TabularPolicy:
        """A tabular policy sized for ``env``."""
        return cls(env.num_inputs, env.output_space.vocab_size, env.output_space.length, **kwargs)

    def _init_replica(self, gen: torch.Generator) -> Params:
        shape = (self.num_inputs, self._num_states, self.vocab_size)
        return {"logits": self.init_scale * torch.randn(*shape, generator=gen, dtype=torch.float64)}

    def _check_inputs(self, env: RewardEnv) -> None:
        if env.num_inputs != self.num_inputs:
            raise ShapeMismatchError(
                f"tabular policy has logits for N={self.num_inputs} inputs but {env.name} has "
                f"N={env.num_inputs}; use TabularPolicy.for_env(env)"
            )

    def replica_prefix_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        state = self.output_space.prefix_state(prefixes)  # (N, M)
        return params["logits"][ids[:, None], state]  # (N, M, V)

    def _fit_target_logits(
        self, ids: torch.Tensor, x: torch.Tensor, targets: torch.Tensor, desired: torch.Tensor
    ) -> None:
        for pos in range(targets.shape[1]):
            state = self.output_space.prefix_state(targets[:, :pos])  # (N,)
            self.params["logits"][:, ids, state] = desired[:, :, pos].to(self.dtype)

    def closed_form_jacobian_norms(self, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
        """Each logit is its own parameter: ``||J||_2 = 1/T``."""
        ones = torch.ones(self.num_replicas, *prefixes.shape[-3:-1], dtype=self.dtype, device=self.device)
        return ones / self.temperature[:, None, None]

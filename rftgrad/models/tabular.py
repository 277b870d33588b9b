"""Tabular softmax policy: independent logits for every (input, prefix).

``f_θ(x_n, u) = θ[n, u] ∈ R^V``, one free logit vector per input and prefix state (all
``Σ_{l<L} V^l`` prefixes). The Jacobian of a logit vector with respect to θ selects its
own block, so ``γ = 1/T``. Per-prefix parameters give ``||∇_θ V|| <= sqrt(max_a π_∅(a)) · STD / T``
(the largest non-empty-prefix probability; ``sqrt(max_y p(y))`` only when ``L = 1``;
docs/theorem1.md section 4).

The table's logits are the parameters themselves, so the exact engine reads them without autograd
(:class:`TabularTree`): the logits of prefix level ``l`` are the contiguous slice
``θ[:, :, Σ_{j<l} V^j : Σ_{j≤l} V^j]`` (no gather), and the gradient of ``Σ c·f`` is ``c`` itself:
``∇θ[n, u] = w_n g_{n,u} / T`` for the mean objective, ``||∇_θ V(x_n)|| = ||g_n|| / T`` per input.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, OutputSpace, RewardEnv
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.models.base import ClosedFormTree, Params, SoftmaxPolicy


def state_major(table: torch.Tensor) -> torch.Tensor:
    """``table`` ``(R, N, S, V)`` with its numbers stored state-major (memory order ``(S, V, R, N)``).

    The same values and shape; only the strides change, so that the exact engine reads the table
    as ``(S, V, R, N)`` (:class:`TabularTree`) and writes the gradient without a transpose, and an
    optimiser step on a gradient of the same layout runs in memory order.
    """
    return table.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)


class TabularPolicy(SoftmaxPolicy):
    """Free logits ``θ`` of shape ``(R, N, S, V)``, ``S = Σ_{l<L} V^l`` prefix states.

    The table holds ``N · Σ_{l<L} V^l · V`` logits per replica, more than ``N · V^L``, so like exact
    enumeration it refuses output spaces past ``max_outputs`` (before allocating anything). It is
    stored state-major (``state_major``); a table put in ``params`` with other strides gives the
    same numbers, the exact engine then transposes it at each call.

    Args:
        * ``num_inputs``: ``N >= 1``.
        * ``vocab_size``: ``V >= 2``.
        * ``max_length``: ``L >= 1``.
        * ``init_scale``: logits start as ``init_scale · N(0, 1)`` (0: uniform policy); finite, >= 0.
        * ``max_outputs``: refuse ``V^L > max_outputs`` (:class:`~rftgrad.errors.EnumerationLimitError`).
        * ``**kwargs``: seed, num_replicas, device, dtype, temperature (see SoftmaxPolicy).
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
        self.params["logits"] = state_major(self.params["logits"])

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

    def closed_form_tree(self, x: torch.Tensor, space: OutputSpace) -> ClosedFormTree:
        """The table read state-major (a :class:`ClosedFormTree`): the exact engine's autograd-free path."""
        return TabularTree(self, space)


class TabularTree(ClosedFormTree):
    """The tabular policy's prefix tree, state-major ``(S, V, R, N)`` (see :class:`ClosedFormTree`).

    ``f_θ(x_n, u) = θ[n, u]``: ``logits`` is the first ``S = space.num_prefix_states`` states of the
    table transposed to ``(S, V, R, N)``; the map is a selection, so its adjoint writes the cotangent
    back into the table's layout, ``∇θ[r, n, u, a] = scale[r, n] · c[u, a, r, n]`` (0 on the states past
    ``S`` that a table with ``max_length > L`` also holds).
    """

    def __init__(self, policy: TabularPolicy, space: OutputSpace) -> None:
        self.policy = policy
        self.num_states = space.num_prefix_states  # S <= the table's states (its max_length may exceed L)

    def logits(self, params: Params, temperature: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        table = params["logits"][:, :, : self.num_states].permute(2, 3, 0, 1)  # (S, V, R, N) view
        return torch.div(table, temperature[:, None], out=out)  # one pass: transpose and divide by T

    def scaled_logits(self, params: Params, scale: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        table = params["logits"][:, :, : self.num_states].permute(2, 3, 0, 1)  # (S, V, R, N) view
        factor = scale[:, None] if scale.ndim else scale  # (R, 1) over (S, V, R, N), or one number
        return torch.mul(table, factor, out=out)  # one pass: transpose and scale

    def gradient_view(self, out: Params) -> torch.Tensor:
        """The first ``S`` states of the gradient table read ``(S, V, R, N)``: ``∇θ = scale · c`` is ``c`` itself."""
        return out["logits"][:, :, : self.num_states].permute(2, 3, 0, 1)

    def pullback(self, cotangent: torch.Tensor, scale: torch.Tensor | None, out: Params) -> Params:
        grad = out["logits"]  # (R, N, S_table, V), zero past the first S states (never written)
        view = grad[:, :, : self.num_states]
        if scale is None:
            if cotangent.data_ptr() != view.data_ptr():  # not already written into the gradient (gradient_view)
                view.copy_(cotangent.permute(2, 3, 0, 1))
        else:
            torch.mul(cotangent.permute(2, 3, 0, 1), scale[:, :, None, None], out=view)
        return {"logits": grad}

    def per_input(self, cotangent: torch.Tensor, scale: torch.Tensor, keep: bool) -> tuple[torch.Tensor, Params | None]:
        # ||∇_θ V(x_n)|| = |scale| ||c_n||; squares summed rather than vector_norm over the two leading axes,
        # which is about 15x slower on (16, 4, 64, 100) (a reduction over outer axes)
        norms = torch.mul(cotangent, cotangent).sum((0, 1)).sqrt() * scale.abs()
        if not keep:
            return norms, None
        num_replicas, num_inputs = scale.shape
        table = self.policy.params["logits"]  # (R, N, S_table, V)
        grads = table.new_zeros(num_replicas, num_inputs, *table.shape[1:])  # (R, N, N, S_table, V)
        inputs = torch.arange(num_inputs, device=cotangent.device)
        grads[:, inputs, inputs, : self.num_states] = cotangent.permute(2, 3, 0, 1) * scale[:, :, None, None]
        return norms, {"logits": grads}

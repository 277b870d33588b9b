"""Exact expectations by enumerating every output (docs/paper.md §1-§2).

For a policy ``p_θ`` and an environment, per replica and input, exactly:

* ``V(x;θ) = Σ_y p_θ(y|x) r(x,y)`` and ``STD(x;θ) = sqrt(Σ_y p_θ(y|x) (r(x,y) - V)²)``;
* the per-position terms of the martingale decomposition (past the paper):
  ``Q_l = E[r | y_≤l]``, ``Var_l = E_{y<l}[Var(Q_l | y_<l)]``, with ``Σ_l Var_l = Var(r)``;
* the expected gradient ``∇_θ V(x;θ) = E_y[(r - V) ∇_θ log p_θ(y|x)]``
  (Razin et al., ICLR 2024, eq. for the policy gradient in Section 3), per input and
  for the mean objective ``(1/N) Σ_n V(x_n;θ)``.

The gradient is assembled in logit space first. Writing ``π_u = softmax(f_θ(x, u)/T)``
for the next-token distribution after prefix ``u`` and ``P(u)`` for the prefix's
probability, ``∂ log softmax(z)[a] / ∂z = e_a - π`` turns the expectation into

    ∇_θ V = Σ_l Σ_{|u| = l} J_{x,u}^T g_u,     g_u = P(u) · π_u ⊙ (Q(u·) - Q(u)),

with ``J_{x,u}`` the Jacobian of the (tempered) logits at ``u``. The cotangents ``g_u``
come from one backward sweep over the prefix tree (``Q(u) = Σ_a π_u(a) Q(u·a)``), then
a single vector-Jacobian product gives ``∇_θ V``: ``torch.func.vjp`` for the mean
objective and ``vmap``-ed VJPs (chunked over inputs) for per-input gradients.

Three entry points, one result type each, every field always filled:

* :func:`evaluate` -> :class:`Evaluation`: V, STD, log-probabilities, martingale variances
  and the logit-space gradient norm, without autograd;
* :func:`mean_gradient` -> :class:`MeanGradResult`: plus ``mean_grad`` (one VJP), what an
  exact RFT step ascends;
* :func:`exact` -> :class:`ExactResult`: plus the per-input norms ``grad_norm``, and with
  ``grads="full"`` the per-input gradients ``grads``.

All three run the same forward pass and sweep, so their shared fields agree bit for bit.

``method="tree"`` evaluates the logits once per distinct prefix (``Σ_{l<L} V^l`` logit
vectors per input); ``method="flat"`` scores every enumerated output by teacher
forcing (``L·V^L`` logit vectors), the naive baseline kept for cross-checks and
benchmarks. Both share the backward sweep and give the same numbers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch
from torch.func import vjp, vmap

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, OutputSpace, RewardEnv
from rftgrad.errors import ConfigError
from rftgrad.models.base import ClosedFormTree, Params, SoftmaxPolicy
from rftgrad.theory.batched import ReplicaEnvs, engine_inputs

__all__ = [
    "METHODS",
    "GRADIENT_MODES",
    "GradientMode",
    "ShapingFn",
    "Evaluation",
    "MeanGradResult",
    "ExactResult",
    "evaluate",
    "mean_gradient",
    "exact",
    "params_norm",
    "ExactWorkspace",
    "StepGradient",
    "step_gradient",
]

#: how the logits are evaluated: once per distinct prefix (``"tree"``) or per enumerated output by
#: teacher forcing (``"flat"``, the naive baseline kept for cross-checks).
METHODS = ("tree", "flat")

# Maps log p_θ(y|x) (R, N, Y) to the per-replica function f(y) whose expectation is differentiated.
ShapingFn = Callable[[torch.Tensor], torch.Tensor]

# A single-replica program (params, temperature, ids (n,), x (n, ...)) -> tuple of logit tensors.
LogitProgram = Callable[[Params, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]


#: what :func:`exact` computes per input besides ``mean_grad``: ``"norm"`` (||∇_θ V(x_n;θ)||) or
#: ``"full"`` (the per-input gradients themselves too).
GradientMode = Literal["norm", "full"]
#: the values :data:`GradientMode` allows, for checking an argument.
GRADIENT_MODES: tuple[str, ...] = ("norm", "full")


@dataclass
class Evaluation:
    r"""Exact forward quantities per replica ``R`` and input ``N`` (``Y = V^L`` outputs); no autograd.

    What :func:`evaluate` returns, and the first fields of every result of :func:`mean_gradient`
    and :func:`exact`. Every field is a tensor (none is optional).

    Attributes:
        * ``log_probs``: ``(R, N, Y)`` :math:`\log p_\theta(y|x)` in enumeration order (docs/paper.md §1).
        * ``rewards``: ``(N, Y)`` :math:`r(x, y)` (``(R, N, Y)`` with one environment per replica,
          :class:`~rftgrad.theory.batched.ReplicaEnvs`).
        * ``value``: ``(R, N)`` :math:`V(x;\theta) = \sum_y p_\theta(y|x)\, r(x,y)`.
        * ``std``: ``(R, N)`` :math:`\mathrm{STD}(x;\theta) = \sqrt{\sum_y p_\theta(y|x)\, (r(x,y) - V(x;\theta))^2}`.
        * ``position_variance``: ``(R, N, L)``
          :math:`\mathrm{Var}_l = \mathbb{E}_{y_{<l}}[\mathrm{Var}(Q_l \mid y_{<l})]`; sums to :math:`\mathrm{STD}^2`
          over :math:`l`.
        * ``logit_grad_norm``: ``(R, N)`` :math:`\sqrt{\sum_u \lVert g_u \rVert^2}`, the norm of ∇V with respect to
          the tempered logits of every prefix (the per-prefix / logit-space gradient; it
          needs no autograd, the cotangents ``g_u`` come from the backward sweep).
        * ``max_first_token_prob``: ``(R, N)`` :math:`\max_a \pi_\varnothing(a)`, the largest probability of a
          non-empty prefix (prefix probabilities only shrink as a prefix grows).
    """

    log_probs: torch.Tensor
    rewards: torch.Tensor
    value: torch.Tensor
    std: torch.Tensor
    position_variance: torch.Tensor
    logit_grad_norm: torch.Tensor
    max_first_token_prob: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        """``(R, N, Y)`` p_θ(y|x)."""
        return self.log_probs.exp()

    def _per_input_columns(self) -> dict[str, torch.Tensor]:
        """``(R, N)`` columns of :meth:`to_frame` after ``reward_std`` (none here)."""
        return {}

    def to_frame(self, gamma: torch.Tensor | None = None) -> pd.DataFrame:
        """One row per (replica, input): ``reward_mean``, ``reward_std``, ``grad_norm`` (results of
        :func:`exact` only), ``gamma`` (if given) and ``var_pos_l`` (the martingale terms, l = 1..L)."""
        num_replicas, num_inputs = self.value.shape
        columns: dict[str, torch.Tensor] = {
            "replica": torch.arange(num_replicas)[:, None].expand(-1, num_inputs),
            "input": torch.arange(num_inputs)[None, :].expand(num_replicas, -1),
            "reward_mean": self.value,
            "reward_std": self.std,
            **self._per_input_columns(),
        }
        if gamma is not None:
            columns["gamma"] = gamma
        for level in range(self.position_variance.shape[-1]):
            columns[f"var_pos_{level + 1}"] = self.position_variance[..., level]
        return pd.DataFrame({key: value.detach().cpu().reshape(-1).numpy() for key, value in columns.items()})


@dataclass
class MeanGradResult(Evaluation):
    r""":class:`Evaluation` plus the gradient of the weighted mean objective (:func:`mean_gradient`).

    Attributes:
        * ``mean_grad``: name -> ``(R, *shape)``, :math:`\nabla_\theta \sum_n w_n\, \mathbb{E}_y[f(y)]` (default
          :math:`w_n = 1/N`, :math:`f = r`: the gradient of :math:`\frac{1}{N} \sum_n V(x_n;\theta)`).
        * ``mean_grad_norm``: ``(R,)`` its Euclidean norm over all parameters.
    """

    mean_grad: Params
    mean_grad_norm: torch.Tensor


@dataclass
class StepGradient:
    r"""What one exact RFT step reads (:func:`step_gradient`): V, STD, the martingale terms and the gradient.

    Attributes:
        * ``value``: ``(R, N)`` :math:`V(x;\theta)`.
        * ``std``: ``(R, N)`` :math:`\mathrm{STD}(x;\theta)`.
        * ``position_variance``: ``(R, N, L)``
          :math:`\mathrm{Var}_l = \mathbb{E}_{y_{<l}}[\mathrm{Var}(Q_l \mid y_{<l})]`.
        * ``mean_grad``: name -> ``(R, *shape)``, :math:`\nabla_\theta \sum_n w_n\, \mathbb{E}_y[f(y)]` (as in
          :class:`MeanGradResult`).
        * ``mean_grad_norm``: ``(R,)`` its Euclidean norm over all parameters.
    """

    value: torch.Tensor
    std: torch.Tensor
    position_variance: torch.Tensor
    mean_grad: Params
    mean_grad_norm: torch.Tensor


@dataclass
class ExactResult(MeanGradResult):
    r""":class:`MeanGradResult` plus per-input gradient norms (:func:`exact`).

    Attributes:
        * ``grad_norm``: ``(R, N)`` :math:`\lVert \nabla_\theta V(x_n;\theta) \rVert`.
        * ``grads``: name -> ``(R, N, *shape)``, the per-input gradients :math:`\nabla_\theta V(x_n;\theta)` themselves;
          kept only by ``exact(..., grads="full")`` (reading it otherwise raises
          :class:`~rftgrad.errors.ConfigError`, see :attr:`has_grads`).
    """

    grad_norm: torch.Tensor
    _grads: Params | None = field(default=None, repr=False)

    @property
    def has_grads(self) -> bool:
        """Whether the per-input gradients were kept (``exact(..., grads="full")``)."""
        return self._grads is not None

    @property
    def grads(self) -> Params:
        r"""name -> ``(R, N, *shape)`` per-input gradients :math:`\nabla_\theta V(x_n;\theta)`."""
        if self._grads is None:
            raise ConfigError(
                "per-input gradients were not kept (only their norms, grad_norm); "
                "call exact(policy, env, grads='full') to keep them"
            )
        return self._grads

    def _per_input_columns(self) -> dict[str, torch.Tensor]:
        return {"grad_norm": self.grad_norm}


def params_norm(params: Params, batch_dims: int) -> torch.Tensor:
    """Euclidean norm over all parameters, keeping the first ``batch_dims`` axes."""
    norms = [_trailing_norm(p, batch_dims) for p in params.values()]
    return torch.linalg.vector_norm(torch.stack(norms), dim=0)


def _trailing_norm(tensor: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """Euclidean norm of ``tensor`` over all but its first ``batch_dims`` axes, read in memory order.

    A contiguous tensor is flattened (a view). A dense tensor stored in another axis order (the
    state-major tabular table, :func:`rftgrad.models.tabular.state_major`) is viewed in memory order
    as ``(outer, batch, inner)`` and reduced over ``inner`` then ``outer``, which avoids a copy and a
    reduction over strided axes (either costs several times a pass over the tensor).
    """
    if tensor.is_contiguous():
        return torch.linalg.vector_norm(tensor.flatten(batch_dims), dim=-1)
    order = sorted(range(tensor.ndim), key=lambda dim: tensor.stride(dim), reverse=True)
    memory = tensor.permute(order)  # a contiguous view when the tensor is dense
    start = order.index(0) if batch_dims else 0
    batch = tensor.shape[:batch_dims]
    if memory.is_contiguous() and order[start : start + batch_dims] == list(range(batch_dims)):
        blocks = memory.reshape(math.prod(memory.shape[:start]), math.prod(batch), -1)  # (outer, batch, inner)
        return torch.linalg.vector_norm(torch.linalg.vector_norm(blocks, dim=-1), dim=0).reshape(batch)
    return torch.linalg.vector_norm(tensor.reshape(*batch, -1), dim=-1)


def _tree_program(policy: SoftmaxPolicy, space: OutputSpace) -> tuple[LogitProgram, Callable, Callable]:
    """Logits once per distinct prefix: outputs ``(n, V^l, V)`` for ``l = 0..L-1``.

    The policy's :meth:`~rftgrad.models.SoftmaxPolicy.replica_tree_logits` hook scores the tree
    (per-level prefix logits by default, a KV-cached traversal for the transformer); the program
    divides by the temperature.
    """

    def program(
        params: Params, temperature: torch.Tensor, ids: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return tuple(logits / temperature for logits in policy.replica_tree_logits(params, ids, x, space.length))

    def levels(outputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        return list(outputs)

    def cotangents(level_cots: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(level_cots)

    return program, levels, cotangents


def _flat_program(policy: SoftmaxPolicy, space: OutputSpace) -> tuple[LogitProgram, Callable, Callable]:
    """Logits at every position of every output: one output ``(n, V^L, L, V)``.

    The logits at position ``l`` depend on ``y_<l`` only; the prefix ``u`` of level
    ``l`` is read from its first completion ``u·0…0`` (index ``u·V^(L-l)``).
    """
    outputs = space.prefixes(space.length, policy.device)  # (Y, L)
    vocab, length = space.vocab_size, space.length
    first = [torch.arange(vocab**lvl, device=policy.device) * vocab ** (length - lvl) for lvl in range(length)]

    def program(
        params: Params, temperature: torch.Tensor, ids: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        expanded = outputs[None].expand(ids.shape[0], -1, -1)  # (n, Y, L)
        return (policy.replica_sequence_logits(params, ids, x, expanded) / temperature,)

    def levels(program_outputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        (logits,) = program_outputs  # (R, N, Y, L, V)
        return [logits[:, :, first[lvl], lvl, :] for lvl in range(length)]

    def cotangents(level_cots: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        batch = level_cots[0].shape[:2]
        flat = level_cots[0].new_zeros(*batch, vocab**length, length, vocab)  # (R, N, Y, L, V)
        for lvl, cot in enumerate(level_cots):
            flat[:, :, first[lvl], lvl, :] = cot
        return (flat,)

    return program, levels, cotangents


def _level_rows(vocab: int, length: int) -> list[slice]:
    """The block of prefix states of each level ``l < L``: ``[Σ_{j<l} V^j, Σ_{j≤l} V^j)`` (``prefix_state`` order)."""
    offsets = [0]
    for level in range(length):
        offsets.append(offsets[-1] + vocab**level)
    return [slice(offsets[level], offsets[level + 1]) for level in range(length)]


def _layout(tensor: torch.Tensor) -> tuple[object, ...]:
    """What a reusable buffer must share with ``tensor``: shape, strides, dtype and device."""
    return tensor.shape, tensor.stride(), tensor.dtype, tensor.device


class ExactWorkspace:
    """Buffers the exact engine reuses from one call to the next, e.g. over the steps of a training run.

    Pass one workspace to successive calls of :func:`evaluate`, :func:`mean_gradient` or :func:`exact`
    (``workspace=``; :class:`~rftgrad.finetune.ExactRFT` keeps one, and ``SGD`` one for ``lr·d``): the
    sweep's temporaries, the logits of every prefix and, for policies with a closed-form tree,
    ``mean_grad`` are then allocated once instead of at every call (fresh multi-megabyte buffers cost
    about a page fault per 4 KiB, which dominated a tabular step at R = 64). The price: ``log_probs``
    and ``mean_grad`` of a result live in the workspace and are overwritten by the next call that uses
    it (clone what you keep). Buffers are keyed by name and replaced when the shape (or, for
    :meth:`take_like`, the strides), dtype or device changes.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self._tree: tuple[SoftmaxPolicy, RewardEnv, torch.Tensor, ClosedFormTree | None] | None = None
        self._derived: dict[str, tuple[object, object]] = {}  # name -> (key, object built for it)

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """The buffer ``name`` of ``shape`` with ``like``'s dtype and device (contents: whatever the last
        user left, uninitialised when newly allocated)."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self._buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buffer

    def take_like(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The buffer ``name`` with ``like``'s shape, strides (memory layout), dtype and device; zeros
        when newly allocated."""
        buffer = self._buffers.get(name)
        if buffer is None or _layout(buffer) != _layout(like):
            buffer = self._buffers[name] = torch.zeros_like(like)
        return buffer

    def closed_form_tree(self, policy: SoftmaxPolicy, env: RewardEnv) -> ClosedFormTree | None:
        """``policy.closed_form_tree`` for ``env``'s inputs, built once and reused while the policy, the
        environment and its inputs stay the same (a linear tree holds the features of every prefix)."""
        cached = self._tree
        if cached is not None and cached[0] is policy and cached[1] is env and policy.input_kind == "index":
            return cached[3]  # index inputs (tabular): the tree reads no features
        x = policy.inputs_from(env)  # (N, ...), checks that the policy fits the environment
        if cached is not None and cached[0] is policy and cached[1] is env and _same_tensor(cached[2], x):
            return cached[3]
        tree = policy.closed_form_tree(x, env.output_space)
        self._tree = (policy, env, x, tree)
        return tree

    def derived(self, name: str, key: object, build: Callable[[], object]) -> object:
        """The object ``build()`` made for ``key`` under ``name``, kept while ``key`` stays equal (e.g. the
        closed-form step's buffers and their views for one shape, dtype and device)."""
        kept = self._derived.get(name)
        if kept is None or kept[0] != key:
            kept = self._derived[name] = (key, build())
        return kept[1]


def _tree_sweep(
    logits: torch.Tensor,
    rewards: torch.Tensor,
    space: OutputSpace,
    reward_fn: ShapingFn | None,
    workspace: ExactWorkspace,
    full: bool = True,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """From the tempered logits of every prefix to every exact quantity: one forward and one
    backward sweep over the prefix tree, in the state-major layout ``(S, V, R, N)`` (states in
    ``OutputSpace.prefix_state`` order, vocabulary, replicas, inputs innermost; see
    :class:`~rftgrad.models.base.ClosedFormTree`), so every sum over the vocabulary or over
    prefixes runs over contiguous rows of ``R·N``.

    Forward, level by level (one exp per logit; ``m_u = max_a z_u(a)``, ``e_u = exp(z_u - m_u)``,
    ``s_u = Σ_a e_u(a) >= 1``): ``π_u = e_u / s_u``, ``P(u·a) = P(u) π_u(a)`` and
    ``log P(u·a) = log P(u) + (z_u(a) - m_u) - log s_u``. Backward, from the leaves
    (``Q(y) = r(x, y)``) up: ``Q(u) = Σ_a π_u(a) Q(u·a)``, the cotangents
    ``g_u = P(u) π_u ⊙ (Q(u·) - Q(u))`` and ``Var_l = Σ_{|u|=l} Σ_a P(u·a) (Q(u·a) - Q(u))²``.
    Then ``V = Q(∅)`` and ``STD = sqrt(Σ_l Var_l)`` (the martingale identity; a sum of
    non-negative terms, so no cancellation as STD -> 0).

    Args:
        * ``logits``: ``(S, V, R, N)`` ``f_θ(x_n, u) / T``, ``S = Σ_{l<L} V^l``; overwritten (shifted by ``m_u``).
        * ``rewards``: ``(N, Y)``.
        * ``space``: the output space (``V``, ``L``).
        * ``reward_fn``: if given, the cotangents ``g_u`` are those of ``E_y[f(y)]`` with
          ``f = reward_fn(log_probs (R, N, Y)) -> (R, N, Y)`` in place of the reward
          (value, std and the martingale terms stay those of the reward).
        * ``workspace``: where the buffers come from (``log_probs`` lives there).
        * ``full``: every :class:`Evaluation` field; ``False``: only ``value``, ``std`` and
          ``position_variance`` (:class:`StepGradient`), skipping the log-probabilities (unless
          ``reward_fn`` reads them) and the logit-space norms: three of the largest level's passes.

    Returns:
        The :class:`Evaluation` fields but ``rewards`` (``log_probs`` ``(R, N, Y)`` is a permuted view
        of a ``(Y, R, N)`` tensor), and the cotangents ``g`` ``(S, V, R, N)`` (a workspace buffer).
    """
    num_states, vocab, num_replicas, num_inputs = logits.shape
    length, batch = space.length, (num_replicas, num_inputs)
    level_rows = _level_rows(vocab, length)
    widest = vocab ** (length - 1)  # prefixes at the last level

    def take(name: str, *shape: int) -> torch.Tensor:
        return workspace.take(name, shape, logits)

    unnormalised = take("unnormalised", num_states, vocab, *batch)  # e_u = exp(z_u - m_u)
    child_prob = take("child_prob", num_states, vocab, *batch)  # P(u·a) = P(u) π_u(a)
    normalisers = take("normalisers", num_states, 1, *batch)  # s_u
    scratch = take("scratch", num_states, 1, *batch)  # m_u, then P(u)/s_u, then log P(u) - log s_u
    q_prefixes = take("q_prefixes", num_states, 1, *batch)  # Q(u)
    children = take("children", widest, vocab, *batch)  # per-level products and spreads
    with_log_paths = full or reward_fn is not None
    if with_log_paths:
        log_paths = take("log_paths", sum(vocab**level for level in range(1, length + 1)), *batch)  # log P(u), l >= 1
    cotangents = take("cotangents", num_states, vocab, *batch)  # g_u
    log_path = logits.new_zeros(1, *batch)  # log P(∅)
    prefix_prob = logits.new_ones(1, 1, *batch)  # P(∅)
    path_start = 0
    for rows in level_rows:
        shifted, extra = logits[rows], scratch[rows]  # (V^l, V, R, N), (V^l, 1, R, N)
        shifted.sub_(torch.amax(shifted, 1, keepdim=True, out=extra))  # z_u - m_u
        exp = torch.exp(shifted, out=unnormalised[rows])
        normaliser = torch.sum(exp, 1, keepdim=True, out=normalisers[rows])
        torch.mul(exp, torch.div(prefix_prob, normaliser, out=extra), out=child_prob[rows])
        count = shifted.shape[0] * vocab
        if with_log_paths:
            torch.sub(log_path[:, None], torch.log(normaliser, out=extra), out=extra)  # log P(u) - log s_u
            log_path = log_paths[path_start : path_start + count]  # (V^(l+1), R, N)
            torch.add(extra, shifted, out=log_path.view(shifted.shape))
            path_start += count
        prefix_prob = child_prob[rows].view(count, 1, *batch)
    log_probs = log_path  # (Y, R, N)

    def sweep_up(leaf_values: torch.Tensor, variance: torch.Tensor | None) -> torch.Tensor:
        """``Q`` from the leaves ``(Y, R or 1, N)`` up: fills ``cotangents`` (and ``variance`` ``(R, N, L)``),
        returns ``Q(∅)`` ``(R, N)``."""
        q_level = leaf_values
        for level in reversed(range(length)):
            rows = level_rows[level]
            q_children = q_level.reshape(vocab**level, vocab, *q_level.shape[1:])  # Q(u·a)
            work = children[: vocab**level]  # (V^l, V, R, N)
            torch.mul(unnormalised[rows], q_children, out=work)
            q_prefix = torch.sum(work, 1, keepdim=True, out=q_prefixes[rows]).div_(normalisers[rows])  # Q(u)
            spread = torch.sub(q_children, q_prefix, out=work)  # Q(u·a) - Q(u)
            cot = torch.mul(child_prob[rows], spread, out=cotangents[rows])  # g_u = P(u) π_u ⊙ (Q(u·) - Q(u))
            if variance is not None:
                variance[..., level] = torch.mul(cot, spread, out=work).sum((0, 1))
            q_level = q_prefix.view(vocab**level, *batch)
        return q_level[0]

    position_variance = logits.new_empty(*batch, length)
    value = sweep_up(rewards.t().contiguous()[:, None, :], position_variance).clone()
    if reward_fn is not None:
        sweep_up(reward_fn(log_probs.permute(1, 2, 0)).permute(2, 0, 1), None)
    fields = {"value": value, "std": position_variance.sum(-1).sqrt(), "position_variance": position_variance}
    if not full:
        return fields, cotangents
    squares = torch.stack(
        [
            torch.mul(cotangents[rows], cotangents[rows], out=children[: rows.stop - rows.start]).sum((0, 1))
            for rows in level_rows
        ]
    )  # ||g||² per level, (L, R, N)
    fields["log_probs"] = log_probs.permute(1, 2, 0)  # (R, N, Y)
    fields["logit_grad_norm"] = squares.sum(0).sqrt()  # sqrt(Σ_u ||g_u||²), (R, N)
    fields["max_first_token_prob"] = (unnormalised[0] / normalisers[0]).amax(0)  # max_a π_∅(a), (R, N)
    return fields, cotangents


def _same_tensor(first: torch.Tensor, second: torch.Tensor) -> bool:
    """Whether two tensors hold the same numbers with the same shape, dtype and device."""
    return (
        first.shape == second.shape
        and first.dtype == second.dtype
        and first.device == second.device
        and bool(torch.equal(first, second))
    )


#: the integer type of each float type's size, for reading non-negative floats by their bit patterns
#: (:func:`_bits_within`)
_SAME_SIZE_INTEGER = {torch.float32: torch.int32, torch.float64: torch.int64}


def _bits_within(bits: torch.Tensor, bounds: list[int]) -> bool:
    """Whether every number of ``bits``, non-negative floats (such as sums of exponentials) read as their
    same-size integers, lies in ``bounds`` (:func:`_bit_bounds`); NaN and negative numbers do not.

    The bit pattern of a non-negative float orders as its value, a negative float (sign bit set) reads as a
    negative integer and a NaN as more than ``+inf``, and an integer ``aminmax`` takes under half the time of a
    float one (no NaN propagation: 10 against 22 us on the ``(21, 1, 64, 100)`` normalisers of the tabular
    benchmark)."""
    smallest, largest = torch.aminmax(bits)
    return int(smallest) >= bounds[0] and int(largest) <= bounds[1]


def _bit_bounds(low: float, high: float, dtype: torch.dtype) -> list[int]:
    """``low`` and ``high`` (``0 < low <= high``) rounded to ``dtype`` and read as its same-size integers."""
    return torch.tensor([low, high], dtype=dtype).view(_SAME_SIZE_INTEGER[dtype]).tolist()


#: vocabularies up to this size take the closed-form step's token sweep: sums over the vocabulary as one fused
#: multiply-add per token on slices of the state-major tensors, and the cotangents, variance terms and squares
#: formed for one token of every prefix of the tree at a time (no full-size product written and read back);
#: larger ones a product then a reduction, level by level.
_SLICED_VOCAB = 8

#: the token sweep forms levels together while one token's slice of them takes at most this many bytes (each op's
#: fixed cost counts in a small tree; a large one's ops stream from memory, and fewer levels per op do better)
_SWEEP_GROUP_BYTES = 2**21

_LOG2_E = 1.0 / math.log(2.0)  # e^z = 2^(z log2 e); torch's exp2 takes about half the time of exp


class _StepLevel:
    """The views of one prefix level ``l`` (``M = V^l`` prefixes) of a :class:`_StepPlan` (all but ``e_u(a)``,
    which lives in the cotangent buffer: :meth:`_StepPlan.bind`)."""

    def __init__(self, plan: _StepPlan, rows: slice, next_rows: slice | None) -> None:
        count = rows.stop - rows.start  # M
        shape = (count, plan.vocab, *plan.batch)
        self.rows = rows
        self.normalisers = plan.normalisers[rows]  # (M, 1, R, N) s_u
        self.coefs = plan.coefs[rows]  # (M, 1, R, N) k_u = P(u) / s_u
        self.q = plan.q[rows]  # (M, 1, R, N) Q(u)
        self.terms = plan.terms[rows]  # (M, 1, R, N) Σ_a e_u(a) Δ_u(a)², then times k_u
        # level by level (a large vocabulary): Δ_u(a) = Q(u·a) - Q(u) of the whole level, (M, V, R, N)
        self.spread = None if plan.sliced else plan.spread[: count * plan.vocab].view(shape)
        # the next level's k and Q read (M, V, R, N): P(u·a) / s_{u·a} = k_u e_u(a) / s_{u·a} and Q(u·a)
        self.child_coefs = None if next_rows is None else plan.coefs[next_rows].view(shape)
        self.child_q = None if next_rows is None else plan.q[next_rows].view(shape)
        self.child_q_tokens = [] if self.child_q is None else plan.tokens(self.child_q)


class _SweepGroup:
    """A run of consecutive levels, the states ``start:stop``, that the token sweep (:func:`_token_sweep`) forms
    together: for one token ``a``, ``Δ_u(a)``, ``c_u(a)``, the variance terms and ``Σ c²`` of all its prefixes,
    one op each. States before ``inner`` have their children in the tree, the others (the last level's) the
    reward leaves."""

    def __init__(self, plan: _StepPlan, start: int, stop: int, inner: int) -> None:
        split = min(max(inner, start), stop)  # states start:split read their children's Q, split:stop the rewards
        self.rows = slice(start, stop)
        self.spread, self.terms = plan.spread[self.rows], plan.terms[self.rows]  # (G, 1, R, N)
        self.weighted = plan.normalisers[self.rows]  # w_n k_u / T, over s_u once every Q(u) is formed
        assert plan.square_terms is not None
        self.square_terms = plan.square_terms[self.rows]
        children = plan.q[plan.vocab * start + 1 : plan.vocab * split + 1]  # the Q(u·a) of states start:split
        self.inner_child_q = plan.tokens(children.view(split - start, plan.vocab, *plan.batch)) if split > start else []
        self.q_inner, self.spread_inner = plan.q[start:split], plan.spread[start:split]
        self.q_last = plan.q[split:stop] if stop > split else None
        self.spread_last = plan.spread[split:stop]


class _StepPlan:
    """The buffers of the closed-form step (:func:`_closed_form_step`) and their per-level views, built once
    per shape ``(S, V, R, N)``, dtype and device from an :class:`ExactWorkspace` (a view costs a few
    microseconds to make; a step would otherwise make about a hundred)."""

    def __init__(self, workspace: ExactWorkspace, shape: tuple[int, ...], like: torch.Tensor) -> None:
        num_states, vocab, num_replicas, num_inputs = shape
        self.key = (shape, like.dtype, like.device)
        self.workspace, self.like = workspace, like
        self.vocab, self.batch = vocab, (num_replicas, num_inputs)
        self.sliced = 2 <= vocab <= _SLICED_VOCAB
        length, total = 0, 0
        while total < num_states:
            total, length = total + vocab**length, length + 1
        rows = _level_rows(vocab, length)

        def take(name: str, *size: int) -> torch.Tensor:  # (..., R, N)
            return workspace.take(f"step.{name}", (*size, *self.batch), like)

        self.normalisers = take("normalisers", num_states, 1)  # (S, 1, R, N) s_u, then w_n k_u / T
        self.coefs = take("coefs", num_states, 1)
        self.q = take("q", num_states, 1)
        self.terms = take("terms", num_states, 1)
        self.variance = take("variance", length)  # (L, R, N) Var_l
        # Σ c_u(a)² (the gradient's squared norm when the cotangents are the gradient: a tabular tree) per level
        # (L, R, N), summed while each level's cotangents are in cache; the token sweep's total in row 0
        self.squares = take("squares", length)
        # Δ: of one token of every prefix (S, 1, R, N) in the token sweep, else of one level (M·V, 1, R, N) in turn
        widest = vocab ** (length - 1)
        self.spread = take("spread", num_states if self.sliced else widest * vocab, 1)
        self.levels = [
            _StepLevel(self, rows[lvl], rows[lvl + 1] if lvl + 1 < length else None) for lvl in range(length)
        ]
        self.square_terms = take("square_terms", num_states, 1) if self.sliced else None
        # the token sweep's runs of consecutive levels: the whole tree while one token's slice of it, (S, 1, R, N),
        # takes at most _SWEEP_GROUP_BYTES, else as many levels per run as fit (one level at least)
        state_bytes = num_replicas * num_inputs * like.element_size()
        runs: list[list[slice]] = []
        for level_rows in rows:
            if runs and (level_rows.stop - runs[-1][0].start) * state_bytes <= _SWEEP_GROUP_BYTES:
                runs[-1].append(level_rows)
            else:
                runs.append([level_rows])
        inner = rows[-1].start  # K = S - V^(L-1): the states whose children are in the tree
        self.groups = [_SweepGroup(self, run[0].start, run[-1].stop, inner) for run in runs] if self.sliced else []
        self.square_total = self.squares[0]  # (R, N) the token sweep's Σ_{u,a} c_u(a)²
        self.value = self.q[0, 0]  # (R, N) Q(∅) = V
        limit = 2.0 ** (int(math.log2(torch.finfo(like.dtype).max)) // 4)  # 2^31 (float32), 2^255 (float64)
        self.safe_range = (1.0 / limit, limit)  # the normalisers s_u that need no shift
        integer = _SAME_SIZE_INTEGER.get(like.dtype)  # the normalisers read as integers (_bits_within), if they can be
        self._normaliser_bits = (
            None if integer is None else (self.normalisers.view(integer), _bit_bounds(*self.safe_range, like.dtype))
        )
        self.level_variance = list(self.variance)  # (R, N) views, one per level
        self._leaf_source: RewardEnv | None = None
        self._leaf: tuple[torch.Tensor, list[torch.Tensor]] = (like, [])
        self._temperature: torch.Tensor | None = None  # a copy of the temperatures the factors were made for
        self._input_weights: torch.Tensor | None = None  # a copy of the input weights ``_weights`` was made for
        self._weights = like
        self._scale, self._default_weights = like, like

    def tokens(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """``tensor[:, a:a+1]`` for each token ``a`` (the slices a sliced sum over the vocabulary reads)."""
        return [tensor[:, token : token + 1] for token in range(self.vocab)] if self.sliced else []

    def normalisers_in_range(self) -> bool:
        """Whether every ``s_u`` lies in :attr:`safe_range` (none NaN): :func:`_bits_within` on a view made once,
        or a float ``aminmax`` for a dtype without a same-size integer type (NaN fails both comparisons)."""
        if self._normaliser_bits is None:
            smallest, largest = torch.aminmax(self.normalisers)
            return float(smallest) >= self.safe_range[0] and float(largest) <= self.safe_range[1]
        return _bits_within(*self._normaliser_bits)

    def cotangents(self) -> torch.Tensor:
        """A ``(S, V, R, N)`` cotangent buffer, for trees without a :meth:`~ClosedFormTree.gradient_view`."""
        return self.workspace.take("step.cotangents", (self.normalisers.shape[0], self.vocab, *self.batch), self.like)

    def bind(
        self, cotangents: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, list[torch.Tensor]]], list[list[torch.Tensor]]]:
        """Views of ``cotangents`` ``(S, V, R, N)``, which holds ``e_u(a)`` until the backward sweep overwrites
        it with the cotangents (``e`` is read last just before): its token slices, per level ``(M, V, R, N)``
        with its token slices, and the token slices of each of the token sweep's groups."""
        per_level = [(cotangents[level.rows], self.tokens(cotangents[level.rows])) for level in self.levels]
        per_group = [self.tokens(cotangents[group.rows]) for group in self.groups]
        return self.tokens(cotangents), per_level, per_group

    def leaf(self, env: RewardEnv, max_outputs: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The leaves' ``Q(y) = r(x, y)`` as ``(V^(L-1), V, 1, N)`` in the buffers' dtype and device, and its
        token slices, converted once per environment (whose reward table is fixed: ``with_rewards`` makes
        another environment)."""
        if self._leaf_source is not env:
            rewards = env.reward_table(max_outputs)  # (N, Y)
            table = rewards.to(self.like.device, self.like.dtype).t().contiguous()  # (Y, N)
            leaf = table.view(-1, self.vocab, 1, table.shape[1])
            self._leaf, self._leaf_source = (leaf, self.tokens(leaf)), env
        return self._leaf

    def factors(
        self, temperature: torch.Tensor, input_weights: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``1 / (T ln 2)`` (0-dim when every replica has one temperature: a scalar operand keeps an op one loop
        over contiguous memory, else ``(R,)``) and the input weights over the temperature ``w_n / T`` ``(R, N)``;
        kept while the temperatures and the input weights hold the same numbers (compared by value: a few
        microseconds for ``R·N`` numbers, against a step of milliseconds)."""
        if self._temperature is None or not _same_tensor(self._temperature, temperature):
            scale = _LOG2_E / temperature
            first = scale[0]
            self._scale = first.clone() if bool((scale == first).all()) else scale
            self._default_weights = torch.full(self.batch, 1.0 / self.batch[1], dtype=self.like.dtype,
                                               device=self.like.device) / temperature[:, None]  # fmt: skip
            self._temperature, self._input_weights = temperature.clone(), None
        if input_weights is None:
            return self._scale, self._default_weights
        if not isinstance(input_weights, torch.Tensor):
            return self._scale, _input_weights(input_weights, self._default_weights) / temperature[:, None]
        if self._input_weights is None or not _same_tensor(self._input_weights, input_weights):
            # e.g. a full-batch run passes the same weights at every step
            self._weights = _input_weights(input_weights, self._default_weights) / temperature[:, None]
            self._input_weights = input_weights.clone()
        return self._scale, self._weights


class _StepBinding:
    """What the closed-form step reads of its workspace for one policy, environment, tree and parameter layout:
    the :class:`_StepPlan`, the ``mean_grad`` buffers, the cotangent buffer and its views, found once rather than
    at every step (a training step's own Python work is a good part of its time once the arithmetic is fused)."""

    def __init__(self, workspace: ExactWorkspace, policy: SoftmaxPolicy, env: RewardEnv, tree: ClosedFormTree) -> None:
        space, temperature = env.output_space, policy.temperature
        shape = (space.num_prefix_states, space.vocab_size, policy.num_replicas, env.num_inputs)  # (S, V, R, N)
        plan = workspace.derived("closed-form step", (shape, temperature.dtype, temperature.device),
                                 lambda: _StepPlan(workspace, shape, temperature))  # fmt: skip
        assert isinstance(plan, _StepPlan)
        self.sources = (policy, env, tree)  # kept alive while the binding's key holds their ids
        self.plan = plan
        self.out = {key: workspace.take_like(f"mean_grad.{key}", value) for key, value in policy.params.items()}
        gradient = tree.gradient_view(self.out)
        self.cotangents = plan.cotangents() if gradient is None else gradient  # (S, V, R, N), e_u(a) first
        self.norm_from_squares = gradient is not None  # the cotangents are the gradient (zero elsewhere)
        self.exp_tokens, self.per_level, self.group_tokens = plan.bind(self.cotangents)

    @staticmethod
    def key(policy: SoftmaxPolicy, env: RewardEnv, tree: ClosedFormTree) -> tuple[object, ...]:
        """What a binding is kept for: the policy, environment and tree (by identity) and the parameters'
        names and layouts (which fix the ``mean_grad`` buffers)."""
        layouts = tuple((name, _layout(value)) for name, value in policy.params.items())
        return id(policy), id(env), id(tree), layouts


def _vocab_dot(first_tokens: list[torch.Tensor], second_tokens: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """``Σ_a first[:, a] second[:, a]`` into ``out`` ``(M, 1, R, N)`` from the token slices of ``first`` and
    ``second``: one product, then one fused multiply-add per token (no full-size product written and read back)."""
    torch.mul(first_tokens[0], second_tokens[0], out=out)
    for first_token, second_token in zip(first_tokens[1:], second_tokens[1:], strict=True):
        out.addcmul_(first_token, second_token)
    return out


def _closed_form_step(
    policy: SoftmaxPolicy,
    env: RewardEnv,
    tree: ClosedFormTree,
    max_outputs: int,
    input_weights: torch.Tensor | None,
    workspace: ExactWorkspace,
) -> StepGradient:
    """:func:`step_gradient` for a policy with a closed-form tree and no shaping: the quantities of
    :func:`_tree_sweep` and the tree's pullback, in fewer passes over memory.

    With ``e_u(a) = exp(z_u(a))`` (``z = f/T``, computed as ``2^(z log2 e)``, and shifted by ``m_u = max_a z_u(a)``
    only when some ``s_u = Σ_a e_u(a)`` leaves ``[2^-k, 2^k]``, ``k = 31`` in float32 and 255 in float64),
    ``k_u = P(u)/s_u`` (so ``P(u·a) = k_u e_u(a)``), leaves ``Q(y) = r(x, y)`` and, level by level up,
    ``Q(u) = Σ_a e_u(a) Q(u·a) / s_u`` and ``Δ_u(a) = Q(u·a) - Q(u)``:

        ``c_u(a) = (w_n / T) k_u e_u(a) Δ_u(a)``  (the gradient itself for a tabular policy, else the cotangent
        the tree maps back), ``Var_l = Σ_{|u|=l} k_u Σ_a e_u(a) Δ_u(a)²`` (non-negative terms),
        ``V = Q(∅)``, ``STD = sqrt(Σ_l Var_l)``,

    the policy gradient of Razin et al. (ICLR 2024), Section 3, with the weights ``w_n`` and ``1/T`` folded into
    one coefficient per prefix. ``e`` lives in the cotangent buffer (overwritten with the cotangents right after
    its last read). A small vocabulary (:data:`_SLICED_VOCAB`) takes :func:`_token_sweep`: sums over the
    vocabulary as fused multiply-adds on token slices, then ``Δ``, ``c``, the variance terms and ``Σ c²`` for one
    token of every prefix of the tree (or of a group of levels, :class:`_SweepGroup`) at a time; a large one
    :func:`_level_sweep`, level by level. When the cotangents are the gradient (a tabular tree), its norm
    ``||∇θ||_r = sqrt(Σ_{u,a,n} c_u(a)²)`` is summed from the squares formed while each token's slice is in cache.
    The buffers and views come from a :class:`_StepBinding`, found once per policy, environment and parameter
    layout rather than at every step.

    Args:
        * ``policy``: the policy (``R`` replicas), whose ``closed_form_tree`` is ``tree``.
        * ``env``: the environment (its output space and reward table).
        * ``tree``: its :class:`ClosedFormTree` for the environment's inputs.
        * ``max_outputs``: refuse output spaces with more than this many outputs.
        * ``input_weights``: ``(R, N)`` ``w_n``, or ``None`` for ``1/N``.
        * ``workspace``: where the buffers come from (``mean_grad`` lives there).
    """
    temperature, space = policy.temperature, env.output_space  # (R,)
    space.check_enumerable(max_outputs)  # before any buffer is sized
    binding = workspace.derived("closed-form binding", _StepBinding.key(policy, env, tree),
                                lambda: _StepBinding(workspace, policy, env, tree))  # fmt: skip
    assert isinstance(binding, _StepBinding)
    plan, cotangents, norm_from_squares = binding.plan, binding.cotangents, binding.norm_from_squares
    exp_tokens, per_level = binding.exp_tokens, binding.per_level
    normalisers = plan.normalisers
    with torch.no_grad():
        scale, weights = plan.factors(temperature, input_weights)  # 1 / (T ln 2), w_n / T
        tree.scaled_logits(policy.params, scale, cotangents).exp2_()  # e^{f/T}, one pass
        _sum_tokens(cotangents, exp_tokens, normalisers)
        if not plan.normalisers_in_range():  # shifted by m_u: s_u in [1, V] (NaN too)
            tree.scaled_logits(policy.params, scale, cotangents)
            cotangents.sub_(torch.amax(cotangents, 1, keepdim=True, out=normalisers)).exp2_()
            _sum_tokens(cotangents, exp_tokens, normalisers)
        leaves, leaf_tokens = plan.leaf(env, max_outputs)  # Q(u·a) of the last level: the rewards (V^(L-1), V, 1, N)
        levels = plan.levels
        torch.reciprocal(levels[0].normalisers, out=levels[0].coefs)  # k_∅ = P(∅) / s_∅
        for level, child, (exps, _) in zip(levels[:-1], levels[1:], per_level[:-1], strict=True):
            torch.mul(exps, level.coefs, out=level.child_coefs)  # P(u·a) = k_u e_u(a)
            child.coefs.div_(child.normalisers)
        if plan.sliced:
            _token_sweep(plan, binding.group_tokens, per_level, leaf_tokens, weights, norm_from_squares)
        else:
            _level_sweep(plan, per_level, leaves, weights, norm_from_squares)
        mean_grad = tree.pullback(cotangents, None, binding.out)
    variance = plan.variance  # (L, R, N), the plan's buffer, overwritten by the next step: copied below
    if not norm_from_squares:
        norm = params_norm(mean_grad, 1)
    elif plan.sliced:  # the token sweep's sum of c² over prefixes and tokens, in row 0
        norm = plan.square_total.sum(1).sqrt_()
    else:
        norm = plan.squares.sum((0, 2)).sqrt_()
    return StepGradient(
        value=plan.value.clone(),
        std=variance.sum(0).sqrt_(),
        position_variance=variance.clone().permute(1, 2, 0),  # (R, N, L), a view of an (L, R, N) copy
        mean_grad=mean_grad,
        # ||∇θ|| = sqrt(Σ_{u,a,n} c_u(a)²) from sums formed while the cotangents were in cache
        mean_grad_norm=norm,
    )


def _token_sweep(
    plan: _StepPlan,
    group_tokens: list[list[torch.Tensor]],
    per_level: list[tuple[torch.Tensor, list[torch.Tensor]]],
    leaf_tokens: list[torch.Tensor],
    weights: torch.Tensor,
    norm_from_squares: bool,
) -> None:
    """The closed-form step's backward sweep for a small vocabulary (:data:`_SLICED_VOCAB`): ``Q(u)`` level by
    level up, then ``c_u(a)`` (over ``e_u(a)`` in the cotangent buffer), the variance terms and ``Σ c²`` for one
    token ``a`` of every prefix of a group of levels at a time (:class:`_SweepGroup`; the whole tree when it is
    small: five ops per token for the tree rather than per level, each op's fixed cost being a good part of a
    small level's time).

    ``Q(u) = Σ_a e_u(a) Q(u·a) / s_u``, ``Δ_u(a) = Q(u·a) - Q(u)``, ``c_u(a) = (w_n k_u / T) e_u(a) Δ_u(a)``,
    ``Var_l = Σ_{|u|=l} k_u Σ_a e_u(a) Δ_u(a)²``; fills ``plan.variance`` and, when ``norm_from_squares``,
    ``plan.square_total`` with ``Σ_{u,a} c_u(a)²`` per ``(r, n)``."""
    levels, child_tokens = plan.levels, leaf_tokens
    for index in reversed(range(len(levels))):
        level, (_, tokens) = levels[index], per_level[index]
        _vocab_dot(tokens, child_tokens, level.q).div_(level.normalisers)  # Q(u)
        child_tokens = levels[index - 1].child_q_tokens if index else []
    torch.mul(plan.coefs, weights, out=plan.normalisers)  # w_n k_u / T over s_u (read last for Q)
    for group, exps in zip(plan.groups, group_tokens, strict=True):
        spread, terms, square_terms, weighted = group.spread, group.terms, group.square_terms, group.weighted
        for token, exp in enumerate(exps):
            if group.inner_child_q:  # Δ_u(a), Q(u·a) a prefix's
                torch.sub(group.inner_child_q[token], group.q_inner, out=group.spread_inner)
            if group.q_last is not None:  # Δ_u(a) of the last level, Q(u·a) = r(x, u·a)
                torch.sub(leaf_tokens[token], group.q_last, out=group.spread_last)
            exp.mul_(spread)  # e_u(a) Δ_u(a)
            if token:  # Σ_a e_u(a) Δ_u(a)², one fused multiply-add per token after the first
                terms.addcmul_(exp, spread)
            else:
                torch.mul(exp, spread, out=terms)
            exp.mul_(weighted)  # c_u(a)
            if norm_from_squares and token:  # Σ_a c_u(a)²
                square_terms.addcmul_(exp, exp)
            elif norm_from_squares:
                torch.mul(exp, exp, out=square_terms)
    plan.terms.mul_(plan.coefs)
    for level, variance in zip(levels, plan.level_variance, strict=True):
        torch.sum(level.terms, (0, 1), out=variance)
    if norm_from_squares:
        assert plan.square_terms is not None
        torch.sum(plan.square_terms, (0, 1), out=plan.square_total)


def _level_sweep(
    plan: _StepPlan,
    per_level: list[tuple[torch.Tensor, list[torch.Tensor]]],
    leaves: torch.Tensor,
    weights: torch.Tensor,
    norm_from_squares: bool,
) -> None:
    """The closed-form step's backward sweep for a large vocabulary, level by level up, whole-level ops (the same
    quantities as :func:`_token_sweep`; ``Σ c²`` of level ``l`` in ``plan.squares[l]``)."""
    children = leaves
    for index in reversed(range(len(plan.levels))):
        level, (exps, _) = plan.levels[index], per_level[index]  # e_u(a), then c_u(a) in place
        assert level.spread is not None
        torch.sum(torch.mul(exps, children, out=level.spread), 1, keepdim=True, out=level.q).div_(level.normalisers)
        weighted = torch.mul(level.coefs, weights, out=level.normalisers)  # w_n k_u / T, over s_u
        spread = torch.sub(children, level.q, out=level.spread)  # Δ_u(a)
        exps.mul_(spread)  # e_u(a) Δ_u(a)
        terms = torch.sum(torch.mul(exps, spread, out=level.spread), 1, keepdim=True, out=level.terms)
        exps.mul_(weighted)  # c_u(a)
        if norm_from_squares:
            torch.sum(torch.mul(exps, exps, out=level.spread), (0, 1), out=plan.squares[index])
        torch.sum(terms.mul_(level.coefs), (0, 1), out=plan.level_variance[index])
        if index:
            children = plan.levels[index - 1].child_q


def _sum_tokens(exps: torch.Tensor, tokens: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """``s_u = Σ_a e_u(a)`` for every state, ``(S, V, R, N)`` -> ``out`` ``(S, 1, R, N)`` (over token slices
    when given)."""
    if not tokens:
        return torch.sum(exps, 1, keepdim=True, out=out)
    torch.add(tokens[0], tokens[1], out=out)
    for token in tokens[2:]:
        out.add_(token)
    return out


def _replica_sweep(
    logits: torch.Tensor,
    rewards: torch.Tensor,
    space: OutputSpace,
    reward_fn: ShapingFn | None,
    workspace: ExactWorkspace,
    full: bool = True,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`_tree_sweep` for rewards ``(N, Y)`` shared by the replicas or ``(R, N, Y)``, one table per replica
    (:class:`~rftgrad.theory.batched.ReplicaEnvs`).

    The sweep treats every column ``(r, n)`` of the state-major logits ``(S, V, R, N)`` on its own, so
    per-replica rewards run as one replica of ``R·N`` inputs: the same memory, viewed ``(S, V, 1, R·N)``,
    with the rewards ``(R·N, Y)``; the fields and cotangents are viewed back to ``(R, ...)``.
    """
    if rewards.ndim == 2:
        return _tree_sweep(logits, rewards, space, reward_fn, workspace, full)
    num_states, vocab, num_replicas, num_inputs = logits.shape
    columns = num_replicas * num_inputs
    shaping = None
    if reward_fn is not None:

        def shaping(log_probs: torch.Tensor) -> torch.Tensor:  # (1, R·N, Y) <-> (R, N, Y)
            return reward_fn(log_probs.reshape(num_replicas, num_inputs, -1)).reshape(1, columns, -1)

    fields, cotangents = _tree_sweep(
        logits.view(num_states, vocab, 1, columns), rewards.reshape(columns, -1), space, shaping, workspace, full
    )
    fields = {key: value.reshape(num_replicas, num_inputs, *value.shape[2:]) for key, value in fields.items()}
    return fields, cotangents.view(num_states, vocab, num_replicas, num_inputs)


def _input_weights(weights: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """``(R, N)`` weights ``w_n`` of the inputs in ``mean_grad``: ``weights`` broadcast, default ``1/N``."""
    if weights is None:
        return torch.full(value.shape, 1.0 / value.shape[1], dtype=value.dtype, device=value.device)
    return torch.as_tensor(weights, dtype=value.dtype, device=value.device).expand(value.shape)


class _Enumeration:
    """Everything one exact pass shares: the tempered logits of every prefix ``(S, V, R, N)``, the
    tree sweep (:func:`_tree_sweep`) and the way back from logit cotangents to parameters.

    Two ways to the logits and back, same sweep: the policy's :class:`~rftgrad.models.base.ClosedFormTree` (tabular,
    linear; ``method="tree"``, ``closed_form=True``), which needs no autograd, or the generic
    ``torch.func`` program (:func:`_tree_program` / :func:`_flat_program`, vmapped over replicas,
    with a ``vjp`` pullback when ``autograd``), the reference for every policy.
    """

    def __init__(
        self,
        policy: SoftmaxPolicy,
        env: RewardEnv | ReplicaEnvs,
        method: str,
        max_outputs: int,
        reward_fn: ShapingFn | None,
        autograd: bool,
        closed_form: bool = True,
        workspace: ExactWorkspace | None = None,
        full: bool = True,
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        space = env.output_space
        space.check_enumerable(max_outputs)
        self.policy = policy
        self.x, self.replica_inputs = engine_inputs(policy, env)  # (N, ...), or (R, N, ...) per replica
        self.ids = torch.arange(env.num_inputs, device=policy.device)
        rewards = env.reward_table(max_outputs).to(policy.device, policy.dtype)  # (N, Y), or (R, N, Y) per replica
        self.default_weights = (
            env.input_weights(policy.dtype, policy.device) if isinstance(env, ReplicaEnvs) else None
        )  # (R, N): padded inputs weigh 0
        self.tree = policy.closed_form_tree(self.x, space) if closed_form and method == "tree" else None
        self.level_rows = _level_rows(space.vocab_size, space.length)
        self.workspace = ExactWorkspace() if workspace is None else workspace
        if self.tree is not None:
            shape = (space.num_prefix_states, space.vocab_size, policy.num_replicas, env.num_inputs)
            with torch.no_grad():  # (S, V, R, N)
                logits = self.tree.logits(
                    policy.params, policy.temperature, self.workspace.take("logits", shape, rewards)
                )
        else:
            logits = self._generic_logits(policy, space, method, autograd)
        self.fields, self.state_cotangents = _replica_sweep(logits, rewards, space, reward_fn, self.workspace, full)
        if full:
            self.fields["rewards"] = rewards

    def _generic_logits(self, policy: SoftmaxPolicy, space: OutputSpace, method: str, autograd: bool) -> torch.Tensor:
        """The ``torch.func`` program's logits, state-major ``(S, V, R, N)``; keeps its pullback."""
        make = _tree_program if method == "tree" else _flat_program
        self.program, levels, self.to_cotangents = make(policy, space)

        x_dim = 0 if self.replica_inputs else None  # per-replica inputs are mapped with the replicas

        def all_replicas(params: Params) -> tuple[torch.Tensor, ...]:
            return vmap(self.program, in_dims=(0, 0, None, x_dim))(params, policy.temperature, self.ids, self.x)

        if autograd:
            outputs, self.pullback = vjp(all_replicas, policy.params)
        else:
            with torch.no_grad():
                outputs = all_replicas(policy.params)
        return torch.cat([level.detach().permute(2, 3, 0, 1) for level in levels(outputs)])  # (R, N, V^l, V) each

    @functools.cached_property
    def cotangents(self) -> tuple[torch.Tensor, ...]:
        """The cotangents ``g_u`` per output of the generic program, ``(R, N, ...)`` (built once: ``exact``
        reads them for the mean gradient and again for the per-input VJPs)."""
        return self.to_cotangents([self.state_cotangents[rows].permute(2, 3, 0, 1) for rows in self.level_rows])

    def mean_grad(self, input_weights: torch.Tensor | None) -> dict[str, Params | torch.Tensor]:
        """``mean_grad`` and ``mean_grad_norm``: ``Σ_n w_n J_n^T g_n``, closed form or one VJP."""
        weights = _input_weights(
            self.default_weights if input_weights is None else input_weights, self.fields["value"]
        )  # (R, N)
        if self.tree is not None:
            out = {
                key: self.workspace.take_like(f"mean_grad.{key}", value) for key, value in self.policy.params.items()
            }
            with torch.no_grad():
                mean_grad = self.tree.pullback(self.state_cotangents, weights / self.policy.temperature[:, None], out)
        else:
            (mean_grad,) = self.pullback(
                tuple(c * weights.reshape(*weights.shape, *[1] * (c.ndim - 2)) for c in self.cotangents)
            )
            # the pullback holds the program's saved activations: free them before any per-input VJPs
            # (at the controlled transformer config this cuts exact's peak memory from 0.27 to 0.18 of the old path's)
            del self.pullback
        return {"mean_grad": mean_grad, "mean_grad_norm": params_norm(mean_grad, 1)}

    def per_input_grads(self, keep_grads: bool, input_chunk: int) -> tuple[torch.Tensor, Params | None]:
        """``(R, N)`` ``||∇_θ V(x_n;θ)||`` and (``keep_grads``) the gradients: closed form or one VJP per chunk."""
        if self.tree is not None:
            value = self.fields["value"]
            scale = (1.0 / self.policy.temperature)[:, None].expand(value.shape)  # (R, N)
            return self.tree.per_input(self.state_cotangents, scale, keep_grads)
        return _per_input_grads(
            self.policy, self.program, self.ids, self.x, self.cotangents, keep_grads, input_chunk, self.replica_inputs
        )


def evaluate(
    policy: SoftmaxPolicy,
    env: RewardEnv | ReplicaEnvs,
    *,
    method: str = "tree",
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
    closed_form: bool = True,
    workspace: ExactWorkspace | None = None,
) -> Evaluation:
    r"""Exact V, STD, log-probabilities and martingale variances for every replica and input, no autograd.

    .. math::

        V(x;\theta) = \sum_y p_\theta(y|x)\, r(x,y), \qquad
        \mathrm{STD}(x;\theta) = \Big(\sum_y p_\theta(y|x)\, \big(r(x,y) - V(x;\theta)\big)^2\Big)^{1/2},

        \mathrm{Var}_l = \mathbb{E}_{y_{<l}}\big[\mathrm{Var}(Q_l \mid y_{<l})\big], \qquad
        Q_l = \mathbb{E}[r \mid y_{\le l}], \qquad \sum_{l=1}^{L} \mathrm{Var}_l = \mathrm{STD}^2

    (value and STD as in Razin et al., ICLR 2024, Section 3; the martingale terms are past the paper;
    docs/paper.md §1-§2) by enumerating all ``Y = V^L``
    outputs; the logits are evaluated under ``torch.no_grad`` (about 3x faster than
    :func:`exact`). The numbers equal those of :func:`exact` bit for bit.

    Args:
        * ``policy``: a softmax policy (``R`` replicas) compatible with ``env``.
        * ``env``: the reward environment, or one per replica (:class:`~rftgrad.theory.batched.ReplicaEnvs`:
          replica ``r`` reads environment ``r``'s inputs and rewards, ``rewards`` is then ``(R, N, Y)`` and
          the default ``w_n`` is ``1/N_r`` on replica ``r``'s own inputs).
        * ``method``: ``"tree"`` (each prefix once) or ``"flat"`` (each output scored whole).
        * ``max_outputs``: refuse output spaces with more than this many outputs.

        * ``closed_form``: use the policy's closed-form prefix tree
          (:meth:`~rftgrad.models.SoftmaxPolicy.closed_form_tree`: tabular, linear; ``method="tree"``
          only), no autograd; ``False`` runs the generic ``torch.func`` program, the reference (same
          numbers to rounding).
        * ``workspace``: reuse this :class:`ExactWorkspace`'s buffers (then ``log_probs`` are
          overwritten by the next call with it); default: fresh buffers.

    Returns:
        :class:`Evaluation` with ``(R, N)`` values and STDs, ``(R, N, Y)`` log-probabilities.

    Raises:
        * :exc:`EnumerationLimitError`: ``V^L > max_outputs``.
        * :exc:`ShapeMismatchError`: the policy does not fit the environment.
    """
    run = _Enumeration(policy, env, method, max_outputs, None, False, closed_form, workspace)
    return Evaluation(**run.fields)


def mean_gradient(
    policy: SoftmaxPolicy,
    env: RewardEnv | ReplicaEnvs,
    *,
    method: str = "tree",
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
    input_weights: torch.Tensor | None = None,
    reward_fn: ShapingFn | None = None,
    closed_form: bool = True,
    workspace: ExactWorkspace | None = None,
) -> MeanGradResult:
    r""":func:`evaluate` plus ``mean_grad = ∇_θ Σ_n w_n E_y[f(y)]``, by one vector-Jacobian product.

    .. math::

        \mathtt{mean\_grad} = \nabla_\theta \sum_n w_n\, \mathbb{E}_{y \sim p_\theta(\cdot|x_n)}[f(y)],
        \qquad
        \nabla_\theta V(x;\theta) = \mathbb{E}_y\big[(r(x,y) - V(x;\theta))\, \nabla_\theta \log p_\theta(y|x)\big]

    The gradient a full-batch exact RFT step ascends (:math:`w_n = 1/N`, :math:`f = r`: the policy
    gradient on the right, Razin et al., ICLR 2024, Section 3), without
    the per-input gradients of :func:`exact`. ``reward_fn`` turns it into the gradient of a
    regularised objective: because :math:`\mathbb{E}_y[\nabla_\theta \log p_\theta(y|x)] = 0`, the gradient of
    :math:`\mathbb{E}_y[f_\theta(y)]` for :math:`f_\theta = r - \beta \log p_\theta` (entropy bonus) or
    :math:`f_\theta = r - \kappa (\log p_\theta - \log p_{\mathrm{ref}})` (KL penalty) is the policy gradient
    with :math:`f_\theta` held fixed as the reward.

    Args:
        * ``policy``: a softmax policy (``R`` replicas) compatible with ``env``.
        * ``env``: the reward environment, or one per replica (:class:`~rftgrad.theory.batched.ReplicaEnvs`:
          replica ``r`` reads environment ``r``'s inputs and rewards, ``rewards`` is then ``(R, N, Y)`` and
          the default ``w_n`` is ``1/N_r`` on replica ``r``'s own inputs).
        * ``method``: ``"tree"`` (each prefix once) or ``"flat"`` (each output scored whole).
        * ``max_outputs``: refuse output spaces with more than this many outputs.
        * ``input_weights``: ``(R, N)`` weights ``w_n`` of the inputs in ``mean_grad`` (e.g. a
          minibatch mask divided by its size); default ``1/N``.
        * ``reward_fn``: ``log_probs (R, N, Y) -> f (R, N, Y)``, the function whose expectation
          ``mean_grad`` differentiates (default: the reward); value, STD and the martingale
          terms stay those of the reward.

        * ``closed_form``: use the policy's closed-form prefix tree
          (:meth:`~rftgrad.models.SoftmaxPolicy.closed_form_tree`: tabular, linear; ``method="tree"``
          only), no autograd; ``False`` runs the generic ``torch.func`` program, the reference (same
          numbers to rounding).
        * ``workspace``: reuse this :class:`ExactWorkspace`'s buffers (then ``log_probs`` and ``mean_grad`` are
          overwritten by the next call with it); default: fresh buffers.

    Returns:
        :class:`MeanGradResult`: the :class:`Evaluation` fields, ``mean_grad`` (name ->
        ``(R, *shape)``) and ``mean_grad_norm`` ``(R,)``.

    Raises:
        * :exc:`EnumerationLimitError`: ``V^L > max_outputs``.
        * :exc:`ShapeMismatchError`: the policy does not fit the environment.
    """
    run = _Enumeration(
        policy, env, method, max_outputs, reward_fn, autograd=True, closed_form=closed_form, workspace=workspace
    )
    return MeanGradResult(**run.fields, **run.mean_grad(input_weights))


def step_gradient(
    policy: SoftmaxPolicy,
    env: RewardEnv,
    *,
    method: str = "tree",
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
    input_weights: torch.Tensor | None = None,
    reward_fn: ShapingFn | None = None,
    closed_form: bool = True,
    workspace: ExactWorkspace | None = None,
) -> StepGradient:
    r"""What an exact RFT step reads of :func:`mean_gradient`: V, STD, the martingale terms, ``mean_grad``
    and its norm (:class:`StepGradient`), the same numbers (to rounding on the closed-form path, bit for bit
    otherwise).

    .. math::

        \mathtt{mean\_grad} = \nabla_\theta \sum_n w_n\, \mathbb{E}_{y \sim p_\theta(\cdot|x_n)}[f(y)]

    (for :math:`w_n = 1/N` and :math:`f = r` the policy gradient of the mean objective, Razin et al.,
    ICLR 2024, Section 3).

    It leaves out the log-probabilities ``(R, N, Y)`` (unless ``reward_fn`` reads them), the logit-space
    norms and ``max_first_token_prob``. For a policy with a closed-form tree (tabular, linear;
    ``closed_form=True``, ``method="tree"``) and no ``reward_fn`` it runs a fused sweep of its own: the
    gradient ``(w_n/T) P(u) π_u(a) (Q(u·a) - Q(u))`` with the weights folded in once, ``e^z`` written into the
    gradient buffer, sums over a small vocabulary as fused multiply-adds (docs/exact_engine.md, "The
    closed-form training step"); equal to :func:`mean_gradient` to rounding. Otherwise the general sweep,
    bit for bit :func:`mean_gradient`'s numbers.
    :class:`~rftgrad.finetune.objectives.ExactRFT` calls it; the arguments are those of :func:`mean_gradient`.

    Raises:
        * :exc:`EnumerationLimitError`: ``V^L > max_outputs``.
        * :exc:`ShapeMismatchError`: the policy does not fit the environment.
    """
    if closed_form and method == "tree" and reward_fn is None:
        workspace = ExactWorkspace() if workspace is None else workspace
        tree = workspace.closed_form_tree(policy, env)
        if tree is not None:
            return _closed_form_step(policy, env, tree, max_outputs, input_weights, workspace)
    run = _Enumeration(
        policy, env, method, max_outputs, reward_fn, True, closed_form=closed_form, workspace=workspace, full=False
    )
    return StepGradient(**run.fields, **run.mean_grad(input_weights))


def exact(
    policy: SoftmaxPolicy,
    env: RewardEnv | ReplicaEnvs,
    *,
    grads: GradientMode = "norm",
    method: str = "tree",
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
    input_chunk: int = 64,
    input_weights: torch.Tensor | None = None,
    reward_fn: ShapingFn | None = None,
    closed_form: bool = True,
    workspace: ExactWorkspace | None = None,
) -> ExactResult:
    r"""Exact V, STD, martingale variances, ``mean_grad`` and per-input ``||∇_θ V(x_n;θ)||``.

    :func:`mean_gradient` plus the per-input gradients

    .. math::

        \nabla_\theta V(x_n;\theta) = \sum_{u} J_{x_n,u}^\top g_u, \qquad
        g_u = P(u)\, \pi_u \odot \big(Q(u\,\cdot) - Q(u)\big),

    with :math:`J_{x,u}` the Jacobian of the tempered logits at prefix :math:`u`, :math:`\pi_u` the
    next-token distribution there, :math:`P(u)` the prefix's probability and :math:`Q(u)` the expected
    reward given :math:`u` (one VJP over a parameter copy per replica and input, ``input_chunk`` inputs at a
    time): their norms always (``grad_norm``, ``(R, N)``), the gradients themselves with ``grads="full"``
    (``grads``, name -> ``(R, N, *shape)``; ``R·N·params`` numbers). Theorem 1 (Razin et al., ICLR 2024;
    docs/paper.md §2) bounds ``grad_norm``:

    .. math::

        \lVert \nabla_\theta V(x;\theta) \rVert \le 6\, L\, \gamma(x;\theta)\, \mathrm{STD}(x;\theta)^{2/3}.

    Args:
        * ``policy``: a softmax policy (``R`` replicas) compatible with ``env``.
        * ``env``: the reward environment, or one per replica (:class:`~rftgrad.theory.batched.ReplicaEnvs`:
          replica ``r`` reads environment ``r``'s inputs and rewards, ``rewards`` is then ``(R, N, Y)`` and
          the default ``w_n`` is ``1/N_r`` on replica ``r``'s own inputs).
        * ``grads``: ``"norm"`` (per-input gradient norms only) or ``"full"`` (keep the gradients).
        * ``method``: ``"tree"`` (each prefix once) or ``"flat"`` (each output scored whole).
        * ``max_outputs``: refuse output spaces with more than this many outputs.
        * ``input_chunk``: inputs per batched VJP (bounds memory: a parameter copy per replica and input).
        * ``input_weights``: ``(R, N)`` weights ``w_n`` of the inputs in ``mean_grad``; default ``1/N``.
        * ``reward_fn``: ``log_probs (R, N, Y) -> f (R, N, Y)``, the function whose expectation
          ``mean_grad`` and the per-input gradients differentiate (default: the reward).

        * ``closed_form``: use the policy's closed-form prefix tree
          (:meth:`~rftgrad.models.SoftmaxPolicy.closed_form_tree`: tabular, linear; ``method="tree"``
          only), no autograd; ``False`` runs the generic ``torch.func`` program, the reference (same
          numbers to rounding).
        * ``workspace``: reuse this :class:`ExactWorkspace`'s buffers (then ``log_probs`` and ``mean_grad`` are
          overwritten by the next call with it); default: fresh buffers.

    Returns:
        :class:`ExactResult`.

    Raises:
        * :exc:`ConfigError`: an unknown ``grads`` or ``method``, or ``input_chunk < 1``.
        * :exc:`EnumerationLimitError`: ``V^L > max_outputs``.
        * :exc:`ShapeMismatchError`: the policy does not fit the environment.
    """
    if grads not in GRADIENT_MODES:
        raise ConfigError(f"unknown grads={grads!r}; choose one of {', '.join(GRADIENT_MODES)}")
    if input_chunk < 1:
        raise ConfigError(f"input_chunk must be >= 1, got {input_chunk}")
    run = _Enumeration(
        policy, env, method, max_outputs, reward_fn, autograd=True, closed_form=closed_form, workspace=workspace
    )
    mean = run.mean_grad(input_weights)
    grad_norm, kept = run.per_input_grads(grads == "full", input_chunk)
    return ExactResult(**run.fields, **mean, grad_norm=grad_norm, _grads=kept)


def _per_input_grads(
    policy: SoftmaxPolicy,
    program: LogitProgram,
    ids: torch.Tensor,
    x: torch.Tensor,
    cotangents: tuple[torch.Tensor, ...],
    keep_grads: bool,
    input_chunk: int,
    replica_inputs: bool = False,
) -> tuple[torch.Tensor, Params | None]:
    """``∇_θ V(x_n;θ) = J_n^T g_n`` for each replica and input, by one VJP per chunk of inputs (``x``:
    ``(N, ...)``, or ``(R, N, ...)`` with ``replica_inputs``).

    The per-sample-gradient trick: every (replica, input) pair of a chunk gets its own copy of the
    replica's parameters (``R·n`` rows), the program runs once ``vmap``-ped over the pairs, and a
    single reverse pass of the cotangents ``g_n`` gives each copy's gradient, i.e. ``J_n^T g_n``
    (Razin et al., ICLR 2024, Section 3: ``∇_θ V = Σ_u J_u^T g_u``). The reverse pass runs outside
    ``vmap``, on the batched forward's own graph (plain ``torch.autograd.grad``).
    """

    def one_pair(params: Params, temperature: torch.Tensor, input_id: torch.Tensor, x_n: torch.Tensor):
        return program(params, temperature, input_id[None], x_n[None])  # per level (1, ...)

    over_pairs = vmap(one_pair)
    replicas, params = policy.num_replicas, policy.params  # params: (R, *shape) each
    norms, kept = [], []
    for start in range(0, ids.shape[0], input_chunk):
        chunk = slice(start, start + input_chunk)
        count = ids[chunk].shape[0]
        temperature = policy.temperature.repeat_interleave(count)  # (R·n,)
        ids_pairs = ids[chunk].repeat(replicas)  # (R·n,), replica-major like the copies
        if replica_inputs:  # x (R, N, ...): each replica's own inputs
            x_pairs = x[:, chunk].flatten(0, 1)  # (R·n, ...)
        else:
            x_pairs = x[chunk].repeat(replicas, *[1] * (x.ndim - 1))  # (R·n, ...)
        with torch.enable_grad():  # plain autograd: its reverse pass skips torch.func's wrapping, same numbers
            copies = {key: p.detach().repeat_interleave(count, dim=0).requires_grad_() for key, p in params.items()}
            outputs = over_pairs(copies, temperature, ids_pairs, x_pairs)  # per level (R·n, 1, ...)
            flat = torch.autograd.grad(
                outputs,
                list(copies.values()),
                [c[:, chunk].reshape(replicas * count, 1, *c.shape[2:]) for c in cotangents],
                allow_unused=True,
                materialize_grads=True,
            )
        grads = {key: g.unflatten(0, (replicas, count)) for key, g in zip(copies, flat, strict=True)}  # (R, n, *shape)
        norms.append(params_norm(grads, 2))  # (R, n)
        if keep_grads:
            kept.append(grads)
    grads_all = {key: torch.cat([g[key] for g in kept], dim=1) for key in kept[0]} if keep_grads else None
    return torch.cat(norms, dim=1), grads_all

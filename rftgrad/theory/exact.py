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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch
from torch.func import vjp, vmap

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, OutputSpace, RewardEnv
from rftgrad.errors import ConfigError
from rftgrad.models.base import Params, SoftmaxPolicy

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
]

METHODS = ("tree", "flat")

# Maps log p_θ(y|x) (R, N, Y) to the per-replica function f(y) whose expectation is differentiated.
ShapingFn = Callable[[torch.Tensor], torch.Tensor]

# A single-replica program (params, temperature, ids (n,), x (n, ...)) -> tuple of logit tensors.
LogitProgram = Callable[[Params, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]


GradientMode = Literal["norm", "full"]
#: what :func:`exact` computes per input besides ``mean_grad``: ``"norm"`` (||∇_θ V(x_n;θ)||) or
#: ``"full"`` (the per-input gradients themselves too).
GRADIENT_MODES: tuple[str, ...] = ("norm", "full")


@dataclass
class Evaluation:
    """Exact forward quantities per replica ``R`` and input ``N`` (``Y = V^L`` outputs); no autograd.

    What :func:`evaluate` returns, and the first fields of every result of :func:`mean_gradient`
    and :func:`exact`. Every field is a tensor (none is optional).

    Attributes:
        log_probs: ``(R, N, Y)`` log p_θ(y|x) in enumeration order (docs/paper.md §1).
        rewards: ``(N, Y)`` r(x, y).
        value: ``(R, N)`` V(x;θ) = Σ_y p_θ(y|x) r(x,y).
        std: ``(R, N)`` STD(x;θ) = sqrt(Σ_y p_θ(y|x) (r(x,y) - V)²).
        position_variance: ``(R, N, L)`` E_{y<l}[Var(Q_l | y_<l)]; sums to STD² over l.
        logit_grad_norm: ``(R, N)`` ``sqrt(Σ_u ||g_u||²)``, the norm of ∇V with respect to
            the tempered logits of every prefix (the per-prefix / logit-space gradient; it
            needs no autograd, the cotangents ``g_u`` come from the backward sweep).
        max_first_token_prob: ``(R, N)`` ``max_a π_∅(a)``, the largest probability of a
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
    """:class:`Evaluation` plus the gradient of the weighted mean objective (:func:`mean_gradient`).

    Attributes:
        mean_grad: name -> ``(R, *shape)``, ``∇_θ Σ_n w_n E_y[f(y)]`` (default ``w_n = 1/N``,
            ``f = r``: ∇_θ of (1/N) Σ_n V(x_n;θ)).
        mean_grad_norm: ``(R,)`` its Euclidean norm over all parameters.
    """

    mean_grad: Params
    mean_grad_norm: torch.Tensor


@dataclass
class ExactResult(MeanGradResult):
    """:class:`MeanGradResult` plus per-input gradient norms (:func:`exact`).

    Attributes:
        grad_norm: ``(R, N)`` ||∇_θ V(x_n;θ)||.
        grads: name -> ``(R, N, *shape)``, the per-input gradients ∇_θ V(x_n;θ) themselves;
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
        """name -> ``(R, N, *shape)`` per-input gradients ∇_θ V(x_n;θ)."""
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
    squares = [p.flatten(batch_dims).pow(2).sum(-1) for p in params.values()]
    return torch.stack(squares).sum(0).sqrt()


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


def _backward_sweep(
    cond_logp: list[torch.Tensor], rewards: torch.Tensor, reward_fn: ShapingFn | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """From next-token log-probs per level to every exact quantity.

    Args:
        cond_logp: ``L`` tensors ``(R, N, V^l, V)``: log π_u for each prefix ``u`` of level ``l``.
        rewards: ``(N, Y)``.
        reward_fn: if given, the cotangents ``g_u`` are those of ``E_y[f(y)]`` with
            ``f = reward_fn(log_probs (R, N, Y)) -> (R, N, Y)`` in place of the reward
            (value, std and the martingale terms stay those of the reward).

    Returns:
        log_probs ``(R, N, Y)``, value ``(R, N)``, std ``(R, N)``, position variances
        ``(R, N, L)`` and the logit cotangents ``g_u`` per level ``(R, N, V^l, V)``.
    """
    num_replicas, num_inputs = cond_logp[0].shape[:2]
    path = [cond_logp[0].new_zeros(num_replicas, num_inputs, 1)]  # log P(u), level 0: the empty prefix
    for logp in cond_logp:
        path.append((path[-1][..., None] + logp).reshape(num_replicas, num_inputs, -1))  # (R, N, V^(l+1))
    log_probs = path[-1]  # (R, N, Y)
    probs = log_probs.exp()
    value = (probs * rewards).sum(-1)  # (R, N)
    std = ((rewards - value[..., None]).pow(2) * probs).sum(-1).sqrt()  # (R, N)

    position_variance, cotangents = _martingale_sweep(cond_logp, path, rewards.expand(num_replicas, -1, -1))
    if reward_fn is not None:
        _, cotangents = _martingale_sweep(cond_logp, path, reward_fn(log_probs))
    return log_probs, value, std, position_variance, cotangents


def _martingale_sweep(
    cond_logp: list[torch.Tensor], path: list[torch.Tensor], rewards: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``Q(u) = Σ_a π_u(a) Q(u·a)`` from the leaves up: martingale variances ``(R, N, L)``
    and logit cotangents ``g_u = P(u) π_u ⊙ (Q(u·) - Q(u))`` per level (``rewards``: ``(R, N, Y)``)."""
    length = len(cond_logp)
    position_variance = rewards.new_zeros(*rewards.shape[:2], length)
    cots_from_last: list[torch.Tensor] = []  # filled from level L-1 down to 0
    q_next = rewards  # Q at level L: the reward itself, (R, N, Y)
    for level in reversed(range(length)):
        pi = cond_logp[level].exp()  # (R, N, V^l, V)
        q_children = q_next.reshape(pi.shape)  # Q(u·a), (R, N, V^l, V)
        q_prefix = (pi * q_children).sum(-1)  # Q(u) = Σ_a π_u(a) Q(u·a), (R, N, V^l)
        spread = q_children - q_prefix[..., None]  # Q(u·a) - Q(u)
        prefix_prob = path[level].exp()  # P(u), (R, N, V^l)
        position_variance[..., level] = (prefix_prob * (pi * spread.pow(2)).sum(-1)).sum(-1)
        cots_from_last.append(prefix_prob[..., None] * pi * spread)  # g_u = P(u) π_u ⊙ (Q(u·) - Q(u))
        q_next = q_prefix
    return position_variance, cots_from_last[::-1]


def _input_weights(weights: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """``(R, N)`` weights ``w_n`` of the inputs in ``mean_grad``: ``weights`` broadcast, default ``1/N``."""
    if weights is None:
        return torch.full(value.shape, 1.0 / value.shape[1], dtype=value.dtype, device=value.device)
    return torch.as_tensor(weights, dtype=value.dtype, device=value.device).expand(value.shape)


class _Enumeration:
    """Everything one exact pass shares: the logit program over all prefixes, its outputs
    ``(R, N, ...)``, the backward sweep and (with autograd) the VJP pullback."""

    def __init__(
        self,
        policy: SoftmaxPolicy,
        env: RewardEnv,
        method: str,
        max_outputs: int,
        reward_fn: ShapingFn | None,
        autograd: bool,
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        space = env.output_space
        space.check_enumerable(max_outputs)
        self.policy = policy
        self.x = policy.inputs_from(env)  # (N, ...)
        self.ids = torch.arange(env.num_inputs, device=policy.device)
        rewards = env.reward_table(max_outputs).to(policy.device, policy.dtype)  # (N, Y)
        make = _tree_program if method == "tree" else _flat_program
        self.program, levels, to_cotangents = make(policy, space)

        def all_replicas(params: Params) -> tuple[torch.Tensor, ...]:
            return vmap(self.program, in_dims=(0, 0, None, None))(params, policy.temperature, self.ids, self.x)

        if autograd:
            outputs, self.pullback = vjp(all_replicas, policy.params)
        else:
            with torch.no_grad():
                outputs = all_replicas(policy.params)
        cond_logp = [torch.log_softmax(level.detach(), dim=-1) for level in levels(outputs)]
        log_probs, value, std, position_variance, level_cots = _backward_sweep(cond_logp, rewards, reward_fn)
        self.cotangents = to_cotangents(level_cots)  # per program output, (R, N, ...)
        self.fields = {
            "log_probs": log_probs,
            "rewards": rewards,
            "value": value,
            "std": std,
            "position_variance": position_variance,
            "logit_grad_norm": torch.stack([c.pow(2).sum(dim=(-2, -1)) for c in level_cots]).sum(0).sqrt(),  # (R, N)
            "max_first_token_prob": cond_logp[0][:, :, 0, :].exp().amax(-1),  # (R, N)
        }

    def mean_grad(self, input_weights: torch.Tensor | None) -> dict[str, Params | torch.Tensor]:
        """``mean_grad`` and ``mean_grad_norm``: one VJP with the cotangents weighted by ``w_n``."""
        weights = _input_weights(input_weights, self.fields["value"])
        (mean_grad,) = self.pullback(
            tuple(c * weights.reshape(*weights.shape, *[1] * (c.ndim - 2)) for c in self.cotangents)
        )
        return {"mean_grad": mean_grad, "mean_grad_norm": params_norm(mean_grad, 1)}


def evaluate(
    policy: SoftmaxPolicy, env: RewardEnv, *, method: str = "tree", max_outputs: int = DEFAULT_MAX_OUTPUTS
) -> Evaluation:
    """Exact V, STD, log-probabilities and martingale variances for every replica and input, no autograd.

    ``V(x;θ) = Σ_y p_θ(y|x) r(x,y)``, ``STD(x;θ) = sqrt(Σ_y p_θ(y|x) (r - V)²)`` and
    ``Var_l = E_{y<l}[Var(Q_l | y_<l)]`` (docs/paper.md §1-§2) by enumerating all ``Y = V^L``
    outputs; the logits are evaluated under ``torch.no_grad`` (about 3x faster than
    :func:`exact`). The numbers equal those of :func:`exact` bit for bit.

    Args:
        policy: a softmax policy (``R`` replicas) compatible with ``env``.
        env: the reward environment.
        method: ``"tree"`` (each prefix once) or ``"flat"`` (each output scored whole).
        max_outputs: refuse output spaces with more than this many outputs.

    Returns:
        :class:`Evaluation` with ``(R, N)`` values and STDs, ``(R, N, Y)`` log-probabilities.

    Raises:
        EnumerationLimitError: ``V^L > max_outputs``.
        ShapeMismatchError: the policy does not fit the environment.
    """
    return Evaluation(**_Enumeration(policy, env, method, max_outputs, None, autograd=False).fields)


def mean_gradient(
    policy: SoftmaxPolicy,
    env: RewardEnv,
    *,
    method: str = "tree",
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
    input_weights: torch.Tensor | None = None,
    reward_fn: ShapingFn | None = None,
) -> MeanGradResult:
    """:func:`evaluate` plus ``mean_grad = ∇_θ Σ_n w_n E_y[f(y)]``, by one vector-Jacobian product.

    The gradient a full-batch exact RFT step ascends (``w_n = 1/N``, ``f = r``: the policy
    gradient ``E_y[(r - V) ∇_θ log p_θ(y|x)]``, Razin et al., ICLR 2024, Section 3), without
    the per-input gradients of :func:`exact`. ``reward_fn`` turns it into the gradient of a
    regularised objective: because ``E_y[∇_θ log p_θ(y|x)] = 0``, the gradient of
    ``E_y[f_θ(y)]`` for ``f_θ = r - β log p_θ`` (entropy bonus) or
    ``f_θ = r - κ (log p_θ - log p_ref)`` (KL penalty) is the policy gradient with ``f_θ``
    held fixed as the reward.

    Args:
        policy: a softmax policy (``R`` replicas) compatible with ``env``.
        env: the reward environment.
        method: ``"tree"`` (each prefix once) or ``"flat"`` (each output scored whole).
        max_outputs: refuse output spaces with more than this many outputs.
        input_weights: ``(R, N)`` weights ``w_n`` of the inputs in ``mean_grad`` (e.g. a
            minibatch mask divided by its size); default ``1/N``.
        reward_fn: ``log_probs (R, N, Y) -> f (R, N, Y)``, the function whose expectation
            ``mean_grad`` differentiates (default: the reward); value, STD and the martingale
            terms stay those of the reward.

    Returns:
        :class:`MeanGradResult`: the :class:`Evaluation` fields, ``mean_grad`` (name ->
        ``(R, *shape)``) and ``mean_grad_norm`` ``(R,)``.

    Raises:
        EnumerationLimitError: ``V^L > max_outputs``.
        ShapeMismatchError: the policy does not fit the environment.
    """
    run = _Enumeration(policy, env, method, max_outputs, reward_fn, autograd=True)
    return MeanGradResult(**run.fields, **run.mean_grad(input_weights))


def exact(
    policy: SoftmaxPolicy,
    env: RewardEnv,
    *,
    grads: GradientMode = "norm",
    method: str = "tree",
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
    input_chunk: int = 64,
    input_weights: torch.Tensor | None = None,
    reward_fn: ShapingFn | None = None,
) -> ExactResult:
    """Exact V, STD, martingale variances, ``mean_grad`` and per-input ``||∇_θ V(x_n;θ)||``.

    :func:`mean_gradient` plus the per-input gradients ``∇_θ V(x_n;θ) = J_n^T g_n``
    (vmapped VJPs, ``input_chunk`` inputs at a time): their norms always (``grad_norm``,
    ``(R, N)``), the gradients themselves with ``grads="full"`` (``grads``, name ->
    ``(R, N, *shape)``; ``R·N·params`` numbers). Theorem 1 (docs/paper.md §2) bounds
    ``grad_norm`` by ``6 L γ STD^(2/3)``.

    Args:
        policy: a softmax policy (``R`` replicas) compatible with ``env``.
        env: the reward environment.
        grads: ``"norm"`` (per-input gradient norms only) or ``"full"`` (keep the gradients).
        method: ``"tree"`` (each prefix once) or ``"flat"`` (each output scored whole).
        max_outputs: refuse output spaces with more than this many outputs.
        input_chunk: inputs per vmapped VJP batch (bounds memory).
        input_weights: ``(R, N)`` weights ``w_n`` of the inputs in ``mean_grad``; default ``1/N``.
        reward_fn: ``log_probs (R, N, Y) -> f (R, N, Y)``, the function whose expectation
            ``mean_grad`` and the per-input gradients differentiate (default: the reward).

    Returns:
        :class:`ExactResult`.

    Raises:
        ConfigError: an unknown ``grads`` or ``method``, or ``input_chunk < 1``.
        EnumerationLimitError: ``V^L > max_outputs``.
        ShapeMismatchError: the policy does not fit the environment.
    """
    if grads not in GRADIENT_MODES:
        raise ConfigError(f"unknown grads={grads!r}; choose one of {', '.join(GRADIENT_MODES)}")
    if input_chunk < 1:
        raise ConfigError(f"input_chunk must be >= 1, got {input_chunk}")
    run = _Enumeration(policy, env, method, max_outputs, reward_fn, autograd=True)
    mean = run.mean_grad(input_weights)
    grad_norm, kept = _per_input_grads(
        policy, run.program, run.ids, run.x, run.cotangents, grads == "full", input_chunk
    )
    return ExactResult(**run.fields, **mean, grad_norm=grad_norm, _grads=kept)


def _per_input_grads(
    policy: SoftmaxPolicy,
    program: LogitProgram,
    ids: torch.Tensor,
    x: torch.Tensor,
    cotangents: tuple[torch.Tensor, ...],
    keep_grads: bool,
    input_chunk: int,
) -> tuple[torch.Tensor, Params | None]:
    """``∇_θ V(x_n;θ) = J_n^T g_n`` for each replica and input, by vmapped VJPs."""

    def one_input(
        params: Params,
        temperature: torch.Tensor,
        input_id: torch.Tensor,
        x_n: torch.Tensor,
        cots_n: tuple[torch.Tensor, ...],
    ) -> Params:
        _, pullback = vjp(lambda p: program(p, temperature, input_id[None], x_n[None]), params)
        return pullback(tuple(c[None] for c in cots_n))[0]

    over_inputs = vmap(one_input, in_dims=(None, None, 0, 0, 0))
    over_replicas = vmap(over_inputs, in_dims=(0, 0, None, None, 0))
    norms, kept = [], []
    for start in range(0, ids.shape[0], input_chunk):
        chunk = slice(start, start + input_chunk)
        grads = over_replicas(
            policy.params, policy.temperature, ids[chunk], x[chunk], tuple(c[:, chunk] for c in cotangents)
        )
        norms.append(params_norm(grads, 2))  # (R, n)
        if keep_grads:
            kept.append(grads)
    grads_all = {key: torch.cat([g[key] for g in kept], dim=1) for key in kept[0]} if keep_grads else None
    return torch.cat(norms, dim=1), grads_all

"""Theorem 2: gradient-flow dynamics of RFT and SFT for one input's logits (docs/paper.md §3).

Razin et al., "Vanishing Gradients in Reinforcement Finetuning of Language Models",
ICLR 2024 (arXiv 2310.20703), Theorem 2 / Section 3: for a linear softmax model with
orthonormal inputs, one output token and reward +1 for the correct label, −1 otherwise,
the gradient-flow time for RFT to raise an input's expected reward to a fixed level grows
like ``1/STD_0²``, while SFT needs only ``ln(1/STD_0)``. Derivations: docs/theorem2.md.

Notation: logits ``z ∈ ℝ^K``, ``π = softmax(z)``, correct label ``y*``, ``p = π[y*]``,
expected reward ``V = π · r`` (``V = 2p − 1`` for the ±1 reward), ``STD = 2 sqrt(p(1 − p))``.

1. Logit velocities (right-hand sides of the flows):
   :func:`rft_gradient` ``∇_z V = π ⊙ (r − V)`` for any reward vector ``r ∈ [−1, 1]^K``;
   :func:`rft_pm1_gradient` ``2p (e_{y*} − π)`` for the ±1 reward;
   :func:`sft_gradient` ``∇_z log p = e_{y*} − π``; their Jacobians for stiff solvers.
2. Decoupling: :func:`linear_model_flow` (``dW/dt = Σ_i g_i x_iᵀ``) and :func:`gram_flow`
   (``dz_i/dt = Σ_j (x_i · x_j) g_j``); with orthonormal inputs the Gram matrix is ``I`` and
   each input's logits follow their own flow. Correlated inputs: the same :func:`gram_flow`.
3. Numeric hitting times: :func:`solve_flow` / :func:`hitting_time_ode` (scipy ``solve_ivp``,
   LSODA's stiff BDF branch, an event on ``V − V_target``) on the full ``K``-dimensional logit flow.
4. Closed forms: :func:`symmetric_reduction` derives, with sympy, the one-dimensional
   ODEs in ``p`` (wrong labels sharing ``1 − p`` equally), their hitting times and the
   constants of the asymptotics; :func:`closed_form_hitting_time` evaluates them stably.
5. Discrete steps: :func:`discrete_hitting_steps` runs gradient ascent or Adam on the same
   objectives and counts steps to the target (``steps · η → T_flow`` as ``η → 0`` for GD).

Everything is float64 numpy; sympy and scipy are imported when first needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rftgrad.envs.base import validate_rewards
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.registry import OBJECTIVES, OPTIMIZERS  # ("rft", "sft"): the objectives; ("sgd", "adam"): the optimisers

if TYPE_CHECKING:
    import sympy as sp

__all__ = [
    "OBJECTIVES",
    "OPTIMIZERS",
    "check_objective",
    "check_num_labels",
    "check_probability",
    "check_start_and_target",
    "softmax",
    "pm1_rewards",
    "symmetric_logits",
    "expected_reward",
    "rft_gradient",
    "rft_pm1_gradient",
    "sft_gradient",
    "logit_gradient",
    "logit_gradient_jacobian",
    "linear_model_flow",
    "gram_flow",
    "FlowSolution",
    "solve_flow",
    "hitting_time_ode",
    "solve_linear_model",
    "SymmetricReduction",
    "symmetric_reduction",
    "symmetric_reduction_checks",
    "target_probability",
    "std_from_p0",
    "closed_form_hitting_time",
    "asymptotic_constant",
    "asymptotic_hitting_time",
    "loglog_slope",
    "discrete_hitting_steps",
    "p0_grid",
]

#: default solve_ivp settings of the numeric hitting times: LSODA (Adams, switching to stiff BDF),
#: relative tolerance 1e-12 and absolute 1e-14 on the logits; the relative agreement with the closed
#: forms is ≤ 4e-10 over p0 ∈ [1e-8, 0.5], K ∈ {2, 10, 100} (tests/theory/test_dynamics.py). Radau
#: (rtol 1e-10, atol 1e-12) agrees to 1e-10 too, but its complex LU goes through threaded OpenBLAS,
#: which stalls on a busy 2-core machine (~100 ms per 100×100 factorisation); LSODA's LU does not.
METHOD, RTOL, ATOL = "LSODA", 1e-12, 1e-14
#: default end of the integration window; a target not reached by then is reported as not reached.
T_MAX = 1e12


# ---------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------


def check_objective(objective: str) -> str:
    """Return ``objective`` if it is one of :data:`OBJECTIVES`, else raise :class:`ConfigError`."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective {objective!r} is unknown; use one of {', '.join(OBJECTIVES)}")
    return objective


def check_num_labels(num_labels: int) -> int:
    """``K`` as an int, or :class:`ConfigError` when ``K < 2`` (a softmax needs two labels)."""
    value = num_labels.item() if isinstance(num_labels, np.generic) else num_labels
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer() or value < 2:
        raise ConfigError(f"number of labels K={value!r} is invalid; use an integer K >= 2")
    return int(value)


def check_probability(p0: float | np.ndarray) -> np.ndarray:
    """``p0`` as a float64 array, or :class:`ConfigError` unless every entry lies in ``(0, 1)``."""
    p0 = np.asarray(p0, dtype=np.float64)
    inside = (p0 > 0) & (p0 < 1)
    if not np.all(inside):
        raise ConfigError(f"initial probability p0={float(p0[~inside].flat[0])!r} is outside (0, 1); pass 0 < p0 < 1")
    return p0


def check_start_and_target(p0: float | np.ndarray, target: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check ``p0 ∈ (0, 1)`` and ``2 p0 − 1 < V_target < 1`` (±1 reward); return both as arrays.

    The expected reward ``V = 2p − 1`` starts at ``2 p0 − 1`` and approaches 1 only as ``t → ∞``,
    so a target must lie strictly between the two.
    """
    p0 = check_probability(p0)
    target = np.asarray(target, dtype=np.float64)
    below_one = target < 1
    if not np.all(below_one):
        raise ConfigError(
            f"target expected reward {float(target[~below_one].flat[0])!r} is not below 1, which the flow only "
            "approaches as t → ∞; choose a target < 1"
        )
    start, goal = np.broadcast_arrays(2 * p0 - 1, target)
    above = goal > start
    if not np.all(above):
        raise ConfigError(
            f"target expected reward {float(goal[~above].flat[0])!r} is not above the start 2·p0 − 1 = "
            f"{float(start[~above].flat[0])!r}; choose a target between the start and 1"
        )
    return p0, target


def _check_positive(value: float | np.ndarray, name: str) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(value) & (value > 0)):
        bad = value[~(np.isfinite(value) & (value > 0))].flat[0]
        raise ConfigError(f"{name} must be positive and finite, got {float(bad)!r}; pass a value > 0")
    return value


# ---------------------------------------------------------------------------------------
# 1. Logit velocities of one input (the right-hand sides of the flows)
# ---------------------------------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    """``π = softmax(z)`` over the last axis, shifted by ``max z`` (no overflow): ``(..., K)``.

    ``scipy.special.softmax(z, axis=-1)`` computes the same; this one is twice as fast on the small
    arrays of an ODE right-hand side, which calls it thousands of times per solve.
    """
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _check_label(label: int, num_labels: int) -> int:
    if not 0 <= label < num_labels:
        raise ConfigError(f"label {label} is not one of the K={num_labels} labels; use 0 <= label < K")
    return int(label)


def pm1_rewards(num_labels: int, label: int = 0) -> np.ndarray:
    """The paper's reward vector: ``r = 2 e_{y*} − 1`` (+1 for the correct label, −1 otherwise), ``(K,)``."""
    rewards = -np.ones(check_num_labels(num_labels))
    rewards[_check_label(label, len(rewards))] = 1.0
    return rewards


def symmetric_logits(p0: float, num_labels: int, label: int = 0) -> np.ndarray:
    """Logits ``(K,)`` with ``π[y*] = p0`` and the wrong labels sharing ``1 − p0`` equally.

    ``z_{y*} = log p0``, ``z_j = log((1 − p0)/(K − 1))`` for ``j ≠ y*``, so ``Σ_j e^{z_j} = 1``.
    """
    k = check_num_labels(num_labels)
    p0 = float(check_probability(p0))
    logits = np.full(k, np.log1p(-p0) - np.log(k - 1))
    logits[_check_label(label, k)] = np.log(p0)
    return logits


def expected_reward(logits: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """``V = π · r``: logits ``(..., K)``, rewards ``(K,)`` or ``(..., K)`` -> ``(...)``."""
    return (softmax(logits) * rewards).sum(-1)


def _velocity(logits: np.ndarray, objective: str, onehot: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
    """Unchecked velocities (callers validate once): ``onehot`` ``(..., K)`` marks ``y*``."""
    probs = softmax(logits)
    if objective == "sft":
        return onehot - probs  # e_{y*} − π
    if rewards is None:
        p = (probs * onehot).sum(-1, keepdims=True)
        return 2 * p * (onehot - probs)  # 2p (e_{y*} − π)
    value = (probs * rewards).sum(-1, keepdims=True)
    return probs * (rewards - value)  # π ⊙ (r − V)


def _one_hot(labels: int | np.ndarray, num_labels: int) -> np.ndarray:
    return np.eye(num_labels)[np.asarray(labels)]


def rft_gradient(logits: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    r"""RFT logit velocity for any reward vector: ``∇_z V = π ⊙ (r − V)``, ``V = π · r``; ``(..., K)``.

    .. math::

        \nabla_z V = \pi \odot (r - V), \qquad V = \pi \cdot r, \qquad \pi = \mathrm{softmax}(z)

    The logit-space policy gradient (Razin et al., ICLR 2024, Section 3; the same identity as
    :func:`rftgrad.theory.softmax_value_gradient`). Rewards ``(K,)`` or ``(..., K)``
    must lie in ``[−1, 1]`` (else :class:`rftgrad.errors.RewardRangeError`).
    """
    rewards = validate_rewards(np.asarray(rewards, dtype=np.float64)).numpy()
    return _velocity(logits, "rft", np.zeros(0), rewards)


def rft_pm1_gradient(logits: np.ndarray, labels: int | np.ndarray = 0) -> np.ndarray:
    r"""RFT logit velocity for the ±1 reward: ``∇_z V = 2p (e_{y*} − π)``, ``p = π[y*]``; ``(..., K)``.

    .. math::

        \frac{dz}{dt} = \nabla_z V = 2p\, (e_{y^*} - \pi), \qquad p = \pi_{y^*}

    Theorem 2's RFT flow (Razin et al., ICLR 2024, Theorem 2, Section 3; docs/paper.md §3). It is
    :func:`rft_gradient` at :math:`r = 2 e_{y^*} - 1`: :math:`V = 2p - 1` and :math:`\pi \odot (r - V)` has
    entries :math:`2p(1 - p)` at :math:`y^*` and :math:`-2p\, \pi_j` elsewhere. ``labels``: int or ``(...)``.
    """
    return _velocity(logits, "rft", _one_hot(labels, logits.shape[-1]), None)


def sft_gradient(logits: np.ndarray, labels: int | np.ndarray = 0) -> np.ndarray:
    r"""SFT logit velocity: ``∇_z log π[y*] = e_{y*} − π``; ``(..., K)`` (docs/paper.md §3).

    .. math::

        \frac{dz}{dt} = \nabla_z \log \pi_{y^*} = e_{y^*} - \pi

    Theorem 2's SFT flow (Razin et al., ICLR 2024, Theorem 2, Section 3): no factor :math:`2p`, so it
    is fast where :func:`rft_pm1_gradient` is slow.
    """
    return _velocity(logits, "sft", _one_hot(labels, logits.shape[-1]), None)


def logit_gradient(
    logits: np.ndarray, objective: str, labels: int | np.ndarray = 0, rewards: np.ndarray | None = None
) -> np.ndarray:
    """The velocity ``g(z)`` of ``objective``: RFT (±1 reward unless ``rewards`` is given) or SFT; ``(..., K)``."""
    if check_objective(objective) == "sft":
        return sft_gradient(logits, labels)
    return rft_pm1_gradient(logits, labels) if rewards is None else rft_gradient(logits, rewards)


def logit_gradient_jacobian(
    logits: np.ndarray, objective: str, label: int = 0, rewards: np.ndarray | None = None
) -> np.ndarray:
    """``∂g/∂z`` of :func:`logit_gradient` for one input: logits ``(K,)`` -> ``(K, K)``.

    With ``S = diag(π) − ππᵀ = ∂π/∂z``:
    SFT ``−S``; RFT (±1) ``2p [(e − π)(e − π)ᵀ − S]``; RFT (general ``r``, ``g = π ⊙ (r − V)``)
    ``diag(r − V) S − π gᵀ``. Used by the stiff solver; tests compare it with finite differences.
    """
    probs = softmax(logits)
    jac_softmax = np.diag(probs) - np.outer(probs, probs)
    if check_objective(objective) == "sft":
        return -jac_softmax
    if rewards is None:
        diff = _one_hot(label, logits.shape[-1]) - probs
        return 2 * probs[label] * (np.outer(diff, diff) - jac_softmax)
    rewards = np.asarray(rewards, dtype=np.float64)
    gap = rewards - probs @ rewards
    return gap[:, None] * jac_softmax - np.outer(probs, probs * gap)


# ---------------------------------------------------------------------------------------
# 2. Linear models: the full flow and its decoupling (Gram matrix)
# ---------------------------------------------------------------------------------------


def _labels_and_rewards(
    num_inputs: int, num_labels: int, labels: int | np.ndarray, rewards: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked ``labels`` ``(N,)``, their one-hot rows ``(N, K)`` and rewards ``(N, K)`` (or None)."""
    check_num_labels(num_labels)
    labels = np.broadcast_to(np.asarray(labels, dtype=np.int64), (num_inputs,))
    if labels.min() < 0 or labels.max() >= num_labels:
        raise ConfigError(f"labels must lie in [0, K={num_labels}), got {labels.tolist()}")
    if rewards is not None:
        rewards = validate_rewards(np.asarray(rewards, dtype=np.float64)).numpy()
        if rewards.shape[-1] != num_labels or rewards.ndim > 2:
            raise ShapeMismatchError(f"rewards of shape {rewards.shape} do not fit K={num_labels} labels")
        rewards = np.broadcast_to(rewards, (num_inputs, num_labels))
    return labels, _one_hot(labels, num_labels), rewards


def _check_gram(gram: np.ndarray | None, num_inputs: int) -> np.ndarray:
    if gram is None:
        return np.eye(num_inputs)
    gram = np.asarray(gram, dtype=np.float64)
    if gram.shape != (num_inputs, num_inputs):
        raise ShapeMismatchError(f"Gram matrix of shape {gram.shape} does not fit {num_inputs} inputs")
    if not np.allclose(gram, gram.T) or np.linalg.eigvalsh(gram).min() < -1e-12:
        raise ConfigError("Gram matrix must be symmetric positive semidefinite (G = X Xᵀ); build it from inputs")
    return gram


def linear_model_flow(
    weights: np.ndarray,
    inputs: np.ndarray,
    objective: str,
    labels: int | np.ndarray = 0,
    rewards: np.ndarray | None = None,
) -> np.ndarray:
    r"""Gradient flow of a linear softmax model on the summed objective: ``dW/dt = Σ_i g_i x_iᵀ``.

    .. math::

        \frac{dW}{dt} = \sum_i g_i\, x_i^\top, \qquad g_i = g(W x_i)

    ``f_W(x) = W x`` (Razin et al., ICLR 2024, Theorem 2's setting; docs/paper.md §3), weights ``W``
    ``(K, D)``, inputs ``X`` ``(N, D)``, ``z_i = W x_i`` and ``g_i = logit_gradient(z_i)`` (chain rule:
    ``∂z_i/∂W = · ⊗ x_i``). The objective is the *sum* over inputs; the mean divides every time by
    ``N``. Returns ``(K, D)``.
    """
    check_objective(objective)
    logits = inputs @ weights.T  # (N, K)
    _, onehot, rewards = _labels_and_rewards(len(inputs), weights.shape[0], labels, rewards)
    return _velocity(logits, objective, onehot, rewards).T @ inputs  # (K, D)


def gram_flow(
    logits: np.ndarray,
    gram: np.ndarray,
    objective: str,
    labels: int | np.ndarray = 0,
    rewards: np.ndarray | None = None,
) -> np.ndarray:
    r"""The logit flow a linear model induces: ``dz_i/dt = Σ_j (x_i · x_j) g_j``, logits ``(N, K)``.

    .. math::

        \frac{dz_i}{dt} = \sum_j G_{ij}\, g_j(z_j), \qquad G_{ij} = x_i \cdot x_j

    ``dz_i/dt = (dW/dt) x_i = Σ_j g_j (x_j · x_i)`` with :func:`linear_model_flow`, for any ``W``.
    Orthonormal inputs (``G = I``): ``dz_i/dt = g_i``, each input on its own (Razin et al., ICLR
    2024, Theorem 2's decoupling). Otherwise neighbours ``j`` with ``G_ij ≠ 0`` push ``z_i`` along
    their own gradients. ``gram``: ``(N, N)``, ``G_ij = x_i · x_j``. Returns ``(N, K)``.
    """
    check_objective(objective)
    _, onehot, rewards = _labels_and_rewards(len(logits), logits.shape[-1], labels, rewards)
    return _check_gram(gram, len(logits)) @ _velocity(logits, objective, onehot, rewards)


# ---------------------------------------------------------------------------------------
# 3. Numeric solutions and hitting times (scipy solve_ivp, stiff)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowSolution:
    """A solved logit flow."""

    times: np.ndarray
    """``(T,)`` times of the stored states (``t_eval``, else the solver's steps)."""
    logits: np.ndarray
    """``(T, N, K)`` logits at those times."""
    hit_time: float
    """First time the watched input's expected reward reached the target (``nan``: not reached)."""
    nfev: int
    """Right-hand-side evaluations the solver used."""


def solve_flow(
    logits0: np.ndarray,
    objective: str,
    labels: int | np.ndarray = 0,
    rewards: np.ndarray | None = None,
    gram: np.ndarray | None = None,
    target: float | None = None,
    watch: int = 0,
    terminal: bool = True,
    t_eval: np.ndarray | None = None,
    t_max: float = T_MAX,
    method: str = METHOD,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> FlowSolution:
    """Integrate ``dZ/dt = G g(Z)`` (:func:`gram_flow`) from ``logits0`` ``(N, K)`` (or ``(K,)``).

    scipy ``solve_ivp`` with a stiff method (default LSODA, which switches to BDF when the flow
    turns stiff; Radau and BDF work too) given the analytic Jacobian
    ``∂(dz_i/dt)/∂z_j = G_ij ∂g_j/∂z_j``, ``rtol = 1e-12``, ``atol = 1e-14`` on the logits.
    With ``target``, an event on ``V_watch(t) − target`` (crossing upwards) records the hitting
    time, located by root finding on the dense output (``V`` is the ±1 reward's ``2p − 1`` of
    input ``watch``, or ``π · r`` with ``rewards``); it stops the solve unless ``terminal=False``
    (then the states at ``t_eval`` up to ``t_eval[-1]`` come back too). The slow phase of RFT at small ``p0``
    is where stiff steps pay: the step size grows with ``1/p0`` while staying stable.
    """
    from scipy.integrate import solve_ivp

    check_objective(objective)
    logits0 = np.atleast_2d(np.asarray(logits0, dtype=np.float64))  # (N, K)
    n, k = logits0.shape
    gram = _check_gram(gram, n)
    labels, onehot, rewards = _labels_and_rewards(n, k, labels, rewards)
    if not 0 <= watch < n:
        raise ConfigError(f"watch={watch} is not an input index; use 0 <= watch < N={n}")
    watched = rewards[watch] if rewards is not None else pm1_rewards(k, int(labels[watch]))
    _check_positive(t_max, "t_max")

    def rhs(_t: float, state: np.ndarray) -> np.ndarray:
        return (gram @ _velocity(state.reshape(n, k), objective, onehot, rewards)).ravel()

    def jacobian(_t: float, state: np.ndarray) -> np.ndarray:
        z = state.reshape(n, k)
        blocks = [
            logit_gradient_jacobian(z[j], objective, int(labels[j]), None if rewards is None else rewards[j])
            for j in range(n)
        ]
        return np.block([[gram[i, j] * blocks[j] for j in range(n)] for i in range(n)])

    events = None
    if target is not None:
        if not float(target) < float(watched.max()):
            raise ConfigError(f"target expected reward {target} is not below the largest reward {watched.max()}")

        def reached(_t: float, state: np.ndarray) -> float:
            return float(expected_reward(state.reshape(n, k)[watch], watched)) - float(target)

        reached.terminal, reached.direction = terminal, 1
        events = [reached]
    if t_eval is not None:
        t_eval = np.asarray(t_eval, dtype=np.float64)
        t_max = float(t_eval[-1])
    solution = solve_ivp(
        rhs, (0.0, t_max), logits0.ravel(), method=method, t_eval=t_eval, events=events,
        rtol=rtol, atol=atol, **({"jac": jacobian} if method in ("Radau", "BDF", "LSODA") else {}),
    )  # fmt: skip
    if solution.status < 0:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    hits = solution.t_events[0] if events else np.empty(0)
    return FlowSolution(
        times=solution.t,
        logits=solution.y.T.reshape(-1, n, k),
        hit_time=float(hits[0]) if len(hits) else math.nan,
        nfev=int(solution.nfev),
    )


def hitting_time_ode(
    p0: float,
    num_labels: int,
    target: float,
    objective: str,
    t_max: float = T_MAX,
    method: str = METHOD,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> float:
    """Gradient-flow time for one input's expected reward ``2p − 1`` to reach ``target``, numerically.

    Integrates the full ``K``-dimensional logit flow (:func:`solve_flow`, LSODA, ``rtol = 1e-12``,
    ``atol = 1e-14``) from :func:`symmetric_logits` ``(p0, K)``, so it checks the symmetric
    reduction behind :func:`closed_form_hitting_time` rather than assuming it (Razin et al.,
    ICLR 2024, Theorem 2). Robust for ``p0`` from ``1e-8`` to ``0.5`` (agreement ≤ 4e-10).
    """
    check_objective(objective)
    k = check_num_labels(num_labels)
    check_start_and_target(p0, target)
    solution = solve_flow(
        symmetric_logits(p0, k), objective, target=target, t_max=t_max, method=method, rtol=rtol, atol=atol
    )
    if math.isnan(solution.hit_time):
        raise ConfigError(f"target {target} not reached by t_max={t_max:g}; raise t_max")
    return solution.hit_time


def solve_linear_model(
    weights0: np.ndarray,
    inputs: np.ndarray,
    objective: str,
    labels: int | np.ndarray,
    t_eval: np.ndarray,
    method: str = METHOD,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> np.ndarray:
    """Integrate :func:`linear_model_flow` in weight space; returns ``W(t)`` ``(T, K, D)`` at ``t_eval``.

    The reference the decoupling is tested against: ``W(t) x_i`` must equal the logits of
    :func:`solve_flow` with ``G = X Xᵀ`` (and, for orthonormal ``X``, of each input alone).
    """
    from scipy.integrate import solve_ivp

    weights0 = np.asarray(weights0, dtype=np.float64)
    shape = weights0.shape

    def rhs(_t: float, state: np.ndarray) -> np.ndarray:
        return linear_model_flow(state.reshape(shape), inputs, objective, labels).ravel()

    t_eval = np.asarray(t_eval, dtype=np.float64)
    solution = solve_ivp(
        rhs, (0.0, float(t_eval[-1])), weights0.ravel(), method=method, t_eval=t_eval, rtol=rtol, atol=atol
    )
    if solution.status < 0:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    return solution.y.T.reshape(-1, *shape)


# ---------------------------------------------------------------------------------------
# 4. The symmetric reduction and closed-form hitting times (sympy)
# ---------------------------------------------------------------------------------------


class SymmetricReduction(NamedTuple):
    """Theorem 2's one-dimensional ODEs in ``p``, their hitting times and asymptotics (sympy)."""

    p: sp.Symbol
    """``p = π[y*]`` (positive; the reduction holds for ``0 < p < 1``)."""
    p0: sp.Symbol
    """Initial ``p``."""
    p1: sp.Symbol
    """Target ``p``: ``(V_target + 1)/2``."""
    num_labels: sp.Symbol
    """``K``."""
    std0: sp.Symbol
    """``STD_0 = 2 sqrt(p0 (1 − p0))``."""
    rate: dict[str, sp.Expr]
    """``dp/dt`` per objective, derived from the ``K``-dimensional flow."""
    antiderivative: dict[str, sp.Expr]
    """``F(p)`` with ``dF/dp = 1/(dp/dt)``, by ``sympy.integrate``."""
    hitting_time: dict[str, sp.Expr]
    """``T = F(p1) − F(p0)`` as sympy derived it."""
    stable: dict[str, sp.Expr]
    """The same ``T`` arranged for float64: a sum of positive terms, ``(p1 − p0)`` factored out and
    ``logit p1 − logit p0 = log1p((p1 − p0)/(p0 (1 − p1)))``, so neither ``p0 → 0`` nor ``p0 → p1``
    cancels; proved equal to ``hitting_time``."""
    constant: dict[str, sp.Expr]
    """``c = lim STD_0² T_RFT`` and ``c' = lim T_SFT / ln(1/STD_0)`` as ``STD_0 → 0``."""


@cache
def symmetric_reduction() -> SymmetricReduction:
    r"""Derive the symmetric reduction of both flows and their closed-form hitting times.

    Start from logits with every wrong label equal (:math:`z_j = 0` for :math:`j \ne y^*`,
    :math:`z_{y^*} = u`); both flows keep them equal (the wrong entries of :math:`e_{y^*} - \pi` are all
    :math:`-\pi_w`), so :math:`u = z_{y^*} - z_w` carries the state and :math:`p = e^u / (e^u + K - 1)`,
    :math:`dp/du = p(1 - p)`:

    .. math::

        \text{RFT:}\quad \frac{du}{dt} &= 2p(1 - p) + 2p\,\pi_w = 2p(1 - p)\frac{K}{K - 1}
        \quad\Rightarrow\quad \frac{dp}{dt} = \frac{2K}{K - 1}\, p^2 (1 - p)^2 \\
        \text{SFT:}\quad \frac{du}{dt} &= (1 - p) + \pi_w = (1 - p)\frac{K}{K - 1}
        \quad\Rightarrow\quad \frac{dp}{dt} = \frac{K}{K - 1}\, p (1 - p)^2

    with :math:`\pi_w = (1 - p)/(K - 1)`. The hitting time of :math:`p_1 = (V_{\text{target}} + 1)/2` is
    :math:`T = \int_{p_0}^{p_1} dp \,/\, (dp/dt)`:

    .. math::

        T_{\text{RFT}} &= \frac{K - 1}{2K} \Big[ \frac{p_1 - p_0}{p_0 p_1} + \frac{p_1 - p_0}{(1 - p_0)(1 - p_1)}
            + 2 \ln \frac{p_1 (1 - p_0)}{p_0 (1 - p_1)} \Big] \\
        T_{\text{SFT}} &= \frac{K - 1}{K} \Big[ \ln \frac{p_1 (1 - p_0)}{p_0 (1 - p_1)}
            + \frac{p_1 - p_0}{(1 - p_0)(1 - p_1)} \Big]

    and, with :math:`p_0 = (1 - \sqrt{1 - \mathrm{STD}_0^2})/2`,
    :math:`T_{\text{RFT}} \sim c / \mathrm{STD}_0^2` and :math:`T_{\text{SFT}} \sim c' \ln(1/\mathrm{STD}_0)`
    with :math:`c = c' = 2(K - 1)/K` (Razin et al., ICLR 2024, Theorem 2; the constants are past the paper,
    docs/theorem2.md §3-5).
    :func:`symmetric_reduction_checks` proves every step. Built on first call (~1.5 s), cached.
    """
    import sympy as sp
    from sympy.codegen.cfunctions import log1p

    p, p0, p1, k, s = sp.symbols("p p_0 p_1 K STD_0", positive=True)
    u = sp.Symbol("u", real=True)
    normaliser = sp.exp(u) + k - 1
    pi_correct, pi_wrong = sp.exp(u) / normaliser, 1 / normaliser
    p_of_u = {sp.exp(u): (k - 1) * p / (1 - p)}  # invert p = e^u/(e^u + K − 1)
    velocities = {  # (dz_{y*}/dt, dz_w/dt) of the K-dimensional flows at the symmetric point
        "rft": (2 * pi_correct * (1 - pi_correct), 2 * pi_correct * (0 - pi_wrong)),
        "sft": (1 - pi_correct, 0 - pi_wrong),
    }
    rate, antiderivative, hitting_time, stable, constant = {}, {}, {}, {}, {}
    logit_gap = log1p((p1 - p0) / (p0 * (1 - p1)))  # logit(p1) − logit(p0), accurate for p0 → 0 and p0 → p1
    tail = (p1 - p0) / ((1 - p0) * (1 - p1))  # 1/(1 − p1) − 1/(1 − p0)
    stable["rft"] = (k - 1) / (2 * k) * ((p1 - p0) / (p0 * p1) + tail + 2 * logit_gap)
    stable["sft"] = (k - 1) / k * (logit_gap + tail)
    p0_of_std = (1 - sp.sqrt(1 - s**2)) / 2
    for name, (v_correct, v_wrong) in velocities.items():
        du_dt = v_correct - v_wrong
        dp_dt = sp.diff(pi_correct, u) * du_dt
        rate[name] = sp.factor(sp.simplify(dp_dt.subs(p_of_u)))
        integral = sp.integrate(sp.apart(1 / rate[name], p), p)
        # sympy writes log(p − 1) (complex for p < 1); log(1 − p) differs by the constant iπ.
        integral = integral.replace(lambda e: isinstance(e, sp.log) and e.args[0] == p - 1, lambda e: sp.log(1 - p))
        antiderivative[name] = integral
        hitting_time[name] = integral.subs(p, p1) - integral.subs(p, p0)
        at_std = stable[name].subs(p0, p0_of_std)
        scale = s**2 if name == "rft" else 1 / sp.log(1 / s)
        constant[name] = sp.simplify(sp.limit(at_std * scale, s, 0, "+"))
    return SymmetricReduction(p, p0, p1, k, s, rate, antiderivative, hitting_time, stable, constant)


def symmetric_reduction_checks() -> dict[str, bool]:
    """Exact checks of :func:`symmetric_reduction`, each ``True`` when sympy simplifies to 0.

    ``rate_<obj>``: ``dp/dt`` equals the stated polynomial; ``antiderivative_<obj>``:
    ``dF/dp = 1/(dp/dt)``; ``stable_<obj>``: the float64 arrangement equals ``F(p1) − F(p0)`` (same
    derivative in ``p0``, both zero at ``p0 = p1``); ``constant_<obj>``: the limit is ``2(K − 1)/K``.
    """
    import sympy as sp

    r = symmetric_reduction()
    p, k = r.p, r.num_labels
    stated = {"rft": 2 * k / (k - 1) * p**2 * (1 - p) ** 2, "sft": k / (k - 1) * p * (1 - p) ** 2}
    checks = {}
    for name in OBJECTIVES:
        checks[f"rate_{name}"] = sp.simplify(r.rate[name] - stated[name]) == 0
        checks[f"antiderivative_{name}"] = sp.simplify(sp.diff(r.antiderivative[name], p) - 1 / r.rate[name]) == 0
        # equal derivatives in p0, and both vanish at p0 = p1
        difference = r.stable[name].rewrite(sp.log) - r.hitting_time[name]
        same_slope = sp.simplify(sp.diff(difference, r.p0)) == 0
        checks[f"stable_{name}"] = same_slope and sp.simplify(difference.subs(r.p0, r.p1)) == 0
        checks[f"constant_{name}"] = sp.simplify(r.constant[name] - 2 * (k - 1) / k) == 0
    return checks


@cache
def _closed_form_functions() -> dict[str, Callable[..., Any]]:
    import sympy as sp

    r = symmetric_reduction()
    functions = {}
    for name in OBJECTIVES:
        functions[f"time_{name}"] = sp.lambdify([r.p0, r.p1, r.num_labels], r.stable[name], modules="numpy")
        functions[f"constant_{name}"] = sp.lambdify([r.num_labels], r.constant[name], modules="numpy")
    return functions


def target_probability(target: float | np.ndarray) -> np.ndarray:
    """``p1 = (V_target + 1)/2``: the correct label's probability at expected reward ``V_target``."""
    return (np.asarray(target, dtype=np.float64) + 1) / 2


def std_from_p0(p0: float | np.ndarray) -> np.ndarray:
    """``STD_0 = 2 sqrt(p0 (1 − p0))``, the reward std of the ±1 reward at ``p = p0``."""
    p0 = np.asarray(p0, dtype=np.float64)
    return 2 * np.sqrt(p0 * (1 - p0))


def closed_form_hitting_time(
    p0: float | np.ndarray, num_labels: int | np.ndarray, target: float | np.ndarray, objective: str
) -> np.ndarray:
    r"""Theorem 2's hitting times in closed form (symmetric reduction), broadcast over the arguments.

    .. math::

        T_{\text{RFT}} &= \frac{K - 1}{2K} \Big[ \frac{1}{p_0} - \frac{1}{p_1} + \frac{1}{1 - p_1} - \frac{1}{1 - p_0}
            + 2 \big(\operatorname{logit} p_1 - \operatorname{logit} p_0\big) \Big] \\
        T_{\text{SFT}} &= \frac{K - 1}{K} \Big[ \operatorname{logit} p_1 - \operatorname{logit} p_0
            + \frac{1}{1 - p_1} - \frac{1}{1 - p_0} \Big]

    with :math:`p_1 = (V_{\text{target}} + 1)/2`, evaluated from :func:`symmetric_reduction`'s float64
    arrangement (every bracketed term positive; ``logit p1 − logit p0 = log1p((p1 − p0)/(p0(1 − p1)))``),
    accurate to a few ulps from ``p0 = 1e-300`` to ``p0`` just below ``p1``. Razin et al., ICLR 2024, Theorem 2.
    """
    check_objective(objective)
    p0, target = check_start_and_target(p0, target)
    k = np.asarray(num_labels)
    for value in np.unique(k):
        check_num_labels(value)
    return np.asarray(_closed_form_functions()[f"time_{objective}"](p0, target_probability(target), k))


def asymptotic_constant(num_labels: int | np.ndarray, objective: str) -> np.ndarray:
    r"""``c = lim STD_0² T_RFT`` or ``c' = lim T_SFT / ln(1/STD_0)`` as ``STD_0 → 0``: both ``2(K − 1)/K``.

    .. math::

        c = \lim_{\mathrm{STD}_0 \to 0} \mathrm{STD}_0^2\, T_{\text{RFT}}, \qquad
        c' = \lim_{\mathrm{STD}_0 \to 0} \frac{T_{\text{SFT}}}{\ln(1/\mathrm{STD}_0)}, \qquad
        c = c' = \frac{2(K - 1)}{K}

    The constants of Theorem 2's rates (Razin et al., ICLR 2024, Theorem 2; their values are past the
    paper, docs/theorem2.md §5), from :func:`symmetric_reduction`.
    """
    check_objective(objective)
    return np.asarray(_closed_form_functions()[f"constant_{objective}"](np.asarray(num_labels)), dtype=np.float64)


def asymptotic_hitting_time(std0: float | np.ndarray, num_labels: int | np.ndarray, objective: str) -> np.ndarray:
    r"""The leading term as ``STD_0 → 0``: ``c / STD_0²`` (RFT) or ``c' ln(1/STD_0)`` (SFT).

    .. math::

        T_{\text{RFT}} \sim \frac{c}{\mathrm{STD}_0^2}, \qquad T_{\text{SFT}} \sim c' \ln \frac{1}{\mathrm{STD}_0}

    with the constants of :func:`asymptotic_constant` (Razin et al., ICLR 2024, Theorem 2: RFT is slow where
    SFT is fast).
    """
    std0 = np.asarray(std0, dtype=np.float64)
    shape = 1 / std0**2 if objective == "rft" else np.log(1 / std0)
    return asymptotic_constant(num_labels, objective) * shape


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``ln y`` against ``ln x`` (``-2`` for ``y ∝ 1/x²``)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.size < 2 or not np.all((x > 0) & (y > 0)):
        raise ConfigError("a log-log slope needs at least two points with positive x and y of one shape")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# ---------------------------------------------------------------------------------------
# 5. Discrete steps: gradient ascent and Adam on the same objectives
# ---------------------------------------------------------------------------------------


def discrete_hitting_steps(
    p0: float | np.ndarray,
    num_labels: int,
    target: float | np.ndarray,
    objective: str,
    step_size: float | np.ndarray,
    optimizer: str = "sgd",
    max_steps: int = 1_000_000,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> np.ndarray:
    """Steps ``n`` until the expected reward ``2p − 1`` reaches ``target``; ``-1`` if not in ``max_steps``.

    Runs on the full logits ``z ∈ ℝ^K`` from :func:`symmetric_logits`, one replica per broadcast
    element of ``(p0, target, step_size)``:

    * ``"sgd"`` (full-batch gradient steps): ``z ← z + η g(z)`` with ``g`` the flow's velocity;
      ``n · η → T_flow`` as ``η → 0`` (forward Euler on the flow, error O(η));
    * ``"adam"``: ``m ← β1 m + (1 − β1) g``, ``v ← β2 v + (1 − β2) g²``,
      ``z ← z + η m̂ / (sqrt(v̂) + ε)`` with bias corrections ``m̂ = m/(1 − β1^n)``, ``v̂ = v/(1 − β2^n)``
      (torch's defaults). Its per-coordinate normalisation largely cancels the ``2p`` factor of
      RFT's gradient, so ``n · η`` grows like ``ln(1/STD_0)`` until ``|g| ≲ ε``; it is not a flow
      limit of Theorem 2 but shows what an adaptive optimiser does to the ``1/STD_0²`` law.
    """
    check_objective(objective)
    k = check_num_labels(num_labels)
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer {optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}")
    p0, target = check_start_and_target(p0, target)
    step_size = _check_positive(step_size, "step size")
    p0, target, step_size = np.broadcast_arrays(p0, target, step_size)
    shape = p0.shape
    p0, target, step_size = p0.ravel(), target.ravel(), step_size.ravel()[:, None]  # (R,), (R,), (R, 1)
    logits = np.stack([symmetric_logits(float(q), k) for q in p0])  # (R, K), correct label 0
    onehot = _one_hot(0, k)  # (K,)
    first, second = np.zeros_like(logits), np.zeros_like(logits)
    steps = np.full(len(p0), -1, dtype=np.int64)
    active = np.ones(len(p0), dtype=bool)
    for n in range(1, max_steps + 1):
        grad = _velocity(logits, objective, onehot, None)  # (R, K)
        if optimizer == "sgd":
            update = step_size * grad
        else:
            first = betas[0] * first + (1 - betas[0]) * grad
            second = betas[1] * second + (1 - betas[1]) * grad**2
            corrected = first / (1 - betas[0] ** n)
            update = step_size * corrected / (np.sqrt(second / (1 - betas[1] ** n)) + eps)
        logits = np.where(active[:, None], logits + update, logits)
        reached = active & (2 * softmax(logits)[:, 0] - 1 >= target)
        steps[reached] = n
        active &= ~reached
        if not active.any():
            break
    return steps.reshape(shape)


def p0_grid(p0_min: float, p0_max: float, points_per_decade: int) -> np.ndarray:
    """Log-spaced ``p0`` from ``p0_min`` to ``p0_max`` (both included), ``points_per_decade`` per decade."""
    check_probability([p0_min, p0_max])
    if not p0_min < p0_max or points_per_decade < 1:
        raise ConfigError(
            f"p0 grid needs p0_min < p0_max and points_per_decade >= 1, got {p0_min}, {p0_max}, {points_per_decade}"
        )
    decades = math.log10(p0_max / p0_min)
    return np.geomspace(p0_min, p0_max, max(2, math.ceil(decades * points_per_decade) + 1))

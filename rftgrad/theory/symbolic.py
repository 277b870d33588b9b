"""Symbolic (sympy) derivations behind Theorem 1 (docs/paper.md §2).

Razin et al., "Vanishing Gradients in Reinforcement Finetuning of Language Models",
ICLR 2024 (arXiv 2310.20703), Theorem 1: ``||∇_θ V(x;θ)|| ≤ 6 · L · γ(x;θ) · STD(x;θ)^(2/3)``.
This module redoes, with exact computer algebra, the small algebraic steps that the bound
and its sharpened forms rest on. Each derivation is a function that builds sympy
expressions when called (nothing is computed at import; results are cached), a check
that the identity holds exactly, and a helper that turns the expressions into numpy
functions so tests can compare them with torch and with :func:`rftgrad.theory.exact`.

1. :func:`softmax_value_gradient`: the policy gradient of a softmax over ``K`` outputs,
   ``∂V/∂z_j = p_j (r_j − V)`` (the logit-space form of ``∇V = E[(r − V) ∇ log p]``).
2. :func:`variance_gap`: ``||p ⊙ (r − V)||² ≤ max_i p_i · Var(r)``, because the gap is
   ``Σ_i p_i (max p − p_i)(r_i − V)²``, a sum of nonnegative terms (the one-token /
   tabular bound of docs/paper.md §2, past the paper).
3. :func:`chebyshev_threshold_bound`: the threshold step of the proof of Theorem 1
   (appendix of the paper), where the exponent 2/3 and the constant 6 come from.
4. :func:`martingale_variance_identity`: for ``L = 2``, ``Var(r) = Var_1 + Var_2``, the
   variance identity of the martingale decomposition (docs/paper.md §2, past the paper).

Numeric helpers (``lambdify_*``) take float64 arrays whose *trailing* axes index the
symbols (``(..., K)`` for a vector, ``(..., V, V)`` for a matrix); leading axes
broadcast, so one call evaluates a whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
import sympy as sp

from rftgrad.errors import ConfigError, ShapeMismatchError

__all__ = [
    "ArrayFunction",
    "SoftmaxGradient",
    "softmax_value_gradient",
    "softmax_gradient_identity_holds",
    "SoftmaxGradientFunctions",
    "lambdify_softmax_gradient",
    "VarianceGap",
    "variance_gap",
    "variance_gap_identity_holds",
    "VarianceBoundFunctions",
    "lambdify_variance_bound",
    "ChebyshevThreshold",
    "chebyshev_threshold_bound",
    "lambdify_chebyshev_bound",
    "MartingaleVariance",
    "martingale_variance_identity",
    "martingale_variance_identity_holds",
    "MartingaleVarianceFunctions",
    "lambdify_martingale_variance",
]

#: A numpy function of float64 arrays, as the ``lambdify_*`` functions build them (:func:`lambdify_softmax_gradient`).
ArrayFunction = Callable[..., np.ndarray]


# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------


def _check_size(value: int, name: str, minimum: int = 2) -> int:
    value = int(value)
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _array_function(
    arguments: Sequence[tuple[tuple[sp.Symbol, ...], tuple[int, ...]]],
    output: sp.Expr | Sequence[sp.Expr],
) -> ArrayFunction:
    """Lambdify ``output`` into a numpy function of arrays.

    Args:
        * ``arguments``: one entry per function argument: the flat tuple of symbols it carries
          and the trailing shape of the array that holds them (``()`` for a scalar, ``(K,)``
          for a vector, ``(V, V)`` for a matrix, symbols in row-major order).
        * ``output``: one expression (the function returns the broadcast leading shape) or a
          sequence of them (the function returns that shape plus a last axis over them).
    """
    several = not isinstance(output, sp.Basic)
    exprs = list(output) if several else [output]
    raw = sp.lambdify([symbols for symbols, _ in arguments], exprs, modules="numpy")

    def evaluate(*arrays: np.ndarray) -> np.ndarray:
        if len(arrays) != len(arguments):
            raise ShapeMismatchError(f"expected {len(arguments)} arrays, got {len(arrays)}")
        columns, leading = [], []
        for array, (symbols, shape) in zip(arrays, arguments, strict=True):
            array = np.asarray(array, dtype=np.float64)
            lead = array.shape[: array.ndim - len(shape)]
            if array.ndim < len(shape) or array.shape[array.ndim - len(shape) :] != shape:
                raise ShapeMismatchError(f"array of shape {array.shape} does not end in {shape}")
            flat = array.reshape(*lead, len(symbols))
            columns.append(tuple(np.moveaxis(flat, -1, 0)))  # one array of shape `lead` per symbol
            leading.append(lead)
        batch = np.broadcast_shapes(*leading)
        values = [np.broadcast_to(np.asarray(v, dtype=np.float64), batch) for v in raw(*columns)]
        return np.stack(values, axis=-1) if several else values[0]

    return evaluate


# ---------------------------------------------------------------------------------------
# 1. The softmax policy gradient: ∂V/∂z_j = p_j (r_j − V)
# ---------------------------------------------------------------------------------------


class SoftmaxGradient(NamedTuple):
    """The value of a softmax policy over ``K`` outputs and its gradient, two ways."""

    logits: tuple[sp.Symbol, ...]
    """``z_1 … z_K``."""
    rewards: tuple[sp.Symbol, ...]
    """``r_1 … r_K``."""
    gradient: sp.ImmutableMatrix
    """``(∂V/∂z_1, …, ∂V/∂z_K)`` by ``sympy.diff`` of ``V(z) = Σ_i softmax(z)_i r_i``."""
    closed_form: sp.ImmutableMatrix
    """``p ⊙ (r − V)`` with ``p = softmax(z)``."""


@cache
def softmax_value_gradient(num_outputs: int) -> SoftmaxGradient:
    r"""The policy gradient of one softmax, by differentiation and in closed form.

    With logits ``z ∈ ℝ^K``, ``p = softmax(z)``, rewards ``r ∈ ℝ^K`` and
    ``V(z) = Σ_i p_i r_i``, the softmax Jacobian ``∂p_i/∂z_j = p_i (δ_ij − p_j)`` gives

    .. math::

        \frac{\partial V}{\partial z_j} = \sum_i r_i\, p_i (\delta_{ij} - p_j) = p_j (r_j - V),
        \quad\text{i.e.}\quad \nabla_z V = p \odot (r - V).

    This is the logit-space form of the policy gradient ``∇V = E_y[(r − V) ∇ log p(y)]``
    (Razin et al., ICLR 2024, Section 3 and the proof of Theorem 1; docs/paper.md §2,
    one token). :func:`softmax_gradient_identity_holds` proves the two forms equal.
    """
    k = _check_size(num_outputs, "num_outputs")
    z = sp.symbols(f"z1:{k + 1}", real=True)
    r = sp.symbols(f"r1:{k + 1}", real=True)
    normaliser = sum(sp.exp(zi) for zi in z)
    p = [sp.exp(zi) / normaliser for zi in z]
    value = sum(pi * ri for pi, ri in zip(p, r, strict=True))
    gradient = sp.ImmutableMatrix([sp.diff(value, zj) for zj in z])
    closed_form = sp.ImmutableMatrix([p[j] * (r[j] - value) for j in range(k)])
    return SoftmaxGradient(z, r, gradient, closed_form)


def softmax_gradient_identity_holds(num_outputs: int) -> bool:
    """``sympy.simplify(∂V/∂z_j − p_j (r_j − V)) == 0`` for every ``j`` (exact, symbolic)."""
    derivation = softmax_value_gradient(num_outputs)
    return all(sp.simplify(d - c) == 0 for d, c in zip(derivation.gradient, derivation.closed_form, strict=True))


class SoftmaxGradientFunctions(NamedTuple):
    """Numeric ``f(z, r) -> (..., K)``: ``z, r`` of shape ``(..., K)``."""

    derivative: ArrayFunction
    """The sympy derivative ``∂V/∂z``."""
    closed_form: ArrayFunction
    """``p ⊙ (r − V)``."""


@cache
def lambdify_softmax_gradient(num_outputs: int) -> SoftmaxGradientFunctions:
    """Both forms of :func:`softmax_value_gradient` as numpy functions of ``(z, r)``.

    The expressions use ``exp(z_i)`` unshifted: keep ``|z| ≲ 700`` in float64.
    """
    derivation = softmax_value_gradient(num_outputs)
    k = len(derivation.logits)
    arguments = [(derivation.logits, (k,)), (derivation.rewards, (k,))]
    return SoftmaxGradientFunctions(
        derivative=_array_function(arguments, list(derivation.gradient)),
        closed_form=_array_function(arguments, list(derivation.closed_form)),
    )


# ---------------------------------------------------------------------------------------
# 2. ||p ⊙ (r − V)||² ≤ max p · Var(r)
# ---------------------------------------------------------------------------------------


class VarianceGap(NamedTuple):
    """Both sides of ``||p ⊙ (r − V)||² ≤ m · Var(r)`` with ``m`` standing for ``max_i p_i``."""

    probs: tuple[sp.Symbol, ...]
    """``p_1 … p_K`` (nonnegative)."""
    rewards: tuple[sp.Symbol, ...]
    """``r_1 … r_K``."""
    max_prob: sp.Symbol
    """``m``, standing for ``max_i p_i`` (so ``m ≥ p_i`` for every ``i``)."""
    squared_norm: sp.Expr
    """``||p ⊙ (r − V)||² = Σ_i p_i² (r_i − V)²``, ``V = Σ_i p_i r_i``."""
    bound: sp.Expr
    """``m · Var(r) = m · Σ_i p_i (r_i − V)²``."""
    gap: sp.Expr
    """``bound − squared_norm``."""
    gap_terms: sp.Expr
    """``Σ_i p_i (m − p_i)(r_i − V)²``: each term is ``≥ 0`` because ``m ≥ p_i ≥ 0``."""


@cache
def variance_gap(num_outputs: int) -> VarianceGap:
    r"""The one-token logit-space bound and the sum of nonnegative terms that proves it.

    For a distribution ``p`` over ``K`` outputs with rewards ``r``, ``V = Σ_i p_i r_i``,
    ``Var(r) = Σ_i p_i (r_i − V)²`` and ``m = max_i p_i``:

    .. math::

        m \cdot \mathrm{Var}(r) - \lVert p \odot (r - V) \rVert^2 = \sum_i p_i (m - p_i) (r_i - V)^2 \ge 0,

    so ``||∇_z V|| = ||p ⊙ (r − V)|| ≤ sqrt(max_i p_i) · STD ≤ STD`` (docs/paper.md §2,
    "one token (L = 1), or separate parameters per prefix"; past the paper). The identity
    is a polynomial identity in ``p, r, m`` (it does not even need ``Σ_i p_i = 1``; that is
    what makes ``V`` and ``Var`` the mean and variance). :func:`variance_gap_identity_holds`
    proves it.
    """
    k = _check_size(num_outputs, "num_outputs")
    p = sp.symbols(f"p1:{k + 1}", nonnegative=True)
    r = sp.symbols(f"r1:{k + 1}", real=True)
    m = sp.Symbol("m", nonnegative=True)
    value = sum(pi * ri for pi, ri in zip(p, r, strict=True))
    squared_norm = sum(pi**2 * (ri - value) ** 2 for pi, ri in zip(p, r, strict=True))
    bound = m * sum(pi * (ri - value) ** 2 for pi, ri in zip(p, r, strict=True))
    gap_terms = sum(pi * (m - pi) * (ri - value) ** 2 for pi, ri in zip(p, r, strict=True))
    return VarianceGap(p, r, m, squared_norm, bound, bound - squared_norm, gap_terms)


def variance_gap_identity_holds(num_outputs: int) -> bool:
    """``expand(m · Var − ||p ⊙ (r − V)||²) − expand(Σ_i p_i (m − p_i)(r_i − V)²)`` simplifies to 0."""
    derivation = variance_gap(num_outputs)
    return sp.simplify(sp.expand(derivation.gap) - sp.expand(derivation.gap_terms)) == 0


class VarianceBoundFunctions(NamedTuple):
    """Numeric ``f(p, r) -> (...)``: ``p, r`` of shape ``(..., K)``, ``m = max_i p_i``."""

    squared_norm: ArrayFunction
    """``||p ⊙ (r − V)||²``."""
    bound: ArrayFunction
    """``max_i p_i · Var(r)``."""
    gap_terms: ArrayFunction
    """``Σ_i p_i (max p − p_i)(r_i − V)²``."""


@cache
def lambdify_variance_bound(num_outputs: int) -> VarianceBoundFunctions:
    """Both sides of :func:`variance_gap` and its gap as numpy functions of ``(p, r)``."""
    derivation = variance_gap(num_outputs)
    k = len(derivation.probs)
    max_p = {derivation.max_prob: sp.Max(*derivation.probs)}
    arguments = [(derivation.probs, (k,)), (derivation.rewards, (k,))]
    return VarianceBoundFunctions(
        squared_norm=_array_function(arguments, derivation.squared_norm),
        bound=_array_function(arguments, derivation.bound.subs(max_p)),
        gap_terms=_array_function(arguments, derivation.gap_terms.subs(max_p)),
    )


# ---------------------------------------------------------------------------------------
# 3. The Chebyshev threshold step of Theorem 1: exponent 2/3, constant 6
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChebyshevThreshold:
    """The threshold bound ``B(t) = 2Lγ (t + 2 STD²/t²)`` and what follows from it."""

    length: sp.Symbol
    """``L``."""
    gamma: sp.Symbol
    """``γ``."""
    std: sp.Symbol
    """``STD`` (positive)."""
    threshold: sp.Symbol
    """``t`` (positive), the cut on ``|r − V|``."""
    exponent_symbol: sp.Symbol
    """``a`` in the trial threshold ``t = STD^a``."""
    bound: sp.Expr
    """``B(t) = 2Lγ (t + 2 STD²/t²)``."""
    term_exponents: tuple[sp.Expr, sp.Expr]
    """Powers of ``STD`` in the two terms of ``B(STD^a)``: ``(a, 2 − 2a)``."""
    exponent: sp.Rational
    """The balancing ``a``: ``2/3``."""
    balanced_constant: sp.Expr
    """``B(STD^(2/3)) / (Lγ STD^(2/3))``: the paper's ``6``."""
    optimal_threshold: sp.Expr
    """``t* = argmin_{t>0} B(t) = (4 STD²)^(1/3) = 2^(2/3) STD^(2/3)``."""
    optimal_bound: sp.Expr
    """``B(t*) = 3 · 2^(2/3) · Lγ STD^(2/3)``."""
    optimal_constant: sp.Expr
    """``c* = B(t*) / (Lγ STD^(2/3)) = 3 · 2^(2/3) = 3 · 4^(1/3) ≈ 4.762``."""
    optimal_exponent: sp.Expr
    """The power of ``STD`` in ``B(t*)``: ``2/3`` again."""


def _power_of(expr: sp.Expr, symbol: sp.Symbol) -> sp.Expr:
    """The exponent ``e`` of a monomial ``c · symbol^e``: ``d log(expr) / d log(symbol)``."""
    return sp.simplify(symbol * sp.diff(expr, symbol) / expr)


@cache
def chebyshev_threshold_bound() -> ChebyshevThreshold:
    r"""The threshold step in the proof of Theorem 1 (Razin et al., ICLR 2024, appendix).

    The reconstruction (docs/paper.md §2 states only the result). Writing
    ``∇V = Σ_y (r(y) − V) ∇p(y)`` (``Σ_y ∇p(y) = 0`` lets ``V`` be subtracted) and
    ``∇p(y) = p(y) ∇ log p(y)`` with

    .. math::

        \lVert \nabla \log p(y) \rVert \le \sum_l \lVert J_l \rVert_2\, \lVert e_{y_l} - \pi_l \rVert
        \le L \cdot \gamma \cdot 2,

    gives ``Σ_{y ∈ S} ||∇p(y)|| ≤ 2Lγ · P(S)`` for any set of outputs ``S``. Split the outputs
    at a threshold ``t > 0`` on ``|r − V|``:

    * ``|r − V| < t``: these contribute at most ``t · 2Lγ``;
    * ``|r − V| ≥ t``: ``|r − V| ≤ 2`` (rewards in ``[−1, 1]``) and, by Chebyshev,
      ``P(|r − V| ≥ t) ≤ STD²/t²``, so they contribute at most ``2 · 2Lγ · STD²/t²``.

    Hence ``||∇V|| ≤ B(t) := 2Lγ (t + 2 STD²/t²)`` for every ``t > 0``. This function derives,
    exactly:

    (a) with ``t = STD^a`` the two terms scale as ``STD^a`` and ``STD^(2−2a)``; they balance
        at ``a = 2/3``, the paper's exponent;
    (b) ``B(STD^(2/3)) = 2Lγ (1 + 2) STD^(2/3) = 6 Lγ STD^(2/3)``, the paper's constant 6;
    (c) ``B'(t) = 2Lγ (1 − 4 STD²/t³) = 0`` at ``t* = (4 STD²)^(1/3)`` (a minimum,
        ``B'' > 0``), where ``B(t*) = 3Lγ t* = 3 · 2^(2/3) · Lγ STD^(2/3)``: the best constant
        this argument can give is ``c* = 3 · 4^(1/3) ≈ 4.762 = 6 · 2^(−1/3)``, with the same
        exponent 2/3. The paper's 6 is the value at the convenient threshold ``t = STD^(2/3)``.

    Remark (past the paper): ``||e_y − π||² = (1 − π_y)² + Σ_{j≠y} π_j² ≤ 2(1 − π_y)² ≤ 2``, so
    the factor 2 in ``||∇ log p|| ≤ 2Lγ`` could be ``√2``, scaling every constant above by
    ``1/√2``. The martingale form ``||∇V|| ≤ γ sqrt(L) STD`` (docs/paper.md §2) is sharper still.
    """
    length, gamma = sp.symbols("L gamma", positive=True)
    std, t = sp.symbols("STD t", positive=True)
    a = sp.Symbol("a", real=True)
    near, far = 2 * length * gamma * t, 2 * 2 * length * gamma * std**2 / t**2
    bound = near + far

    # (a) Powers of STD in the two terms at t = STD^a, and the a that equalises them.
    term_exponents = tuple(_power_of(sp.powsimp(term.subs(t, std**a), force=True), std) for term in (near, far))
    (exponent,) = sp.solve(sp.Eq(*term_exponents), a)

    # (b) The constant at the balancing threshold t = STD^(2/3).
    scale = length * gamma * std ** sp.Rational(2, 3)
    balanced_constant = sp.simplify(bound.subs(t, std**exponent) / scale)

    # (c) The exact minimiser over t > 0 (t is declared positive, so solve keeps the real root).
    (optimal_threshold,) = sp.solve(sp.diff(bound, t), t)
    if not sp.simplify(sp.diff(bound, t, 2).subs(t, optimal_threshold)).is_positive:  # pragma: no cover
        raise ArithmeticError("the critical point of B(t) is not a minimum")
    optimal_bound = sp.simplify(bound.subs(t, optimal_threshold))
    return ChebyshevThreshold(
        length=length,
        gamma=gamma,
        std=std,
        threshold=t,
        exponent_symbol=a,
        bound=bound,
        term_exponents=term_exponents,
        exponent=exponent,
        balanced_constant=balanced_constant,
        optimal_threshold=optimal_threshold,
        optimal_bound=optimal_bound,
        optimal_constant=sp.simplify(optimal_bound / scale),
        optimal_exponent=_power_of(optimal_bound, std),
    )


@cache
def lambdify_chebyshev_bound() -> ArrayFunction:
    """``B(t) = 2Lγ (t + 2 STD²/t²)`` as a numpy function ``f(t, length, gamma, std)`` (broadcasting)."""
    derivation = chebyshev_threshold_bound()
    symbols = (derivation.threshold, derivation.length, derivation.gamma, derivation.std)
    return _array_function([((symbol,), ()) for symbol in symbols], derivation.bound)


# ---------------------------------------------------------------------------------------
# 4. The martingale variance identity for L = 2: Var(r) = Var_1 + Var_2
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MartingaleVariance:
    """Two-token outputs ``(a, b)`` over a vocabulary of size ``V``, fully symbolic."""

    first: tuple[sp.Symbol, ...]
    """``q_a = p(y_1 = a)``."""
    second: sp.ImmutableMatrix
    """``π_ab = p(y_2 = b | y_1 = a)``, ``(V, V)``."""
    rewards: sp.ImmutableMatrix
    """``r_ab = r(a, b)``, ``(V, V)``."""
    q1: tuple[sp.Expr, ...]
    """``Q_1(a) = E[r | y_1 = a] = Σ_b π_ab r_ab``."""
    value: sp.Expr
    """``V = Σ_a q_a Q_1(a)``."""
    var_total: sp.Expr
    """``Var(r) = Σ_ab q_a π_ab (r_ab − V)²``."""
    var_1: sp.Expr
    """``Var_1 = Σ_a q_a (Q_1(a) − V)²``."""
    var_2: sp.Expr
    """``Var_2 = Σ_a q_a Σ_b π_ab (r_ab − Q_1(a))²``."""
    normalisation: dict[sp.Symbol, sp.Expr]
    """``q_V = 1 − Σ_{a<V} q_a`` and ``π_aV = 1 − Σ_{b<V} π_ab``: the last probability of each
    distribution written through the others (the constraints ``Σ q = Σ_b π_ab = 1``)."""


@cache
def martingale_variance_identity(vocab_size: int = 2) -> MartingaleVariance:
    r"""The variance identity of the martingale decomposition for ``L = 2``.

    With first-token probabilities ``q_a``, conditional second-token probabilities
    ``π_ab``, rewards ``r_ab`` and ``Q_1(a) = Σ_b π_ab r_ab``, ``V = Σ_a q_a Q_1(a)``:

    .. math::

        \mathrm{Var}(r) &= \sum_{a,b} q_a \pi_{ab} (r_{ab} - V)^2 \\
        &= \sum_a q_a (Q_1(a) - V)^2 + \sum_a q_a \sum_b \pi_{ab} (r_{ab} - Q_1(a))^2
        = \mathrm{Var}_1 + \mathrm{Var}_2,

    the law of total variance, i.e. ``Σ_l E[Var(Q_l | y_<l)] = Var(r)`` of docs/paper.md §2
    (past the paper) at ``L = 2``. It needs the normalisation ``Σ_a q_a = 1`` and
    ``Σ_b π_ab = 1`` (the cross term ``2 Σ_ab q_a π_ab (r_ab − Q_1(a))(Q_1(a) − V)`` vanishes
    because ``Σ_b π_ab (r_ab − Q_1(a)) = 0``). :func:`martingale_variance_identity_holds`
    proves it. ``Var_1, Var_2`` are what :func:`rftgrad.theory.exact` reports as
    ``position_variance``.
    """
    v = _check_size(vocab_size, "vocab_size")
    q = sp.symbols(f"q0:{v}", nonnegative=True)
    pi = sp.ImmutableMatrix(v, v, lambda a, b: sp.Symbol(f"pi_{a}{b}", nonnegative=True))
    r = sp.ImmutableMatrix(v, v, lambda a, b: sp.Symbol(f"r_{a}{b}", real=True))
    q1 = tuple(sum(pi[a, b] * r[a, b] for b in range(v)) for a in range(v))
    value = sum(q[a] * q1[a] for a in range(v))
    var_total = sum(q[a] * pi[a, b] * (r[a, b] - value) ** 2 for a in range(v) for b in range(v))
    var_1 = sum(q[a] * (q1[a] - value) ** 2 for a in range(v))
    var_2 = sum(q[a] * sum(pi[a, b] * (r[a, b] - q1[a]) ** 2 for b in range(v)) for a in range(v))
    normalisation = {q[-1]: 1 - sum(q[:-1])}
    normalisation.update({pi[a, v - 1]: 1 - sum(pi[a, b] for b in range(v - 1)) for a in range(v)})
    return MartingaleVariance(q, pi, r, q1, value, var_total, var_1, var_2, normalisation)


def martingale_variance_identity_holds(vocab_size: int = 2) -> bool:
    """``Var(r) − Var_1 − Var_2``, with the normalisation substituted, simplifies to 0."""
    derivation = martingale_variance_identity(vocab_size)
    residual = (derivation.var_total - derivation.var_1 - derivation.var_2).subs(derivation.normalisation)
    return sp.simplify(sp.expand(residual)) == 0


class MartingaleVarianceFunctions(NamedTuple):
    """Numeric ``f(q, pi, r) -> (...)``: ``q`` ``(..., V)``, ``pi`` and ``r`` ``(..., V, V)``."""

    var_1: ArrayFunction
    """``Σ_a q_a (Q_1(a) − V)²``."""
    var_2: ArrayFunction
    """``Σ_a q_a Σ_b π_ab (r_ab − Q_1(a))²``."""
    var_total: ArrayFunction
    """``Σ_ab q_a π_ab (r_ab − V)²``."""


@cache
def lambdify_martingale_variance(vocab_size: int = 2) -> MartingaleVarianceFunctions:
    """``Var_1``, ``Var_2`` and ``Var(r)`` of :func:`martingale_variance_identity` as numpy
    functions (unconstrained: pass normalised ``q`` and rows of ``pi``)."""
    derivation = martingale_variance_identity(vocab_size)
    v = len(derivation.first)
    arguments = [
        (derivation.first, (v,)),
        (tuple(derivation.second), (v, v)),
        (tuple(derivation.rewards), (v, v)),
    ]
    return MartingaleVarianceFunctions(
        var_1=_array_function(arguments, derivation.var_1),
        var_2=_array_function(arguments, derivation.var_2),
        var_total=_array_function(arguments, derivation.var_total),
    )

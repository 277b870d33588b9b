"""The sympy derivations of rftgrad.theory.symbolic: exact identities, and their numeric
forms against torch autograd, plain numpy, scipy and the exact engine."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from scipy.optimize import minimize_scalar

from rftgrad.envs import BanditEnv, SequenceEnv
from rftgrad.errors import ShapeMismatchError
from rftgrad.models import TabularPolicy
from rftgrad.theory.exact import exact
from rftgrad.theory.symbolic import (
    chebyshev_threshold_bound,
    lambdify_chebyshev_bound,
    lambdify_martingale_variance,
    lambdify_softmax_gradient,
    lambdify_variance_bound,
    martingale_variance_identity,
    martingale_variance_identity_holds,
    softmax_gradient_identity_holds,
    softmax_value_gradient,
    variance_gap,
    variance_gap_identity_holds,
)
from tests.tolerances import EXACT_ATOL

#: float64 agreement between two exact evaluations of O(1) quantities.
SIZES = [2, 3, 4, 5]


# --- 1. ∂V/∂z_j = p_j (r_j − V) -----------------------------------------------------------


@pytest.mark.parametrize("k", SIZES)
def test_softmax_gradient_identity_is_exact(k):
    derivation = softmax_value_gradient(k)
    assert derivation.gradient.shape == (k, 1)
    assert softmax_gradient_identity_holds(k)
    # The derivative really is a different expression before simplification (not a copy).
    assert derivation.gradient != derivation.closed_form


@pytest.mark.parametrize("k", SIZES)
def test_softmax_gradient_matches_autograd_and_exact_engine(k):
    gen = torch.Generator().manual_seed(100 + k)
    functions = lambdify_softmax_gradient(k)
    for _ in range(3):
        z = 2.0 * torch.randn(k, generator=gen, dtype=torch.float64)
        r = 2.0 * torch.rand(k, generator=gen, dtype=torch.float64) - 1.0

        leaf = z.clone().requires_grad_(True)
        (autograd,) = torch.autograd.grad(torch.softmax(leaf, -1) @ r, leaf)

        env = BanditEnv(r)
        policy = TabularPolicy.for_env(env, dtype="float64")
        policy.params["logits"][0, 0, 0] = z  # (R=1, N=1, S=1, K)
        engine = exact(policy, env, grads="full").grads["logits"][0, 0, 0, 0]  # (K,)

        derivative = functions.derivative(z.numpy(), r.numpy())
        closed_form = functions.closed_form(z.numpy(), r.numpy())
        np.testing.assert_allclose(derivative, autograd.numpy(), atol=EXACT_ATOL, rtol=0)
        np.testing.assert_allclose(derivative, engine.numpy(), atol=EXACT_ATOL, rtol=0)
        np.testing.assert_allclose(closed_form, autograd.numpy(), atol=EXACT_ATOL, rtol=0)


def test_softmax_gradient_functions_broadcast_over_a_batch():
    rng = np.random.default_rng(0)
    z, r = rng.normal(size=(7, 4)), rng.uniform(-1, 1, size=(7, 4))
    batched = lambdify_softmax_gradient(4).derivative(z, r)
    one_by_one = np.stack([lambdify_softmax_gradient(4).derivative(zi, ri) for zi, ri in zip(z, r, strict=True)])
    assert batched.shape == (7, 4)
    np.testing.assert_allclose(batched, one_by_one, atol=EXACT_ATOL, rtol=0)
    with pytest.raises(ShapeMismatchError):
        lambdify_softmax_gradient(4).derivative(z[:, :3], r[:, :3])


# --- 2. ||p ⊙ (r − V)||² ≤ max p · Var(r) -------------------------------------------------


@pytest.mark.parametrize("k", SIZES)
def test_variance_gap_identity_is_exact(k):
    assert variance_gap_identity_holds(k)
    derivation = variance_gap(k)
    # With m = p_i for every i (uniform p) every gap term vanishes: the bound is tight.
    uniform = {p: sp.Rational(1, k) for p in derivation.probs} | {derivation.max_prob: sp.Rational(1, k)}
    assert sp.simplify(derivation.gap_terms.subs(uniform)) == 0


def random_distributions(rng, k, count):
    """Dirichlet draws of several concentrations plus near-deterministic and one-hot ones: (count·6, K)."""
    draws = [rng.dirichlet(np.full(k, alpha), size=count) for alpha in (0.05, 0.5, 1.0, 10.0)]
    logits = rng.normal(size=(count, k)) * rng.uniform(10, 60, size=(count, 1))  # softmax of large logits
    near = np.exp(logits - logits.max(-1, keepdims=True))
    draws.append(near / near.sum(-1, keepdims=True))
    draws.append(np.eye(k)[rng.integers(k, size=count)])
    return np.concatenate(draws)


@pytest.mark.parametrize("k", SIZES)
def test_variance_bound_holds_numerically(k):
    rng = np.random.default_rng(k)
    p = random_distributions(rng, k, count=500)  # (M, K)
    r = rng.uniform(-1, 1, size=p.shape)
    functions = lambdify_variance_bound(k)
    squared_norm, bound, gap_terms = (f(p, r) for f in functions)

    value = (p * r).sum(-1, keepdims=True)
    np.testing.assert_allclose(squared_norm, ((p * (r - value)) ** 2).sum(-1), atol=EXACT_ATOL, rtol=0)
    np.testing.assert_allclose(bound, p.max(-1) * (p * (r - value) ** 2).sum(-1), atol=EXACT_ATOL, rtol=0)
    np.testing.assert_allclose(bound - squared_norm, gap_terms, atol=EXACT_ATOL, rtol=0)
    assert np.all(gap_terms >= -EXACT_ATOL)
    assert np.all(squared_norm <= bound + EXACT_ATOL)
    # Near-deterministic p: both sides are tiny together (no slack hidden by the tolerance).
    near = p.max(-1) > 1 - 1e-6
    assert near.sum() > 50
    assert np.all(squared_norm[near] <= bound[near] * (1 + 1e-9) + 1e-300)


# --- 3. The Chebyshev threshold step: exponent 2/3, constant 6, optimum 3·4^(1/3) -------------


def test_chebyshev_exponent_and_constants_are_exact():
    derivation = chebyshev_threshold_bound()
    a, std = derivation.exponent_symbol, derivation.std
    assert derivation.term_exponents == (a, 2 - 2 * a)
    assert isinstance(derivation.exponent, sp.Rational) and derivation.exponent == sp.Rational(2, 3)
    assert derivation.balanced_constant == 6
    assert sp.simplify(derivation.optimal_threshold - sp.cbrt(4 * std**2)) == 0
    assert sp.simplify(derivation.optimal_constant - 3 * sp.cbrt(4)) == 0
    assert sp.simplify(derivation.optimal_constant / 6 - 2 ** sp.Rational(-1, 3)) == 0
    assert float(derivation.optimal_constant) == pytest.approx(4.762203155904598, rel=1e-15)
    assert derivation.optimal_exponent == sp.Rational(2, 3)


@pytest.mark.parametrize("std", [1e-4, 1e-2, 0.3, 1.0])
def test_chebyshev_optimum_matches_numeric_minimisation(std):
    derivation = chebyshev_threshold_bound()
    length, gamma = 3.0, 0.7
    bound = lambdify_chebyshev_bound()
    scale = length * gamma * std ** (2 / 3)
    optimal_constant = float(derivation.optimal_constant)

    found = minimize_scalar(
        lambda t: float(bound(t, length, gamma, std)), bounds=(1e-9, 10.0), method="bounded", options={"xatol": 1e-12}
    )
    assert found.success
    assert found.fun == pytest.approx(optimal_constant * scale, rel=1e-8)
    assert found.x == pytest.approx((4 * std**2) ** (1 / 3), rel=1e-5)
    assert float(bound(std ** (2 / 3), length, gamma, std)) == pytest.approx(6 * scale, rel=1e-12)
    assert found.fun <= 6 * scale


# --- 4. Var(r) = Var_1 + Var_2 for L = 2 ---------------------------------------------------


@pytest.mark.parametrize("vocab", [2, 3])
def test_martingale_variance_identity_is_exact(vocab):
    assert martingale_variance_identity_holds(vocab)
    # The normalisation is what makes it true: without it the residual is a nonzero polynomial.
    derivation = martingale_variance_identity(vocab)
    assert sp.expand(derivation.var_total - derivation.var_1 - derivation.var_2) != 0


@pytest.mark.parametrize("vocab", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_martingale_variances_match_exact_engine(vocab, seed):
    table = 2.0 * torch.rand(1, vocab**2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 1.0
    env = SequenceEnv(prompts=[[0]], targets=[[0, 0]], vocab_size=vocab, reward=table)
    policy = TabularPolicy.for_env(env, dtype="float64", seed=seed)
    result = exact(policy, env)

    # q and π straight from the policy's logits, not from the engine.
    ids, x = torch.arange(1), policy.inputs_from(env)
    q = torch.softmax(policy.prefix_logits(ids, x, torch.zeros(1, 1, 0, dtype=torch.long)), -1)[0, 0, 0]  # (V,)
    first_tokens = torch.arange(vocab)[None, :, None]  # (N=1, M=V, l=1): the prefixes (a,)
    pi = torch.softmax(policy.prefix_logits(ids, x, first_tokens), -1)[0, 0]  # (V, V), row a = π_a
    rewards = table[0].reshape(vocab, vocab)  # output index = V·y1 + y2
    joint = result.probs[0, 0].reshape(vocab, vocab)
    np.testing.assert_allclose((q[:, None] * pi).numpy(), joint.numpy(), atol=EXACT_ATOL, rtol=0)

    functions = lambdify_martingale_variance(vocab)
    args = (q.numpy(), pi.numpy(), rewards.numpy())
    var_1, var_2, var_total = (float(f(*args)) for f in functions)
    engine_1, engine_2 = result.position_variance[0, 0].tolist()
    assert var_1 == pytest.approx(engine_1, abs=EXACT_ATOL)
    assert var_2 == pytest.approx(engine_2, abs=EXACT_ATOL)
    assert var_total == pytest.approx(float(result.std[0, 0]) ** 2, abs=EXACT_ATOL)
    assert var_1 + var_2 == pytest.approx(var_total, abs=EXACT_ATOL)
    assert min(var_1, var_2) > 1e-3  # a nontrivial split, not a degenerate case


def test_paper_constant_in_bounds_module_is_the_derived_one():
    """The constant used by rftgrad.theory.bounds is the one the Chebyshev step derives (t = STD^(2/3))."""
    from rftgrad.theory.bounds import PAPER_CONSTANT
    from rftgrad.theory.symbolic import chebyshev_threshold_bound

    assert float(chebyshev_threshold_bound().balanced_constant) == PAPER_CONSTANT  # sympy Integer(6) vs 6.0

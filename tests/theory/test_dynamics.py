"""Theorem 2's dynamics (rftgrad.theory.dynamics): flows, decoupling, closed forms vs ODE, discrete steps.

Each Done-when item of the issue is one test here, with its tolerance stated:
closed form vs ODE (relative 1e-6), GD x step size -> flow time (monotone at three steps),
RFT log-log slope in [-2.05, -1.95], SFT time / ln(1/STD_0) bounded and converging, bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from rftgrad.errors import ConfigError, RewardRangeError, ShapeMismatchError
from rftgrad.theory.dynamics import (
    OBJECTIVES,
    asymptotic_constant,
    asymptotic_hitting_time,
    closed_form_hitting_time,
    discrete_hitting_steps,
    expected_reward,
    gram_flow,
    hitting_time_ode,
    linear_model_flow,
    logit_gradient,
    logit_gradient_jacobian,
    loglog_slope,
    pm1_rewards,
    rft_gradient,
    rft_pm1_gradient,
    sft_gradient,
    solve_flow,
    solve_linear_model,
    std_from_p0,
    symmetric_logits,
    symmetric_reduction,
    symmetric_reduction_checks,
)
from rftgrad.theory.symbolic import lambdify_softmax_gradient
from tests.tolerances import CLOSED_VS_ODE_RTOL, FORMULA_TOL, ODE_ATOL

LABELS = (2, 10, 100)
P0_GRID = (1e-8, 1e-6, 1e-4, 1e-2, 0.4)


def _random_logits(k, n=(), seed=0):
    return 2.0 * np.random.default_rng(seed).standard_normal((*n, k))


# --- the symmetric reduction (sympy) ----------------------------------------------------------


def test_symmetric_reduction_is_exact():
    assert all(symmetric_reduction_checks().values()), symmetric_reduction_checks()
    reduction = symmetric_reduction()
    p, k = reduction.p, reduction.num_labels
    # the rates, as sympy derived them from the K-dimensional flows
    assert (reduction.rate["rft"] - 2 * k / (k - 1) * p**2 * (1 - p) ** 2).equals(0)
    assert (reduction.rate["sft"] - k / (k - 1) * p * (1 - p) ** 2).equals(0)
    np.testing.assert_allclose(asymptotic_constant(np.array(LABELS), "rft"), [1.0, 1.8, 1.98], rtol=FORMULA_TOL)
    np.testing.assert_allclose(asymptotic_constant(np.array(LABELS), "sft"), [1.0, 1.8, 1.98], rtol=FORMULA_TOL)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_closed_form_is_accurate_where_the_naive_form_cancels(objective):
    """The float64 arrangement against sympy's own F(p1) − F(p0) evaluated with 50 digits (F(p1) − F(p0)
    evaluated in float64 is off by 1.3e-10 relative at p0 = p1 − 1e-7; the arrangement by 1e-16)."""
    reduction = symmetric_reduction()
    naive = reduction.hitting_time[objective]
    for p0 in (1e-8, 1e-12, 1e-3, 0.3, 0.7499999):  # the last one sits just below p1 = 0.75
        for k in (2, 100):
            values = {reduction.p0: sp.Float(p0, 60), reduction.p1: sp.Rational(3, 4), reduction.num_labels: k}
            reference = float(naive.subs(values).evalf(50))
            assert closed_form_hitting_time(p0, k, 0.5, objective) == pytest.approx(reference, rel=1e-14)
    assert np.isfinite(closed_form_hitting_time(1e-300, 10, 0.0, objective))


# --- velocities ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", (2, 5))
def test_general_reward_velocity_reduces_to_the_pm1_velocity(k):
    logits = _random_logits(k, (7,), seed=k)
    labels = np.arange(7) % k
    rewards = 2 * np.eye(k)[labels] - 1  # (7, K): +1 correct, −1 otherwise
    np.testing.assert_allclose(rft_gradient(logits, rewards), rft_pm1_gradient(logits, labels), atol=FORMULA_TOL)
    np.testing.assert_allclose(expected_reward(logits, rewards), 2 * np.exp(logits[np.arange(7), labels]) /
                               np.exp(logits).sum(-1) - 1, atol=FORMULA_TOL)  # fmt: skip


def test_velocities_match_autograd_and_the_sympy_gradient():
    k = 4
    logits = _random_logits(k, seed=3)
    rewards = np.array([1.0, -0.3, 0.5, -1.0])
    leaf = torch.tensor(logits, requires_grad=True)
    (value_grad,) = torch.autograd.grad(torch.softmax(leaf, -1) @ torch.tensor(rewards), leaf)
    (logp_grad,) = torch.autograd.grad(torch.log_softmax(leaf, -1)[2], leaf)
    np.testing.assert_allclose(rft_gradient(logits, rewards), value_grad.numpy(), atol=FORMULA_TOL)
    np.testing.assert_allclose(sft_gradient(logits, 2), logp_grad.numpy(), atol=FORMULA_TOL)
    np.testing.assert_allclose(rft_gradient(logits, rewards), lambdify_softmax_gradient(k).closed_form(logits, rewards),
                               atol=FORMULA_TOL)  # fmt: skip


@pytest.mark.parametrize("case", [("rft", None), ("rft", "general"), ("sft", None)])
def test_jacobians_match_finite_differences(case):
    objective, kind = case
    k, label = 5, 1
    logits = _random_logits(k, seed=11)
    rewards = np.array([0.2, 1.0, -0.7, -1.0, 0.4]) if kind else None
    jacobian = logit_gradient_jacobian(logits, objective, label, rewards)
    h = 1e-6
    columns = [
        (
            logit_gradient(logits + h * e, objective, label, rewards)
            - logit_gradient(logits - h * e, objective, label, rewards)
        )
        / (2 * h)
        for e in np.eye(k)
    ]
    np.testing.assert_allclose(jacobian, np.stack(columns, axis=1), atol=1e-9)


def test_symmetric_logits_and_the_flow_keep_wrong_labels_equal():
    for k in LABELS:
        logits = symmetric_logits(1e-8, k)
        probs = np.exp(logits)
        assert probs.sum() == pytest.approx(1.0, rel=FORMULA_TOL) and probs[0] == pytest.approx(1e-8, rel=FORMULA_TOL)
    solution = solve_flow(symmetric_logits(1e-3, 10), "rft", t_eval=np.geomspace(1, 2000, 9))
    wrong = solution.logits[:, 0, 1:]  # (T, K − 1)
    assert np.ptp(wrong, axis=-1).max() < 1e-10  # still symmetric
    assert solution.logits[-1, 0, 0] - wrong[-1, 0] > 5  # and the correct logit moved


# --- decoupling: linear models --------------------------------------------------------------------


def _linear_problem(orthonormal, seed=0):
    rng = np.random.default_rng(seed)
    k, d, n = 4, 6, 3
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0][:n]  # (N, D), orthonormal rows
    inputs = basis if orthonormal else basis + 0.4 * rng.standard_normal((n, d))
    return rng.standard_normal((k, d)), inputs, np.array([0, 2, 3])


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_linear_flow_with_orthonormal_inputs_equals_the_per_input_flows(objective):
    weights0, inputs, labels = _linear_problem(orthonormal=True)
    logits0 = inputs @ weights0.T  # (N, K)
    # instantaneous: (dW/dt) x_i = g_i exactly
    velocity = linear_model_flow(weights0, inputs, objective, labels) @ inputs.T  # (K, N)
    np.testing.assert_allclose(velocity.T, logit_gradient(logits0, objective, labels), atol=FORMULA_TOL)
    # integrated: W(t) x_i from the weight-space flow = each input's own logit flow
    times = np.array([0.5, 2.0, 8.0])
    weights = solve_linear_model(weights0, inputs, objective, labels, times)  # (T, K, D)
    full = np.einsum("tkd,nd->tnk", weights, inputs)
    for i in range(len(inputs)):
        alone = solve_flow(logits0[i], objective, labels[i], t_eval=times).logits[:, 0]  # (T, K)
        np.testing.assert_allclose(full[:, i], alone, atol=ODE_ATOL)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_correlated_inputs_follow_the_gram_flow_not_their_own(objective):
    weights0, inputs, labels = _linear_problem(orthonormal=False)
    gram = inputs @ inputs.T
    logits0 = inputs @ weights0.T
    velocity = linear_model_flow(weights0, inputs, objective, labels) @ inputs.T
    np.testing.assert_allclose(velocity.T, gram_flow(logits0, gram, objective, labels), atol=1e-13)
    times = np.array([0.5, 2.0, 8.0])
    full = np.einsum("tkd,nd->tnk", solve_linear_model(weights0, inputs, objective, labels, times), inputs)
    coupled = solve_flow(logits0, objective, labels, gram=gram, t_eval=times).logits
    np.testing.assert_allclose(full, coupled, atol=ODE_ATOL)
    alone = solve_flow(logits0[0], objective, labels[0], t_eval=times).logits[:, 0]
    assert np.abs(full[:, 0] - alone).max() > 1e-2  # neighbours matter once the inputs correlate


def test_a_neighbour_with_the_same_label_helps_and_one_with_another_label_hurts():
    k, rho, p0 = 10, 0.5, 1e-3
    gram = np.array([[1.0, rho], [rho, 1.0]])
    times = {}
    for objective in OBJECTIVES:
        alone = solve_flow(symmetric_logits(p0, k), objective, target=0.0).hit_time
        assert alone == pytest.approx(float(closed_form_hitting_time(p0, k, 0.0, objective)), rel=CLOSED_VS_ODE_RTOL)
        for name, label in (("same", 0), ("other", 1)):
            logits = np.stack([symmetric_logits(p0, k), symmetric_logits(0.5, k, label)])
            hit = solve_flow(logits, objective, [0, label], gram=gram, target=0.0).hit_time
            times[objective, name] = hit / alone
    # RFT: the large-STD neighbour's gradient dominates the small-STD input's own (measured 0.15 and 3.4)
    assert times["rft", "same"] < 0.2 and times["rft", "other"] > 3
    # SFT: its own gradient is O(1), neighbours change little (measured 0.94 and 1.09)
    assert 0.85 < times["sft", "same"] < 1 < times["sft", "other"] < 1.2


# --- Done when: closed forms vs ODE -----------------------------------------------------------------


@pytest.mark.parametrize("k", LABELS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_closed_form_matches_the_full_logit_ode(objective, k):
    for p0 in P0_GRID:
        numeric = hitting_time_ode(p0, k, 0.0, objective)
        closed = float(closed_form_hitting_time(p0, k, 0.0, objective))
        assert abs(numeric - closed) / closed < CLOSED_VS_ODE_RTOL, (p0, numeric, closed)


@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_closed_form_matches_the_ode_on_a_dense_grid_and_other_targets(objective):
    for k in LABELS:
        for p0 in np.geomspace(1e-8, 0.4, 13):
            for target in (2 * p0 - 1 + 1e-3, 0.5, 0.99):
                if target <= 2 * p0 - 1:
                    continue
                closed = float(closed_form_hitting_time(p0, k, target, objective))
                assert hitting_time_ode(p0, k, target, objective) == pytest.approx(closed, rel=CLOSED_VS_ODE_RTOL)


def test_ode_is_robust_at_p0_one_half_and_with_radau():
    for objective in OBJECTIVES:
        closed = float(closed_form_hitting_time(0.5, 10, 0.2, objective))
        assert hitting_time_ode(0.5, 10, 0.2, objective) == pytest.approx(closed, rel=CLOSED_VS_ODE_RTOL)
        for p0 in (1e-8, 0.1):
            closed = float(closed_form_hitting_time(p0, 10, 0.0, objective))
            radau = hitting_time_ode(p0, 10, 0.0, objective, method="Radau", rtol=1e-10, atol=1e-12)
            assert radau == pytest.approx(closed, rel=CLOSED_VS_ODE_RTOL)


# --- Done when: asymptotics ------------------------------------------------------------------------


@pytest.mark.parametrize("k", LABELS)
def test_rft_time_scales_as_one_over_std_squared(k):
    p0 = np.geomspace(1e-6, 1e-2, 9)
    slope = loglog_slope(std_from_p0(p0), closed_form_hitting_time(p0, k, 0.0, "rft"))
    assert -2.05 <= slope <= -1.95  # measured −1.988 (the ln(1/STD_0) correction tilts it)
    ode = [hitting_time_ode(q, k, 0.0, "rft") for q in p0[::2]]
    assert -2.05 <= loglog_slope(std_from_p0(p0[::2]), ode) <= -1.95
    # T · STD_0² → c = 2(K − 1)/K (at p0 = 1e-100); the next terms, with p1 = 1/2 (docs/theorem2.md):
    # T − c/STD_0² = c ln(1/STD_0) + (K − 1)/(2K) (2 ln 4 − 2) + O(p0), hence the ratio below
    c = float(asymptotic_constant(k, "rft"))
    assert float(closed_form_hitting_time(1e-100, k, 0.0, "rft") * std_from_p0(1e-100) ** 2) == pytest.approx(
        c, rel=1e-12
    )
    small = np.array([1e-8, 1e-6])
    std = std_from_p0(small)
    next_term = (closed_form_hitting_time(small, k, 0.0, "rft") - asymptotic_hitting_time(std, k, "rft")) / np.log(
        1 / std
    )
    np.testing.assert_allclose(next_term, c * (1 + (2 * math.log(4) - 2) / (4 * np.log(1 / std))), rtol=1e-6)


@pytest.mark.parametrize("k", LABELS)
def test_sft_time_over_log_inverse_std_is_bounded_and_converges(k):
    p0 = np.geomspace(1e-300, 1e-2, 40)
    std = std_from_p0(p0)
    ratio = closed_form_hitting_time(p0, k, 0.0, "sft") / np.log(1 / std)
    limit = float(asymptotic_constant(k, "sft"))
    assert np.all(np.diff(ratio) > 0)  # falls monotonically as p0 shrinks ...
    assert np.all((ratio > limit) & (ratio < 2 * limit))  # ... bounded ...
    # ... toward c' at rate 1/ln: (ratio − c') ln(1/STD_0) → c'' = (K−1)/K (ln 4 + logit p1 + p1/(1 − p1))
    offset = (k - 1) / k * (math.log(4) + 0.0 + 1.0)  # p1 = 1/2
    gap = (ratio - limit) * np.log(1 / std)
    assert gap.max() < 1.5 * offset and abs(gap[0] - offset) < 1e-3
    assert ratio[0] - limit < 1e-2 * limit  # within 1% of c' at p0 = 1e-300
    ode = np.array([hitting_time_ode(q, k, 0.0, "sft") for q in (1e-8, 1e-6, 1e-4)])
    ode_ratio = ode / np.log(1 / std_from_p0(np.array([1e-8, 1e-6, 1e-4])))
    assert np.all(np.diff(ode_ratio) > 0) and np.all(ode_ratio < 2 * limit)


# --- Done when: discrete gradient descent -> the flow ----------------------------------------------


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_gradient_descent_time_converges_monotonically_to_the_flow(objective):
    steps_sizes = np.array([0.4, 0.1, 0.025])
    flow = float(closed_form_hitting_time(1e-2, 10, 0.0, objective))
    steps = discrete_hitting_steps(1e-2, 10, 0.0, objective, steps_sizes)
    errors = np.abs(steps * steps_sizes - flow) / flow
    assert np.all(np.diff(errors) < 0), errors  # measured RFT 1.9e-2, 4.5e-3, 9.1e-4; SFT 3.5e-2, 5.3e-3, 3.0e-4
    assert errors[-1] < 2e-3


def test_adam_removes_most_of_the_inverse_std_squared_law():
    """Not a flow limit: Adam's normalisation cancels RFT's 2p factor, so steps grow like ln(1/STD_0)."""
    p0 = np.geomspace(1e-8, 1e-2, 4)
    steps = discrete_hitting_steps(p0, 10, 0.0, "rft", 0.03, "adam")
    assert np.all(steps > 0)
    slope = loglog_slope(std_from_p0(p0), steps * 0.03)
    assert -0.5 < slope < 0  # measured −0.15, against −1.99 for the flow
    assert steps[0] < 1_000  # measured 178 steps (n·η = 5.3); the flow needs t = 4.5e7 at p0 = 1e-8


# --- bad input -----------------------------------------------------------------------------------


def test_bad_input_gets_clear_errors():
    with pytest.raises(ConfigError, match=r"p0=0.0 is outside \(0, 1\)"):
        closed_form_hitting_time(0.0, 10, 0.0, "rft")
    with pytest.raises(ConfigError, match=r"p0=1.5 is outside \(0, 1\)"):
        hitting_time_ode(1.5, 10, 0.0, "sft")
    with pytest.raises(ConfigError, match="p0=nan is outside"):
        symmetric_logits(float("nan"), 3)
    with pytest.raises(ConfigError, match=r"target expected reward -0.6 is not above the start 2·p0 − 1 = -0.5;"):
        closed_form_hitting_time(0.25, 10, -0.6, "rft")
    with pytest.raises(ConfigError, match="not above the start"):
        hitting_time_ode(0.4, 10, -0.2, "rft")
    with pytest.raises(ConfigError, match="target expected reward 1.0 is not below 1"):
        discrete_hitting_steps(0.1, 10, 1.0, "sft", 0.1)
    with pytest.raises(ConfigError, match="K=1 is invalid; use an integer K >= 2"):
        closed_form_hitting_time(0.1, 1, 0.0, "rft")
    with pytest.raises(ConfigError, match="K=2.5 is invalid"):
        hitting_time_ode(0.1, 2.5, 0.0, "rft")
    with pytest.raises(ConfigError, match="step size must be positive"):
        discrete_hitting_steps(0.1, 10, 0.0, "rft", 0.0)
    with pytest.raises(ConfigError, match="objective 'ppo' is unknown"):
        closed_form_hitting_time(0.1, 10, 0.0, "ppo")
    with pytest.raises(ConfigError, match="optimizer 'gd' is unknown"):
        discrete_hitting_steps(0.1, 10, 0.0, "rft", 0.1, "gd")
    with pytest.raises(RewardRangeError, match=r"outside \[-1, 1\]"):
        rft_gradient(np.zeros(3), [1.0, -2.0, 0.0])
    with pytest.raises(ConfigError, match="symmetric positive semidefinite"):
        solve_flow(np.zeros((2, 3)), "rft", gram=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ShapeMismatchError, match="does not fit 2 inputs"):
        solve_flow(np.zeros((2, 3)), "rft", gram=np.eye(3))
    with pytest.raises(ConfigError, match="labels must lie in"):
        solve_flow(np.zeros((2, 3)), "sft", labels=[0, 3])
    with pytest.raises(ConfigError, match="not below the largest reward"):
        solve_flow(np.zeros(3), "rft", rewards=[0.5, 0.0, -1.0], target=0.5)
    with pytest.raises(ConfigError, match="label 3 is not one of the K=3 labels"):
        symmetric_logits(0.1, 3, label=3)
    assert pm1_rewards(3, 1).tolist() == [-1.0, 1.0, -1.0]

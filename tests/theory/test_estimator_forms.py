"""Closed forms of rftgrad.theory.group_updates against the real estimators of rftgrad.finetune.advantages.

Setting (docs/paper.md §7): one input, a flat softmax, correct output ``c`` with ``p = π_c``,
binary reward; ``u = (1/G) Σ_i A_i (1[y_i = c] - p)`` is an update's component along ``z_c``.

Three kinds of check:

* Monte Carlo (:func:`monte_carlo_update`, which draws Bernoulli(p) successes and runs the
  library's ``advantages`` / ``first_informative_group``): for every estimator, every
  ``G ∈ {2, 4, 8, 16, 64}`` and ``p ∈ {1e-3, 0.01, 0.5}``, the mean of ``D`` i.i.d. draws lies within
  ``MC_Z = 5`` standard errors (estimated from the draws) of the closed form. ``D`` is sized for a
  number ``n`` of informative groups (the update is 0 on the others), so the relative SE of ``E u``
  is about ``1/sqrt(n)``: ``n = 300`` at ``p = 1e-3`` (5 SE ≈ 29%; the budget of a fast test, as
  ``D ≈ n/(Gp)``) and ``n = 1300`` at ``p = 0.01, 0.5`` (5 SE ≈ 14%). Each check asserts its
  tolerance is below 35% / 15% of the value, and at ``p = 0.01`` that the farthest competing
  closed form (Dr. GRPO's or RLOO's for GRPO, GRPO's for DAPO) lies more than twice the tolerance
  away, so no check passes vacuously. The measured ``frac_reward_zero_std`` passes an exact
  binomial test around ``d`` at the same level (two-sided tail > P(|N(0,1)| > 5)), and DAPO's
  sampled outputs per input (``B = 2`` tries) are ``G`` plus ``G`` per all-equal first group. A
  correct formula fails one check with probability P(|N(0,1)| > 5) ≈ 5.7e-7; with 6 x 5 x 3 x 2 =
  180 statistical checks the union bound is 1e-4. Seeds are fixed, so the outcome is
  deterministic. ``-m slow`` adds ``p = 1e-4, 1e-3`` with 10,000 informative groups (5 SE ≈ 5%)
  and a fitted Monte Carlo slope.
* Exact enumeration, a separate code path: ``Σ_k C(G,k) p^k (1-p)^(G-k) u(k)`` with ``u(k)`` computed
  by the library's ``advantages`` on a group of ``k`` successes (every ``G``), and the full sum over
  all ``2^(B·G)`` binary outcomes through ``first_informative_group`` (small ``G``, DAPO included),
  equal to the closed forms to 1e-12.
* Asymptotics: :func:`asymptotic_update` against sympy's leading term and against the log-log slope
  of the closed form at small ``p``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm

from rftgrad.errors import ConfigError
from rftgrad.finetune.advantages import advantages, first_informative_group, monte_carlo_update
from rftgrad.theory.group_updates import (
    ESTIMATOR_FORMS,
    asymptotic_update,
    conditional_update,
    dapo_factor,
    expected_samples,
    expected_update,
    fit_power,
    frac_reward_zero_std,
    informative_prob,
    leading_term_sympy,
    prob_all_equal,
)
from tests.tolerances import EXACT_RTOL, MC_Z

DTYPE = torch.float64
#: p -> (informative groups per Monte Carlo point, largest tolerance allowed as a fraction of the value)
MC_CASES = {1e-3: (300, 0.35), 0.01: (1300, 0.15), 0.5: (1300, 0.15)}
GROUP_SIZES = (2, 4, 8, 16, 64)
ESTIMATORS = tuple(ESTIMATOR_FORMS)
TRIES = 2  # DAPO's max_resample B in the Monte Carlo checks (each try costs a group of draws)
#: competing closed forms; at p = 0.01 the Monte Carlo must be able to reject the farthest one.
COMPETITORS = {"grpo": ("dr_grpo", "rloo"), "dapo": ("grpo",)}


def num_draws(p: float, group: int, informative: int) -> int:
    """``D = informative / (1 - d)``: draws holding about ``informative`` groups with signal."""
    return math.ceil(informative / float(informative_prob(p, group)))


def assert_binomial_rate(count: int, draws: int, rate: float) -> None:
    """``count`` all-equal groups in ``draws`` is consistent with ``Binomial(draws, rate)``: the exact
    two-sided tail probability exceeds ``P(|N(0,1)| > MC_Z)`` (the normal approximation fails where
    ``draws · rate`` is small, e.g. ``d = 2^-15`` at ``p = 1/2, G = 16``)."""
    tail = 2 * min(binom.cdf(count, draws, rate), binom.sf(count - 1, draws, rate))
    assert tail > 2 * norm.sf(MC_Z), f"{count} all-equal groups in {draws} draws, expected rate {rate:.4g}"


# ----------------------------------------------------------------------------- 1. Monte Carlo
@pytest.mark.parametrize("group", GROUP_SIZES)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_closed_form_matches_monte_carlo_of_the_library(estimator: str, group: int) -> None:
    for index, (p, (informative, max_rel_tol)) in enumerate(MC_CASES.items()):
        draws = num_draws(p, group, informative)
        seed = 1000 * ESTIMATORS.index(estimator) + 10 * group + index
        mc = monte_carlo_update(p, group, estimator, draws, seed, max_resample=TRIES)
        closed = float(expected_update(p, group, estimator, max_resample=TRIES))
        tol = MC_Z * mc.sem + 1e-12  # reinforce at p = 1/2 has zero variance: u = 1/2 for every group
        assert tol < max_rel_tol * closed, f"test too weak at p={p}: tolerance {tol:.3g} for {closed:.3g}"
        assert abs(mc.mean - closed) <= tol, f"p={p}: MC {mc.mean:.6g} ± {mc.sem:.2g}, closed form {closed:.6g}"
        if p == 0.01 and estimator in COMPETITORS:
            gap = max(
                abs(closed - float(expected_update(p, group, other, max_resample=TRIES)))
                for other in COMPETITORS[estimator]
            )
            assert gap > 2 * tol, f"the test cannot tell {estimator} from {COMPETITORS[estimator]} at p={p}"
        assert_binomial_rate(round(mc.frac_zero_std * draws), draws, float(frac_reward_zero_std(p, group)))
        # B = 2: DAPO draws a second group exactly when the first is all-equal (the binomial test above)
        resampled = mc.frac_zero_std if estimator == "dapo" else 0.0
        assert mc.samples_per_input == pytest.approx(group * (1.0 + resampled), rel=1e-12)


def test_frac_reward_zero_std_check_is_not_vacuous() -> None:
    """Where d is far from 0 and 1 the binomial check rejects a rate 20% off (8 SE)."""
    p, group = 0.05, 16
    d = float(frac_reward_zero_std(p, group))
    draws = num_draws(p, group, 1300)
    assert 0.3 < d < 0.7
    with pytest.raises(AssertionError):
        assert_binomial_rate(round(1.2 * d * draws), draws, d)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_closed_form_matches_monte_carlo_at_small_p_tightly(estimator: str) -> None:
    """p = 1e-4 and 1e-3 with 10,000 informative groups per point: 5 SE ≈ 5% of the value, B = 4."""
    for group in GROUP_SIZES:
        for index, p in enumerate((1e-4, 1e-3)):
            draws = num_draws(p, group, 10_000)
            mc = monte_carlo_update(p, group, estimator, draws, seed=7 + 10 * group + index, max_resample=4)
            closed = float(expected_update(p, group, estimator, max_resample=4))
            assert MC_Z * mc.sem < 0.06 * closed
            assert abs(mc.mean - closed) <= MC_Z * mc.sem, (group, p, mc.mean, mc.sem, closed)


# ----------------------------------------------------------------------------- 2. exact enumeration
SETTINGS = [  # (success, failure, std_eps)
    (1.0, -1.0, 1e-4),
    (1.0, 0.0, 0.0),
    (0.5, -0.25, 0.3),
]


def library_update(hits: torch.Tensor, p: float, kind: str, success: float, failure: float, std_eps: float, tries: int):
    """``u`` per outcome through the library: ``hits`` ``(Y, B, G)`` bool -> ``(Y,)``."""
    rewards = torch.where(hits, torch.tensor(success, dtype=DTYPE), torch.tensor(failure, dtype=DTYPE))[:, None]
    hits = hits[:, None]  # (Y, 1, B, G)
    if kind == "dapo":
        first, _ = first_informative_group(rewards)
        index = first[..., None, None].expand(-1, -1, 1, hits.shape[-1])
        rewards, hits = rewards.gather(2, index), hits.gather(2, index)
    rewards, hits = rewards[:, :, 0], hits[:, :, 0]  # (Y, 1, G)
    adv = advantages(rewards, kind, torch.ones(rewards.shape[:2], dtype=DTYPE), "group", std_eps)
    return (adv * (hits.to(DTYPE) - p)).mean(-1)[:, 0]


@pytest.mark.parametrize(("success", "failure", "std_eps"), SETTINGS)
@pytest.mark.parametrize("estimator", [e for e in ESTIMATORS if e != "dapo"])
def test_closed_form_equals_sum_over_success_counts(estimator: str, success: float, failure: float, std_eps: float):
    """``E u = Σ_k C(G,k) p^k (1-p)^(G-k) u(k)`` with ``u(k)`` from the library on the group
    ``(r⁺ × k, r⁻ × (G-k))``: every reordering of the group gives the same ``u`` (the sum is
    symmetric), so the finite sum over ``k`` is exact."""
    for group in GROUP_SIZES:
        counts = torch.arange(group + 1)
        hits = (torch.arange(group)[None, :] < counts[:, None])[:, None]  # (G+1, 1, G): k successes first
        for p in (0.0, 1e-3, 0.05, 0.3, 0.5, 0.9, 1.0):
            u = library_update(hits, p, estimator, success, failure, std_eps, 1).numpy()  # (G+1,)
            law = np.array([math.comb(group, k) * p**k * (1 - p) ** (group - k) for k in range(group + 1)])
            closed = expected_update(p, group, estimator, success=success, failure=failure, std_eps=std_eps)
            np.testing.assert_allclose(closed, (law * u).sum(), rtol=EXACT_RTOL, atol=1e-15, err_msg=f"G={group} p={p}")
            if estimator != "reinforce":  # centred: u(k) is the conditional update u_k
                kwargs = dict(success=success, failure=failure, std_eps=std_eps)
                np.testing.assert_allclose(
                    u, conditional_update(counts.numpy(), group, estimator, **kwargs), atol=1e-14
                )


@pytest.mark.parametrize(("estimator", "group", "tries"), [
    ("reinforce", 4, 1), ("rloo", 6, 1), ("grpo", 8, 1), ("dr_grpo", 3, 1), ("reinforce_baseline", 5, 1),
    ("dapo", 2, 1), ("dapo", 2, 3), ("dapo", 4, 2), ("dapo", 4, 3), ("dapo", 6, 2),
])  # fmt: skip
def test_closed_form_equals_full_enumeration(estimator: str, group: int, tries: int) -> None:
    """Sum over all ``2^(B·G)`` success patterns with probability ``p^#hits (1-p)^#misses``,
    DAPO keeping the first informative try via ``first_informative_group``."""
    hits = torch.tensor(list(itertools.product([False, True], repeat=tries * group))).reshape(-1, tries, group)
    for success, failure, std_eps in SETTINGS:
        for p in (0.01, 0.2, 0.5, 0.85):
            count = hits.sum(dim=(1, 2)).to(DTYPE)
            weight = p**count * (1 - p) ** (tries * group - count)  # (2^(BG),)
            u = library_update(hits, p, estimator, success, failure, std_eps, tries)
            closed = expected_update(
                p, group, estimator, success=success, failure=failure, std_eps=std_eps, max_resample=tries
            )
            np.testing.assert_allclose(closed, float((weight * u).sum()), rtol=EXACT_RTOL, atol=1e-15)


def test_grpo_without_eps_is_independent_of_the_reward_scale() -> None:
    """ε = 0: ``u_k = sqrt(k(G-k)(G-1)/G³)`` whatever ``r⁺ > r⁻`` (the std division removes Δ)."""
    for group in GROUP_SIZES:
        k = np.arange(1, group)
        p = np.array([1e-4, 0.1, 0.5, 0.7])
        law = np.array([[math.comb(group, j) * q**j * (1 - q) ** (group - j) for j in k] for q in p])
        formula = (law * np.sqrt(k * (group - k) * (group - 1) / group**3)).sum(-1)
        for success, failure in ((1.0, -1.0), (1.0, 0.0), (0.2, -0.7)):
            got = expected_update(p, group, "grpo", success=success, failure=failure, std_eps=0.0)
            np.testing.assert_allclose(got, formula, rtol=EXACT_RTOL)


def test_dapo_per_sampled_output_equals_grpo() -> None:
    """``E u_dapo / E samples_dapo = E u_grpo / G`` for every ``B``; ``B = 1`` is GRPO; ``B = ∞`` is the
    update per kept group, ``E u_grpo/(1-d)``, with limit ``u_1`` as ``p → 0``."""
    p = np.array([1e-4, 1e-3, 0.05, 0.5, 0.99])
    for group in GROUP_SIZES:
        grpo = expected_update(p, group, "grpo")
        for tries in (1, 2, 4, 16, math.inf):
            dapo = expected_update(p, group, "dapo", max_resample=tries)
            per_sample = dapo / expected_samples(p, group, "dapo", tries)
            np.testing.assert_allclose(per_sample, grpo / group, rtol=1e-10)
        np.testing.assert_allclose(expected_update(p, group, "dapo", max_resample=1), grpo, rtol=EXACT_RTOL)
        u_1 = float(conditional_update(1, group, "grpo"))
        assert float(expected_update(0.0, group, "dapo", max_resample=math.inf)) == u_1
        assert float(expected_update(1.0, group, "dapo", max_resample=math.inf)) == u_1
        assert float(expected_update(1e-9, group, "dapo", max_resample=math.inf)) == pytest.approx(u_1, rel=1e-6)
        assert float(dapo_factor(0.0, group, 4)) == 4.0 and math.isinf(float(dapo_factor(0.0, group, math.inf)))


def test_zero_std_probability_forms() -> None:
    p = np.array([0.0, 1e-12, 1e-3, 0.3, 0.5, 1.0])
    for group in GROUP_SIZES:
        d = frac_reward_zero_std(p, group)
        np.testing.assert_allclose(d, p**group + (1 - p) ** group, rtol=1e-15)
        np.testing.assert_allclose(d, prob_all_equal(np.stack([p, 1 - p], -1), group), rtol=1e-15)
        np.testing.assert_allclose(informative_prob(p, group)[2:], 1 - d[2:], rtol=1e-12)
        # stable where 1 - d ≈ Gp is below the rounding of d: p = 1e-12
        assert float(informative_prob(1e-12, group)) == pytest.approx(group * 1e-12, rel=1e-9)


# ----------------------------------------------------------------------------- 3. asymptotics
def sympy_cases() -> list[tuple[str, int, float]]:
    cases = [(e, g, 4) for e in ESTIMATORS for g in (2, 4, 8) if not (e == "dapo" and g == 8)]
    return cases + [("dapo", 2, 1), ("dapo", 4, 3), ("dapo", 2, math.inf), ("dapo", 4, math.inf)]


@pytest.mark.parametrize(("estimator", "group", "tries"), sympy_cases())
def test_asymptote_matches_sympy_leading_term(estimator: str, group: int, tries: float) -> None:
    """The hand-derived ``(a, C)`` equal sympy's leading term of the expectation written out from the
    advantage definitions (ε = 1e-4 and ε = 0.5 as exact rationals)."""
    for std_eps in (1e-4, 0.5):
        expected = asymptotic_update(group, estimator, std_eps=std_eps, max_resample=tries)
        got = leading_term_sympy(group, estimator, std_eps=std_eps, max_resample=tries)
        assert got.power == expected.power
        assert got.constant == pytest.approx(expected.constant, rel=1e-12)


@pytest.mark.parametrize("group", GROUP_SIZES)
def test_fitted_power_of_the_closed_forms(group: int) -> None:
    """At fixed ``G`` and ``B`` every estimator vanishes linearly: the log-log slope over
    ``p ∈ [1e-8, 1e-6]`` is 1 within 1e-3 and the fitted constant is ``C`` within 0.1%; DAPO with
    ``B = ∞`` (per kept group) has power 0. The constants order: GRPO's exceeds RLOO's for ``G >= 8``
    ((G-1)/√G > 2), yet both vanish like ``p``."""
    p = np.geomspace(1e-8, 1e-6, 9)  # the next order is O(Gp) <= 6.4e-5
    for estimator in ESTIMATORS:
        for tries in (4, math.inf) if estimator == "dapo" else (4,):
            fit = fit_power(p, expected_update(p, group, estimator, max_resample=tries))
            asymptote = asymptotic_update(group, estimator, max_resample=tries)
            assert fit.power == pytest.approx(asymptote.power, abs=1e-3)
            assert fit.constant == pytest.approx(asymptote.constant, rel=1e-3)
    grpo, rloo = asymptotic_update(group, "grpo").constant, asymptotic_update(group, "rloo").constant
    assert (grpo > rloo) == (group >= 8)
    assert asymptotic_update(group, "grpo", std_eps=0.0).constant == pytest.approx((group - 1) / math.sqrt(group))


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["rloo", "grpo", "dapo"])
def test_fitted_power_of_the_monte_carlo(estimator: str) -> None:
    """The Monte Carlo means themselves vanish like p: slope over p ∈ {1e-4, 1e-3, 1e-2} within 0.05 of 1
    (about 2,500 informative groups per point: relative SE 2%, slope SE ≈ 0.01)."""
    p = np.array([1e-4, 1e-3, 1e-2])
    means = []
    for index, q in enumerate(p):
        draws = math.ceil(2500 / float(informative_prob(q, 8)))
        means.append(monte_carlo_update(float(q), 8, estimator, draws, seed=50 + index).mean)
    assert fit_power(p, np.array(means)).power == pytest.approx(1.0, abs=0.05)


# ----------------------------------------------------------------------------- 4. bad input
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: expected_update(-0.1, 4, "grpo"), "p must lie in [0, 1]"),
        (lambda: expected_update(1.5, 4, "rloo"), "p must lie in [0, 1]"),
        (lambda: expected_update(np.nan, 4, "rloo"), "p must lie in [0, 1]"),
        (lambda: expected_update(0.1, 1, "grpo"), "G must be an integer >= 2 for grpo"),
        (lambda: expected_update(0.1, 1, "dapo"), "G must be an integer >= 2 for dapo"),
        (lambda: expected_update(0.1, 0, "reinforce"), "G must be an integer >= 1 for reinforce"),
        (lambda: expected_update(0.1, 2.5, "rloo"), "G must be an integer"),
        (
            lambda: expected_update(0.1, 4, "ppo"),
            "unknown estimator 'ppo'; choose one of reinforce, reinforce_baseline",
        ),
        (lambda: expected_update(0.1, 4, "grpo", success=-1.0, failure=1.0), "success reward must exceed"),
        (lambda: expected_update(0.1, 4, "grpo", std_eps=-1.0), "std_eps must be finite and >= 0"),
        (lambda: expected_update(0.1, 4, "dapo", max_resample=0), "max_resample B must be an integer >= 1"),
        (lambda: expected_update(0.1, 4, "dapo", max_resample=2.5), "max_resample B must be an integer >= 1"),
        (lambda: conditional_update(1, 4, "reinforce"), "needs a centred estimator"),
        (lambda: conditional_update(5, 4, "grpo"), "successes k must be integers in [0, G=4]"),
        (lambda: asymptotic_update(1, "rloo"), "G must be an integer >= 2 for rloo"),
        (lambda: leading_term_sympy(2, "vanilla"), "unknown estimator 'vanilla'"),
        (lambda: fit_power([1e-3, 1e-2], [0.0, 1.0]), "positive p and u"),
        (lambda: fit_power([1e-3, 1e-3], [1.0, 2.0]), "two distinct p"),
        (lambda: frac_reward_zero_std(1.2, 4), "success_prob must lie in [0, 1]"),
        (lambda: monte_carlo_update(1.2, 4, "grpo", 10, 0), "success probability must lie in [0, 1]"),
        (lambda: monte_carlo_update(0.1, 4, "vanilla", 10, 0), "unknown advantage estimator 'vanilla'"),
    ],
)
def test_bad_input_raises_config_error(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        call()

"""Group estimators in closed form: how often a group carries no signal, and what it updates.

For an input whose sampled reward takes value ``v_j`` with probability ``q_j``, a group of
``G`` independent samples has all-equal rewards (zero group STD, no GRPO/RLOO signal) with
probability

    P(all equal) = Σ_j q_j^G                                  (docs/paper.md §7)

which for a binary reward with success probability ``p`` is ``d = p^G + (1-p)^G``, the
quantity production libraries log as ``frac_reward_zero_std``.

The expected update along the correct output (docs/paper.md §7, past the paper). One
input, a flat softmax policy ``π = softmax(z)`` over outputs, one correct output ``c`` with
``p = π_c``, reward ``r⁺`` on ``c`` and ``r⁻`` elsewhere (``Δ = r⁺ - r⁻``; ``±1`` by default,
as the environments use). An estimator's update is ``ĝ = (1/G) Σ_i A_i ∇_z log π(y_i)`` and
``(∇_z log π(y))_c = 1[y = c] - p``, so its component along ``z_c`` is

    u = (1/G) Σ_i A_i (1[y_i = c] - p).

For the centred estimators (``Σ_i A_i = 0``) ``u = k A⁺ / G`` depends on the group only
through its number ``k ~ Binomial(G, p)`` of successes, ``A⁺`` being a success's advantage:

    u_k = k (G-k) Δ / (G² σ_k)    with σ_k = (G-1)/G (RLOO), 1 (Dr. GRPO, and REINFORCE with
                                  the batch-mean baseline when the batch is the group, M = G),
                                  s_k + ε (GRPO; s_k = Δ sqrt(k(G-k)/(G(G-1))), Bessel std),

and ``E u = Σ_{k=1}^{G-1} C(G,k) p^k (1-p)^(G-k) u_k`` (all-equal groups, ``k ∈ {0, G}``,
give 0). Summing the polynomial cases:

    reinforce, rloo       E u = Δ p (1-p)                       (= ∂V/∂z_c; Kool et al. 2019)
    reinforce_baseline    E u = (1 - 1/G) Δ p (1-p)             (M = G)
    dr_grpo               E u = ((G-1)/G) Δ p (1-p)             (Liu et al. 2025)
    grpo                  E u = Σ_{k=1}^{G-1} C(G,k) p^k (1-p)^(G-k) k(G-k)Δ / (G²(s_k + ε))
                              (Shao et al. 2024; for ε = 0 the term is sqrt(k(G-k)(G-1)/G³), no Δ)
    dapo, B tries         E u = (1 - d^B)/(1 - d) · E u_grpo    (Yu et al. 2025)

DAPO keeps the first informative group among ``B = max_resample`` tries (dropped, zero
update, if all ``B`` are all-equal) and normalises by the batch size, as
:mod:`rftgrad.finetune.advantages` does. It draws ``G·min(T, B)`` outputs per input,
``T ~ Geometric(1 - d)`` the try of the first informative group, so

    E samples_dapo = G (1 - d^B)/(1 - d)   and   E u_dapo / E samples_dapo = E u_grpo / G:

per sampled output DAPO's expected update is GRPO's, for every ``B``.

As ``p → 0`` at fixed ``G`` and ``B`` the ``k = 1`` term dominates: every estimator's expected
update vanishes linearly, ``E u ≈ C p`` (:func:`asymptotic_update`; constants ``Δ``,
``(G-1)Δ/G``, ``G u_1 = (G-1)Δ/(G(Δ/√G + ε))`` for GRPO, ``B G u_1`` for DAPO). Dividing by the
group std rescales the surviving groups (GRPO's constant grows like ``√G``) but cannot revive
the all-equal ones. Only per *kept* group with unbounded resampling (``B → ∞``) is the update
O(1), ``E u → u_1`` (power 0), at an expected cost of ``G/(1 - d) ≈ 1/p`` sampled outputs
(``≈ 1/(Gp)`` groups) per kept group.
"""

from __future__ import annotations

import math
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.stats import binom

from rftgrad.errors import ConfigError

if TYPE_CHECKING:  # sympy is imported when first needed (leading_term_sympy), not with rftgrad.theory
    import sympy as sp

__all__ = [
    "ESTIMATOR_FORMS",
    "GROUP_FORMS",
    "Asymptote",
    "prob_all_equal",
    "frac_reward_zero_std",
    "informative_prob",
    "conditional_update",
    "dapo_factor",
    "expected_update",
    "expected_samples",
    "asymptotic_update",
    "leading_term_sympy",
    "fit_power",
]

#: estimator -> its expected update along the correct output (formulas in the module doc).
ESTIMATOR_FORMS = {
    "reinforce": "Δ p(1-p)",
    "reinforce_baseline": "(1 - 1/G) Δ p(1-p) (batch-mean baseline over the group, M = G)",
    "rloo": "Δ p(1-p)",
    "dr_grpo": "((G-1)/G) Δ p(1-p)",
    "grpo": "Σ_k C(G,k) p^k (1-p)^(G-k) k(G-k)Δ/(G²(s_k + ε))",
    "dapo": "(1 - d^B)/(1 - d) · grpo, d = p^G + (1-p)^G",
}
#: estimators whose advantage needs a group of G >= 2 samples.
GROUP_FORMS = ("rloo", "dr_grpo", "grpo", "dapo")


class Asymptote(NamedTuple):
    """``E u ≈ constant · p^power`` as ``p → 0``."""

    power: float
    constant: float


def prob_all_equal(value_probs: npt.ArrayLike, group_size: int) -> np.ndarray:
    r"""``Σ_j q_j^G`` over the last axis: the chance that ``G`` samples share one reward value.

    .. math::

        P(\text{all equal}) = \sum_j q_j^G

    with ``q_j`` the probability of reward value ``v_j``: a group with all-equal rewards has zero
    advantage under every centred estimator, no signal (past the paper, docs/paper.md §7).

    Args:
        * ``value_probs``: ``(..., K)`` probabilities ``q_j`` of the reward values (rows sum to 1).
        * ``group_size``: ``G >= 1``.

    Returns:
        ``(...)`` probabilities (1 for ``G = 1``).
    """
    probs = np.asarray(value_probs, dtype=np.float64)
    if group_size < 1:
        raise ConfigError(f"group size must be >= 1, got {group_size}")
    if probs.ndim == 0 or np.any(probs < 0) or not np.allclose(probs.sum(-1), 1.0, atol=1e-9):
        raise ConfigError("value_probs must be non-negative with rows summing to 1 over the last axis")
    return (probs**group_size).sum(-1)


def frac_reward_zero_std(success_prob: npt.ArrayLike, group_size: int) -> np.ndarray:
    r"""Binary reward: ``p^G + (1-p)^G``, elementwise over ``success_prob``.

    .. math::

        d = p^G + (1 - p)^G,

    :func:`prob_all_equal` for the two values of a binary reward with success probability :math:`p`,
    the quantity TRL logs as ``frac_reward_zero_std`` (docs/paper.md §7, past the paper).
    """
    p = np.asarray(success_prob, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ConfigError("success_prob must lie in [0, 1]")
    return prob_all_equal(np.stack([p, 1.0 - p], axis=-1), group_size)


# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATOR_FORMS:
        raise ConfigError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATOR_FORMS)}")
    return estimator


def _is_whole(value: float) -> bool:
    """An integer, or a float with an integer value (not NaN or inf)."""
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and float(value).is_integer()


def _check_group(group_size: int, estimator: str) -> int:
    minimum = 2 if estimator in GROUP_FORMS else 1
    if not _is_whole(group_size) or group_size < minimum:
        raise ConfigError(f"group size G must be an integer >= {minimum} for {estimator}, got {group_size}")
    return int(group_size)


def _check_probability(success_prob: npt.ArrayLike) -> np.ndarray:
    p = np.asarray(success_prob, dtype=np.float64)
    if not np.all((p >= 0) & (p <= 1)):  # also refuses NaN
        raise ConfigError(f"success probability p must lie in [0, 1], got {success_prob}")
    return p


def _check_setting(success: float, failure: float, std_eps: float, max_resample: float) -> float:
    """``Δ = r⁺ - r⁻`` after checking the rewards, ``ε`` and ``B``."""
    if not (math.isfinite(success) and math.isfinite(failure) and success > failure):
        raise ConfigError(f"the success reward must exceed the failure reward, got {success} and {failure}")
    if not (math.isfinite(std_eps) and std_eps >= 0):
        raise ConfigError(f"std_eps must be finite and >= 0, got {std_eps}")
    if not (max_resample == math.inf or (_is_whole(max_resample) and max_resample >= 1)):
        raise ConfigError(f"max_resample B must be an integer >= 1 or math.inf, got {max_resample}")
    return success - failure


# ---------------------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------------------


def informative_prob(success_prob: npt.ArrayLike, group_size: int) -> np.ndarray:
    r"""``1 - d = 1 - p^G - (1-p)^G``: a binary group of ``G`` carries signal (docs/paper.md §7).

    .. math::

        1 - d = 1 - p^G - (1 - p)^G

    Computed as ``-expm1(G log(1-p)) - p^G`` (mirrored for ``p > 1/2``), exact to rounding
    even where ``1 - d ≈ Gp`` is tiny."""
    p = _check_probability(success_prob)
    group = _check_group(group_size, "grpo")
    low = np.minimum(p, 1.0 - p)  # the formula is symmetric in p <-> 1-p
    with np.errstate(divide="ignore"):
        return -np.expm1(group * np.log1p(-low)) - low**group


def conditional_update(
    successes: npt.ArrayLike,
    group_size: int,
    estimator: str,
    *,
    success: float = 1.0,
    failure: float = -1.0,
    std_eps: float = 1e-4,
) -> np.ndarray:
    r"""``u_k = k(G-k)Δ / (G² σ_k)``: the update along ``z_c`` of a group with ``k`` successes.

    .. math::

        u_k = \frac{k\,(G - k)\,\Delta}{G^2 \sigma_k}, \qquad
        \sigma_k = \begin{cases}
            (G - 1)/G & \text{RLOO} \\
            1 & \text{Dr. GRPO, group-mean baseline} \\
            s_k + \varepsilon, \quad s_k = \Delta \sqrt{\dfrac{k (G - k)}{G (G - 1)}} & \text{GRPO, DAPO's kept group}
        \end{cases}

    For the centred estimators :math:`\sum_i A_i = 0`, so
    :math:`u = \frac{1}{G} \sum_i A_i (1[y_i = c] - p) = k A^+ / G` with a success's advantage
    :math:`A^+ = (G - k)\Delta / (G \sigma_k)`: :math:`\sigma_k = (G-1)/G` for RLOO (Kool et al.
    2019), 1 for Dr. GRPO (Liu et al. 2025) and the group-mean baseline, and
    :math:`s_k + \varepsilon` with the Bessel std :math:`s_k` for GRPO and DAPO's kept
    group (Shao et al. 2024; Yu et al. 2025). :math:`u_0 = u_G = 0` (no signal). Past the paper,
    docs/paper.md §7.

    Args:
        * ``successes``: ``k`` in ``0..G`` (any shape).
        * ``group_size``: ``G >= 2``.
        * ``estimator``: ``rloo``, ``reinforce_baseline``, ``dr_grpo``, ``grpo`` or ``dapo``
          (REINFORCE is not centred; its ``u`` depends on ``p`` too).
    """
    if _check_estimator(estimator) == "reinforce":
        raise ConfigError("conditional_update needs a centred estimator; reinforce's update depends on p too")
    group = _check_group(group_size, "grpo")
    delta = _check_setting(success, failure, std_eps, 1)
    k = np.asarray(successes, dtype=np.float64)
    if not np.all((k >= 0) & (k <= group) & (k == np.round(k))):
        raise ConfigError(f"successes k must be integers in [0, G={group}], got {successes}")
    spread = k * (group - k) * delta / group**2
    if estimator == "rloo":
        return spread * group / (group - 1)
    if estimator in ("dr_grpo", "reinforce_baseline"):
        return spread
    std = delta * np.sqrt(k * (group - k) / (group * (group - 1)))  # s_k, Bessel-corrected
    denominator = std + std_eps
    return np.divide(spread, denominator, out=np.zeros_like(spread), where=denominator > 0)


def dapo_factor(success_prob: npt.ArrayLike, group_size: int, max_resample: float) -> np.ndarray:
    r"""``(1 - d^B)/(1 - d) = Σ_{t<B} d^t``: DAPO's gain over GRPO and its expected tries per input
    (Yu et al. 2025; :func:`rftgrad.finetune.advantages.first_informative_group`).

    .. math::

        \frac{1 - d^B}{1 - d} = \sum_{t=0}^{B-1} d^t, \qquad d = p^G + (1 - p)^G

    ``B = math.inf`` gives ``1/(1 - d)`` (``inf`` where ``d = 1``, i.e. ``p ∈ {0, 1}``); where ``d = 1``
    a finite ``B`` gives ``B``."""
    _check_setting(1.0, 0.0, 0.0, max_resample)
    informative = informative_prob(success_prob, group_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        if max_resample == math.inf:
            return np.where(informative > 0, 1.0 / informative, np.inf)
        tries = -np.expm1(max_resample * np.log1p(-informative)) / informative  # (1 - d^B)/(1 - d)
        return np.where(informative > 0, tries, float(max_resample))


def expected_update(
    success_prob: npt.ArrayLike,
    group_size: int,
    estimator: str,
    *,
    success: float = 1.0,
    failure: float = -1.0,
    std_eps: float = 1e-4,
    max_resample: float = 4,
) -> np.ndarray:
    r"""``E u``: the expected update along the correct output's logit ``z_c`` (module doc).

    With :math:`\Delta = r^+ - r^-`, :math:`\mathbb{E} u` is

    * ``reinforce``, ``rloo``: :math:`\Delta\, p (1 - p)` (Williams 1992; Kool et al. 2019), the exact
      gradient :math:`\partial V / \partial z_c` (Razin et al., ICLR 2024, Section 3);
    * ``reinforce_baseline``: :math:`(1 - 1/G)\, \Delta\, p (1 - p)` (batch-mean baseline, batch = the group);
    * ``dr_grpo``: :math:`\frac{G - 1}{G}\, \Delta\, p (1 - p)` (Liu et al. 2025);
    * ``grpo``: :math:`\sum_{k=1}^{G-1} \binom{G}{k} p^k (1 - p)^{G-k} u_k` with
      :math:`u_k = \frac{k (G - k) \Delta}{G^2 (s_k + \varepsilon)}` (:func:`conditional_update`; Shao et al. 2024);
    * ``dapo``: :math:`\frac{1 - d^B}{1 - d}\, \mathbb{E} u_{\text{grpo}}` with :math:`d = p^G + (1 - p)^G`
      (Yu et al. 2025),

    matching :func:`rftgrad.finetune.advantages.advantages` (Bessel std plus ``std_eps``) and
    DAPO's dynamic sampling with ``max_resample = B`` tries, normalised by the batch size.
    ``B = math.inf`` gives the update per *kept* group, ``E u_grpo/(1 - d)``, continued to
    ``p ∈ {0, 1}`` by its limit ``u_1``. docs/paper.md §7.

    Args:
        * ``success_prob``: ``p ∈ [0, 1]`` (any shape).
        * ``group_size``: ``G`` (``>= 2`` for rloo, dr_grpo, grpo, dapo; ``>= 1`` otherwise).
        * ``estimator``: one of :data:`ESTIMATOR_FORMS`.
        * ``success``, ``failure``: ``r⁺ > r⁻``.
        * ``std_eps``: ``ε >= 0`` in GRPO's denominator.
        * ``max_resample``: DAPO's ``B >= 1`` or ``math.inf``.

    Returns:
        ``E u`` with the shape of ``success_prob``.
    """
    _check_estimator(estimator)
    p = _check_probability(success_prob)
    group = _check_group(group_size, estimator)
    delta = _check_setting(success, failure, std_eps, max_resample)
    base = delta * p * (1.0 - p)
    if estimator in ("reinforce", "rloo"):
        return base
    if estimator in ("reinforce_baseline", "dr_grpo"):
        return (1.0 - 1.0 / group) * base
    k = np.arange(1, group)  # (G-1,) the informative counts
    u_k = conditional_update(k, group, "grpo", success=success, failure=failure, std_eps=std_eps)
    grpo = (binom.pmf(k, group, p[..., None]) * u_k).sum(-1)  # (...,)
    if estimator == "grpo":
        return grpo
    if max_resample == math.inf:  # per kept group: E u_grpo/(1 - d), continued by its limit u_1 where d = 1
        informative = informative_prob(p, group)
        return np.where(informative > 0, grpo / np.where(informative > 0, informative, 1.0), u_k[0])
    return dapo_factor(p, group, max_resample) * grpo


def expected_samples(
    success_prob: npt.ArrayLike, group_size: int, estimator: str, max_resample: float = 4
) -> np.ndarray:
    r"""Expected sampled outputs per input and step: ``G``, and ``G (1 - d^B)/(1 - d)`` for DAPO
    (``G/(1 - d) ≈ 1/p`` per kept group when ``B = ∞``; Yu et al. 2025, docs/paper.md §7).

    .. math::

        \mathbb{E}[\text{samples}_{\text{dapo}}] = G\, \frac{1 - d^B}{1 - d}, \qquad
        \frac{\mathbb{E} u_{\text{dapo}}}{\mathbb{E}[\text{samples}_{\text{dapo}}]}
        = \frac{\mathbb{E} u_{\text{grpo}}}{G}:

    per sampled output DAPO's expected update is GRPO's, for every :math:`B`.
    """
    _check_estimator(estimator)
    p = _check_probability(success_prob)
    group = _check_group(group_size, estimator)
    if estimator != "dapo":
        return np.full(p.shape, float(group))
    return group * dapo_factor(p, group, max_resample)


def asymptotic_update(
    group_size: int,
    estimator: str,
    *,
    success: float = 1.0,
    failure: float = -1.0,
    std_eps: float = 1e-4,
    max_resample: float = 4,
) -> Asymptote:
    r"""``E u ≈ C p^a`` as ``p → 0`` at fixed ``G`` and ``B`` (docs/paper.md §7).

    Only groups with :math:`k = 1` success matter (:math:`P \approx G p`), so :math:`C = G u_1` and
    :math:`a = 1` (past the paper; like the exact gradient :math:`\Delta\, p(1 - p)` of Razin et al.,
    ICLR 2024, every estimator's update vanishes linearly in :math:`p`):

    * ``reinforce``, ``rloo``: :math:`C = \Delta`;
    * ``reinforce_baseline``, ``dr_grpo``: :math:`C = (G - 1)\Delta / G`;
    * ``grpo``: :math:`C = \frac{(G - 1)\Delta}{G (\Delta/\sqrt{G} + \varepsilon)}`
      (:math:`(G - 1)/\sqrt{G}` for :math:`\varepsilon = 0`);
    * ``dapo``, :math:`B` finite: :math:`C = B` times GRPO's (:math:`(1 - d^B)/(1 - d) \to B`);
    * ``dapo``, :math:`B = \infty`: :math:`a = 0`,
      :math:`C = u_1 = \frac{(G - 1)\Delta}{G^2 (\Delta/\sqrt{G} + \varepsilon)}` (per kept group).

    :func:`leading_term_sympy` derives the same numbers by series expansion.
    """
    _check_estimator(estimator)
    group = _check_group(group_size, estimator)
    delta = _check_setting(success, failure, std_eps, max_resample)
    if estimator in ("reinforce", "rloo"):
        return Asymptote(1.0, delta)
    if estimator in ("reinforce_baseline", "dr_grpo"):
        return Asymptote(1.0, (group - 1) * delta / group)
    u_1 = float(conditional_update(1, group, "grpo", success=success, failure=failure, std_eps=std_eps))
    if estimator == "grpo":
        return Asymptote(1.0, group * u_1)
    if max_resample == math.inf:
        return Asymptote(0.0, u_1)
    return Asymptote(1.0, max_resample * group * u_1)


@cache
def _update_expression(
    group_size: int, estimator: str, success: sp.Rational, failure: sp.Rational, std_eps: sp.Rational, tries: float
) -> tuple[sp.Symbol, sp.Expr]:
    """``(p, E u)`` as a sympy expression, derived from the advantage definitions (see :func:`leading_term_sympy`)."""
    import sympy as sp

    p = sp.Symbol("p", positive=True)
    group = group_size
    total = sp.Integer(0)
    for k in range(group + 1):
        rewards = [success] * k + [failure] * (group - k)
        mean = sum(rewards) / group
        if estimator == "reinforce":
            adv = list(rewards)
        elif estimator == "rloo":
            adv = [r - (sum(rewards) - r) / (group - 1) for r in rewards]
        elif estimator in ("dr_grpo", "reinforce_baseline"):
            adv = [r - mean for r in rewards]
        else:  # grpo, dapo: (r - mean) / (Bessel std + ε), 0 for an all-equal group
            std = sp.sqrt(sum((r - mean) ** 2 for r in rewards) / (group - 1))
            adv = [(r - mean) / (std + std_eps) if std != 0 else sp.Integer(0) for r in rewards]
        score = [1 - p] * k + [-p] * (group - k)  # 1[y_i = c] - p
        update = sum(a * s for a, s in zip(adv, score, strict=True)) / group
        total += sp.binomial(group, k) * p**k * (1 - p) ** (group - k) * update
    if estimator == "dapo":
        d = p**group + (1 - p) ** group
        total *= 1 / (1 - d) if tries == math.inf else sum(d**t for t in range(int(tries)))
    return p, total


def leading_term_sympy(
    group_size: int,
    estimator: str,
    *,
    success: float = 1.0,
    failure: float = -1.0,
    std_eps: float = 1e-4,
    max_resample: float = 4,
) -> Asymptote:
    """``(a, C)`` of ``E u ≈ C p^a`` by computer algebra, independently of :func:`asymptotic_update`.

    Builds ``E u = Σ_{k=0}^{G} C(G,k) p^k (1-p)^(G-k) (1/G) Σ_i A_i (1[y_i=c] - p)`` with the
    advantages written out from their definitions for a group of ``k`` successes (RLOO, the
    group mean, GRPO's Bessel std plus ``ε``; DAPO times ``Σ_{t<B} d^t`` or ``1/(1-d)``) and takes
    its leading term at ``p = 0`` with sympy (rewards and ``ε`` as exact rationals). Slow for
    large ``G``; the tests use ``G <= 8``. docs/paper.md §7.
    """
    import sympy as sp

    _check_estimator(estimator)
    group = _check_group(group_size, estimator)
    _check_setting(success, failure, std_eps, max_resample)
    exact = [sp.nsimplify(value, rational=True) for value in (success, failure, std_eps)]
    p, expression = _update_expression(group, estimator, *exact, float(max_resample))
    numerator, denominator = sp.fraction(sp.together(expression))
    lowest = [sp.Poly(sp.expand(part), p).terms()[-1] for part in (numerator, denominator)]  # ((degree,), coeff)
    power = lowest[0][0][0] - lowest[1][0][0]
    return Asymptote(float(power), float(sp.N(lowest[0][1] / lowest[1][1], 30)))


def fit_power(success_prob: npt.ArrayLike, update: npt.ArrayLike) -> Asymptote:
    """Least-squares fit of ``ln u = a ln p + ln C``: the measured power ``a`` and constant ``C``
    (compare with :func:`asymptotic_update` over a window of small ``p``)."""
    p = np.asarray(success_prob, dtype=np.float64)
    u = np.asarray(update, dtype=np.float64)
    if p.shape != u.shape or p.ndim != 1 or p.size < 2 or not np.all((p > 0) & (u > 0)):
        raise ConfigError("fit_power needs at least two points with positive p and u, as 1-D arrays of one shape")
    if np.unique(p).size < 2:
        raise ConfigError("fit_power needs at least two distinct p")
    slope, intercept = np.polyfit(np.log(p), np.log(u), 1)
    return Asymptote(float(slope), float(np.exp(intercept)))

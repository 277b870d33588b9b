r"""What makes a reward model a good teacher: the exact pieces (past the paper; Razin et al. 2025).

Razin, Wang, Strauss, Wei, Lee, Arora, *What Makes a Reward Model a Good Teacher? An Optimization
Perspective* (NeurIPS 2025, arXiv 2503.15477) argue from Theorem 1 of Razin et al. (ICLR 2024,
:math:`\lVert \nabla_\theta V \rVert \le 6 L \gamma\, \mathrm{STD}^{2/3}`) that a reward model (RM)
inducing a small reward variance under the policy gives a flat objective however *accurate* it is.
Here everything is exact, on a tabular softmax policy with one output token (a contextual bandit):

* inputs :math:`i = 1..N`, outputs :math:`k = 1..K`, a ground-truth reward :math:`g_i \in [-1, 1]^K`
  (:func:`ground_truth`) and proxy rewards :math:`m_i = r_{\mathrm{RM}}(x_i, \cdot)` from named families
  (:func:`proxy_rewards`);
* initial policies :math:`\pi_i(0)` with a *pretrained preference* (:func:`initial_logits`): mass
  concentrated where :math:`g` is near a centre, plus a uniform floor;
* accuracy (:func:`pairwise_accuracy`) under a distribution over pairs, reward variance
  (:func:`reward_variance`);
* RFT on the proxy by exact gradient flow of the *mean* objective :math:`\frac1N \sum_i V_{\mathrm{RM}}(x_i)`,
  :math:`dz_i/dt = \frac1N\, \pi_i \odot (m_i - V_{\mathrm{RM},i})` (:func:`rftgrad.theory.rft_gradient`;
  ``steps × lr`` of exact gradient ascent tends to this time as ``lr → 0``), scored by the ground truth
  :math:`\bar V_G(t) = \frac1N \sum_i \pi_i(t) \cdot g_i` (:func:`teaching_flow`);
* a lower bound on the time for :math:`\bar V_G` to rise by :math:`\Delta` (:func:`time_lower_bound`).

**The rate, derived here** (the 2025 paper's Theorem 1 is recalled as
:math:`t_\Delta \ge \Omega(\mathbb E_x \mathrm{Var}_{\pi(0)}[r_{\mathrm{RM}}]^{-1/3})`; we could not read
its exact statement, docs/experiments.md). For one input write :math:`d_k = m_k - V_{\mathrm{RM}}`,
:math:`S = \mathrm{STD}_{\pi}(m) = (\sum_k \pi_k d_k^2)^{1/2}`. Then :math:`\pi_k \lvert d_k \rvert \le
\sqrt{\pi_k d_k^2} \le S` and :math:`\partial \mathrm{Var}/\partial z_k = \pi_k (d_k^2 - \mathrm{Var})`, so

.. math::

    \Big\lvert \frac{d\,\mathrm{Var}}{dt} \Big\rvert = \frac1N \Big\lvert \sum_k \pi_k^2 d_k (d_k^2 - S^2) \Big\rvert
    \le \frac1N \Big( \max_k \pi_k \lvert d_k \rvert \sum_k \pi_k d_k^2 + S^2 \sum_k \pi_k \lvert d_k \rvert \Big)
    \le \frac{2 S^3}{N},

i.e. :math:`dS/dt \le S^2/N` and :math:`S(t) \le S_0 / (1 - S_0 t/N)`: the RM's own flow cannot raise its
variance fast. The ground truth moves at :math:`dV_{G}/dt = \frac1N \langle \pi \odot (g - V_G),\,
\pi \odot d \rangle \le \frac1N\, \sigma_G\, S` with :math:`\sigma_G = (\max g - \min g)/2 \ge \mathrm{STD}_\pi(g)`
(Cauchy-Schwarz and the logit bound :math:`\lVert \pi \odot d \rVert \le \sqrt{\max \pi}\, S`, docs/paper.md
§2). Integrating, with :math:`\tau = t/N`:

.. math::

    \bar V_G(t) - \bar V_G(0) \le \frac1N \sum_i \sigma_{G,i} \ln \frac{1}{1 - S_{0,i}\, \tau}, \qquad
    \text{hence} \qquad t_\Delta \ge N\, \frac{1 - e^{-\Delta/\sigma_G}}{\max_i S_{0,i}}
    \ge \sqrt{N}\, \frac{1 - e^{-\Delta/\sigma_G}}{\sqrt{\mathbb E_i \mathrm{Var}_{\pi(0)}[m_i]}},

with :math:`\sigma_G = \max_i \sigma_{G,i} \le 1`: a :math:`\mathrm{Var}^{-1/2}` rate (from the logit-space
form of the sharpened bound, :math:`\gamma \sqrt L\, \mathrm{STD}`, rather than the paper's
:math:`\mathrm{STD}^{2/3}`, which gives the weaker :math:`-1/3`). :func:`time_lower_bound` solves the first
inequality exactly (bisection); :func:`variance_rate_bound` is the last one, a curve in the mean variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rftgrad.errors import ConfigError
from rftgrad.theory.dynamics import logit_gradient_jacobian, rft_gradient, softmax

__all__ = [
    "PROXY_FAMILIES",
    "POLICY_NAMES",
    "ProxySpec",
    "parse_proxy",
    "ground_truth",
    "initial_logits",
    "proxy_rewards",
    "pairwise_accuracy",
    "reward_variance",
    "mean_velocity",
    "TeachingRun",
    "teaching_flow",
    "ascent_hitting_time",
    "time_lower_bound",
    "variance_rate_bound",
]

#: proxy family -> what its parameter means (``family:parameter`` in ``Config.proxies``).
PROXY_FAMILIES = {
    "scaled": "s · r_G (accuracy 1, variance s² · Var[r_G]); parameter s in (0, 1]",
    "compressA": "r_G with slope c inside the band policy A prefers, 1 outside, rescaled to [-1, 1] (accuracy 1)",
    "compressB": "the same around policy B's preferred band",
    "noisy": "(r_G + σ ε) / max|r_G + σ ε|, ε ~ N(0, 1) per output (accuracy < 1, large variance); parameter σ",
    "indicator": "+1 on the top-q share of outputs by r_G, −1 elsewhere (the ICLR 2024 sparse reward); parameter q",
}
#: the two initial policies, in ``Config.policy_centers`` order.
POLICY_NAMES = ("A", "B")
#: solve_ivp settings of the teaching flow: LSODA with the analytic Jacobian (as rftgrad.theory.solve_flow).
METHOD, RTOL, ATOL = "LSODA", 1e-10, 1e-12


@dataclass(frozen=True)
class ProxySpec:
    """One proxy reward model: a family of :data:`PROXY_FAMILIES` and its parameter."""

    family: str
    parameter: float

    @property
    def name(self) -> str:
        """``family:parameter``, as in the config."""
        return f"{self.family}:{self.parameter:g}"


def parse_proxy(text: str) -> ProxySpec:
    """``"noisy:0.5"`` -> ``ProxySpec("noisy", 0.5)``; raises :class:`ConfigError` on an unknown family or bad value."""
    family, _, value = text.partition(":")
    if family not in PROXY_FAMILIES:
        raise ConfigError(f"unknown proxy family {family!r} in {text!r}; choose one of {', '.join(PROXY_FAMILIES)}")
    try:
        parameter = float(value)
    except ValueError:
        raise ConfigError(f"proxy {text!r} needs a number after ':', e.g. {family}:0.1") from None
    bounded = {"scaled": (0, 1), "compressA": (0, 1), "compressB": (0, 1), "indicator": (0, 1)}
    low, high = bounded.get(family, (0, math.inf))
    if not (low < parameter <= high and math.isfinite(parameter)):
        raise ConfigError(f"proxy {text!r}: the parameter of {family} must lie in ({low}, {high}]")
    return ProxySpec(family, parameter)


def ground_truth(num_inputs: int, num_outputs: int, seed: int) -> np.ndarray:
    """``r_G``: per input ``K`` rewards drawn uniformly from ``[-1, 1]`` (distinct almost surely), ``(N, K)``."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(num_inputs, num_outputs))


def initial_logits(rewards: np.ndarray, center: float, width: float, floor: float) -> np.ndarray:
    r"""Logits of a pretrained preference: :math:`\pi_k \propto (1 - \eta)\, b_k / \sum_j b_j + \eta / K`, with
    :math:`b_k = \exp(-(g_k - c)^2 / 2w^2)` the outputs whose ground-truth reward is near ``center`` and
    :math:`\eta` = ``floor`` the uniform share; returns :math:`\log \pi`. ``rewards``: ``(N, K)`` -> ``(N, K)``."""
    bump = np.exp(-((rewards - center) ** 2) / (2 * width**2))  # (N, K)
    probs = (1 - floor) * bump / bump.sum(-1, keepdims=True) + floor / rewards.shape[-1]
    return np.log(probs)


def proxy_rewards(
    spec: ProxySpec, truth: np.ndarray, centers: tuple[float, float], band: float, seed: int
) -> np.ndarray:
    """The proxy ``r_RM`` of ``spec`` on ``truth`` ``(N, K)`` -> ``(N, K)`` in ``[-1, 1]`` (:data:`PROXY_FAMILIES`).

    ``compressA``/``compressB`` compress ``r_G`` by the factor ``c`` inside ``[center − band, center + band]`` of
    policy A/B (a strictly increasing map, so accuracy 1), then rescale affinely onto ``[-1, 1]`` per input.
    ``noisy`` draws its noise from ``seed`` and the parameter (each σ its own draw)."""
    p = spec.parameter
    if spec.family == "scaled":
        return p * truth
    if spec.family in ("compressA", "compressB"):
        center = centers[POLICY_NAMES.index(spec.family[-1])]
        low, high = center - band, center + band
        # f' = c on [low, high], 1 outside: f(r) = r - (1 - c) · |[low, high] ∩ [-inf, r]|
        inside = np.clip(truth, low, high) - low  # (N, K)
        mapped = truth - (1 - p) * inside
        lo, hi = mapped.min(-1, keepdims=True), mapped.max(-1, keepdims=True)
        return 2 * (mapped - lo) / (hi - lo) - 1
    if spec.family == "noisy":
        rng = np.random.default_rng([seed, int(round(p * 1e6))])
        noisy = truth + p * rng.standard_normal(truth.shape)
        return noisy / np.abs(noisy).max(-1, keepdims=True)
    ranks = truth.argsort(-1).argsort(-1)  # indicator: 0 = worst
    top = max(1, int(round(p * truth.shape[-1])))
    return np.where(ranks >= truth.shape[-1] - top, 1.0, -1.0)


def pairwise_accuracy(proxy: np.ndarray, truth: np.ndarray, probs: np.ndarray) -> np.ndarray:
    r"""Accuracy of ``proxy`` against ``truth`` on pairs :math:`(y, y') \sim \pi \otimes \pi`, per input.

    .. math::

        \mathrm{acc}_\pi = \frac{\sum_{y, y'} \pi(y)\pi(y')\, [g_y > g_{y'}]\,
        \big([m_y > m_{y'}] + \tfrac12 [m_y = m_{y'}]\big)}{\sum_{y, y'} \pi(y)\pi(y')\, [g_y > g_{y'}]}

    Pairs the ground truth ties carry no preference and are left out; a pair the RM ties counts ½ (a coin
    flip). Uniform pairs: ``probs`` uniform. ``proxy``, ``truth``, ``probs``: ``(N, K)`` -> ``(N,)``.
    """
    prefer = truth[:, :, None] > truth[:, None, :]  # (N, K, K): y better than y' under r_G
    agree = (proxy[:, :, None] > proxy[:, None, :]) + 0.5 * (proxy[:, :, None] == proxy[:, None, :])
    weight = probs[:, :, None] * probs[:, None, :] * prefer  # (N, K, K)
    total = weight.sum((1, 2))
    if np.any(total <= 0):
        raise ConfigError("the ground truth ties every pair of some input: accuracy is undefined; use distinct rewards")
    return (weight * agree).sum((1, 2)) / total


def reward_variance(rewards: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``Var_{y~π}[r(x, y)] = Σ_y π(y) (r_y − V)²``, ``V = π · r``, per input: ``(N, K)`` -> ``(N,)``."""
    value = (probs * rewards).sum(-1, keepdims=True)
    return (probs * (rewards - value) ** 2).sum(-1)


def mean_velocity(logits: np.ndarray, proxy: np.ndarray) -> np.ndarray:
    r"""The gradient of the mean proxy objective in the logits, :math:`\frac1N \pi_i \odot (m_i - \pi_i \cdot m_i)`:
    :func:`rftgrad.theory.rft_gradient` over ``N`` without its range check (done once per run, since this is an
    ODE right-hand side). ``logits``, ``proxy``: ``(N, K)`` -> ``(N, K)``."""
    probs = softmax(logits)
    return probs * (proxy - (probs * proxy).sum(-1, keepdims=True)) / len(logits)


@dataclass(frozen=True)
class TeachingRun:
    """One exact RFT run on a proxy, scored by the ground truth."""

    hit_times: np.ndarray
    """``(R,)`` first flow time with ``V̄_G ≥ V̄_G(0) + Δ_r`` per rise ``Δ_r`` (``inf``: not reached by ``t_max``)."""
    times: np.ndarray
    """``(T,)`` times of the stored trajectory (the grid up to the largest rise's hit, or ``t_max``)."""
    truth_value: np.ndarray
    """``(T,)`` ``V̄_G`` at those times."""
    proxy_value: np.ndarray
    """``(T,)`` ``V̄_RM`` at those times."""


def teaching_flow(
    logits0: np.ndarray, proxy: np.ndarray, truth: np.ndarray, rises: np.ndarray, t_max: float, t_grid: np.ndarray
) -> TeachingRun:
    r"""Exact gradient flow of the mean proxy objective,
    :math:`dz_i/dt = \frac1N \pi_i \odot (m_i - V_{\mathrm{RM},i})`, until
    :math:`\bar V_G = \frac1N \sum_i \pi_i \cdot g_i` has risen by the largest of ``rises`` or ``t = t_max``.

    scipy ``solve_ivp`` (LSODA with the block-diagonal analytic Jacobian of
    :func:`rftgrad.theory.logit_gradient_jacobian`, ``rtol = 1e-10``, ``atol = 1e-12``), one event per rise on
    :math:`\bar V_G(t) - \bar V_G(0) - \Delta` crossing upwards (the largest one terminal); the trajectory comes
    from the dense output at the ``t_grid`` points up to the end. ``logits0``, ``proxy``, ``truth``: ``(N, K)``;
    ``rises``: ``(R,)``.
    """
    from scipy.integrate import solve_ivp

    n, k = logits0.shape
    rises = np.asarray(rises, dtype=np.float64)
    start = float((softmax(logits0) * truth).sum(-1).mean())
    rft_gradient(logits0, proxy)  # validates the proxy's range once (RewardRangeError outside [-1, 1])

    def rhs(_t: float, state: np.ndarray) -> np.ndarray:
        return mean_velocity(state.reshape(n, k), proxy).ravel()

    def jacobian(_t: float, state: np.ndarray) -> np.ndarray:
        z = state.reshape(n, k)
        out = np.zeros((n * k, n * k))
        for i in range(n):
            out[i * k : (i + 1) * k, i * k : (i + 1) * k] = logit_gradient_jacobian(z[i], "rft", rewards=proxy[i]) / n
        return out

    def event(rise: float, terminal: bool) -> Callable[[float, np.ndarray], float]:
        def reached(_t: float, state: np.ndarray) -> float:
            return float((softmax(state.reshape(n, k)) * truth).sum(-1).mean()) - start - rise

        reached.terminal, reached.direction = terminal, 1
        return reached

    events = [event(float(rise), bool(rise == rises.max())) for rise in rises]
    solution = solve_ivp(rhs, (0.0, t_max), logits0.ravel(), method=METHOD, jac=jacobian, events=events,
                         dense_output=True, rtol=RTOL, atol=ATOL)  # fmt: skip
    if solution.status < 0:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    hits = np.array([float(hit[0]) if len(hit) else math.inf for hit in solution.t_events])
    end = float(solution.t[-1])
    times = np.append(t_grid[t_grid < end], end)
    probs = softmax(solution.sol(times).T.reshape(-1, n, k))  # (T, N, K)
    return TeachingRun(hits, times, (probs * truth).sum(-1).mean(-1), (probs * proxy).sum(-1).mean(-1))


def ascent_hitting_time(
    logits0: np.ndarray, proxy: np.ndarray, truth: np.ndarray, rise: float, lr: float, max_steps: int
) -> float:
    """``steps × lr`` of exact gradient ascent on the mean proxy objective (:func:`mean_velocity`) until ``V̄_G`` has
    risen by ``rise``; ``inf`` if ``max_steps`` do not reach it. Tends to :func:`teaching_flow`'s time as ``lr → 0``."""
    rft_gradient(logits0, proxy)  # the range check
    logits = logits0.copy()
    start = float((softmax(logits0) * truth).sum(-1).mean())
    for step in range(1, max_steps + 1):
        logits += lr * mean_velocity(logits, proxy)
        if float((softmax(logits) * truth).sum(-1).mean()) >= start + rise:
            return step * lr
    return math.inf


def time_lower_bound(std0: np.ndarray, sigma_truth: np.ndarray, rise: float) -> float:
    r"""The smallest :math:`t = N\tau` with
    :math:`\frac1N \sum_i \sigma_{G,i} \ln \frac{1}{1 - S_{0,i} \tau} \ge \Delta`: no gradient flow on the
    proxy lifts :math:`\bar V_G` by ``rise`` sooner (the derivation in this module's
    docstring). ``std0``: :math:`S_{0,i} = \mathrm{STD}_{\pi_i(0)}[m_i]` ``(N,)``; ``sigma_truth``: half the
    range of :math:`g_i` ``(N,)``. Bisection to relative 1e-13."""
    std0, sigma = np.asarray(std0, dtype=np.float64), np.asarray(sigma_truth, dtype=np.float64)
    n = len(std0)

    def rise_bound(tau: float) -> float:
        return float(np.mean(sigma * -np.log1p(-np.minimum(std0 * tau, 1.0))))

    low, high = 0.0, 1.0 / std0.max()  # the bound is infinite at tau = 1 / max S0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if rise_bound(mid) < rise else (low, mid)
        if high - low <= 1e-13 * high:
            break
    return n * low


def variance_rate_bound(mean_variance: np.ndarray, num_inputs: int, sigma_truth: float, rise: float) -> np.ndarray:
    r""":math:`t_\Delta \ge \sqrt{N}\, (1 - e^{-\Delta/\sigma_G}) / \sqrt{\mathbb E_i \mathrm{Var}_{\pi(0)}[m_i]}`, the
    :math:`\mathrm{Var}^{-1/2}` curve (module docstring), below :func:`time_lower_bound` for every proxy."""
    return math.sqrt(num_inputs) * -math.expm1(-rise / sigma_truth) / np.sqrt(np.asarray(mean_variance))

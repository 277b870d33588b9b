"""Advantage formulas of the sampled policy-gradient estimators, over ``(R, N, G)`` rewards.

Each formula is in the docstring of the function that computes it: :func:`advantages` (the update
direction and the advantages of REINFORCE, with the batch-mean baseline, RLOO, Dr. GRPO, GRPO and
DAPO's groups; Razin et al., ICLR 2024, Section 3: baselines do not change the expected gradient),
:func:`first_informative_group` (DAPO's dynamic sampling), :func:`clipped_surrogate` (PPO-clip) and
:func:`pass_k_advantages` (pass@k, ``pass_k = k > 1``, RLOO-style); docs/paper.md §7 for the group
estimators.

``binary_update_draws`` runs these formulas on simulated binary rewards and returns each
draw's update along the correct output, the Monte Carlo side of
:mod:`rftgrad.theory.group_updates`' closed forms.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache
from typing import NamedTuple

import torch

from rftgrad.errors import ConfigError
from rftgrad.runtime import generator


def group_std(rewards: torch.Tensor) -> torch.Tensor:
    """Bessel-corrected std of each group, ``(R, N, G) -> (R, N)`` (0 when all are equal)."""
    return rewards.std(dim=-1, correction=1)


def zero_std_groups(rewards: torch.Tensor) -> torch.Tensor:
    r"""``(R, N, G) -> (R, N)`` bool: every reward in the group is equal (no signal).

    For a binary reward with success probability :math:`p` the expected fraction is
    :math:`p^G + (1-p)^G` (what libraries log as ``frac_reward_zero_std``; docs/paper.md §7)."""
    return (rewards == rewards[..., :1]).all(dim=-1)


def advantages(
    rewards: torch.Tensor,
    kind: str,
    input_weights: torch.Tensor,
    scale_rewards: str = "group",
    std_eps: float = 1e-4,
) -> torch.Tensor:
    r"""Advantages ``A`` ``(R, N, G)`` of estimator ``kind`` (formulas below).

    Each input :math:`x_n` gets :math:`G` sampled outputs :math:`y_1, \dots, y_G` with rewards
    :math:`r_1, \dots, r_G`; an estimator turns them into advantages :math:`A_i` and the update direction

    .. math::

        \hat g = \sum_n w_n \frac{1}{G} \sum_{i=1}^{G} A_i\, \nabla_\theta \log p_\theta(y_i \mid x_n)
        \qquad (w_n\text{: input weights, } \textstyle\sum_n w_n = 1)

    whose expectation the tests compare with the exact :math:`\nabla V` (Razin et al., ICLR 2024,
    Section 3: baselines do not change the expected gradient; docs/paper.md §7 for the group estimators):

    * ``reinforce``: :math:`A_i = r_i` (Williams, 1992). Unbiased.
    * ``reinforce_baseline``: :math:`A_i = r_i - b` with :math:`b` the mean reward of the whole batch
      (all selected inputs, all samples). :math:`\mathbb{E} \hat g = (1 - 1/M) \nabla V` for :math:`M`
      samples in the batch (each sample's own reward sits in :math:`b`).
    * ``rloo``: :math:`A_i = r_i - \frac{1}{G-1} \sum_{j \ne i} r_j` (Kool et al., 2019; Ahmadian et al.,
      2024). Unbiased.
    * ``dr_grpo``: :math:`A_i = r_i - \bar r` (Liu et al., 2025, "Understanding R1-Zero-like
      training"). :math:`\mathbb{E} \hat g = \frac{G-1}{G} \nabla V`.
    * ``grpo``: :math:`A_i = (r_i - \bar r) / (\mathrm{std}(r) + \varepsilon)` (Shao et al., 2024,
      DeepSeekMath), ``std`` with Bessel's correction as in TRL and verl; ``scale_rewards`` picks the
      std of the ``group`` (default), of the whole ``batch``, or ``none`` (= Dr. GRPO).
    * ``dapo``: GRPO advantages on groups chosen by dynamic sampling (Yu et al., 2025, DAPO):
      a group whose rewards are all equal is resampled, up to ``max_resample`` tries in all,
      and dropped (zero advantage) if it stays so. See :func:`first_informative_group`.

    PPO-clip (:func:`clipped_surrogate`) takes any of these advantages; pass@k has its own
    (:func:`pass_k_advantages`).

    Args:
        * ``rewards``: ``(R, N, G)`` sampled rewards.
        * ``kind``: ``reinforce``, ``reinforce_baseline``, ``rloo``, ``grpo``, ``dr_grpo`` or ``dapo``.
        * ``input_weights``: ``(R, N)``; inputs with weight 0 are not in the batch (they are
          left out of the batch-mean baseline and of the batch std).
        * ``scale_rewards``: ``group``, ``batch`` or ``none`` (``grpo`` and ``dapo`` only).
        * ``std_eps``: ``ε`` in the GRPO denominator.
    """
    num_generations = rewards.shape[-1]
    if kind == "reinforce":
        return rewards
    in_batch = (input_weights > 0).to(rewards.dtype)[..., None]  # (R, N, 1)
    if kind == "reinforce_baseline":
        count = in_batch.sum(dim=(1, 2)) * num_generations  # (R,) samples in the batch
        baseline = (rewards * in_batch).sum(dim=(1, 2)) / count  # (R,)
        return rewards - baseline[:, None, None]
    # r_i - mean(r); exactly 0 in an all-equal group, where a float mean can be off by an ulp (eight
    # float32 copies of 2.337951 average to 2.3379512) and that error divided by std + ε alone is no longer small
    centred = torch.where(zero_std_groups(rewards)[..., None], 0.0, rewards - rewards.mean(dim=-1, keepdim=True))
    if kind == "rloo":
        return centred * (num_generations / (num_generations - 1))  # = r_i - mean_{j≠i} r_j
    if kind == "dr_grpo" or (kind in ("grpo", "dapo") and scale_rewards == "none"):
        return centred
    if kind in ("grpo", "dapo"):
        if scale_rewards == "group":
            scale = group_std(rewards)[..., None]  # (R, N, 1)
        else:  # batch: the std of every reward in the batch
            count = in_batch.sum(dim=(1, 2)) * num_generations  # (R,)
            mean = (rewards * in_batch).sum(dim=(1, 2)) / count
            var = ((rewards - mean[:, None, None]).pow(2) * in_batch).sum(dim=(1, 2)) / (count - 1).clamp_min(1)
            scale = var.sqrt()[:, None, None]
        denominator = scale + std_eps
        # an all-equal group (or batch) has centred = 0 and carries no signal: 0, not 0/0, when std_eps = 0
        return torch.where(denominator > 0, centred / denominator.clamp_min(torch.finfo(centred.dtype).tiny), 0.0)
    raise ConfigError(f"unknown advantage estimator {kind!r}")


def first_informative_group(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""DAPO dynamic sampling over ``B`` tries: ``rewards (R, N, B, G)`` ->
    (index of the first try whose rewards are not all equal (0 if none), ``(R, N)`` long;
    whether every try was all-equal (the group is dropped), ``(R, N)`` bool).

    With per-try all-equal probability :math:`d = p^G + (1-p)^G` (binary reward) the kept
    group follows the law of a group conditioned on being informative, with probability
    :math:`1 - d^B`, so per input

    .. math::

        \mathbb{E} \hat g_{\text{dapo}} = \frac{1 - d^B}{1 - d}\, \mathbb{E} \hat g_{\text{grpo}}

    (Yu et al., 2025; :func:`rftgrad.theory.dapo_factor`, docs/paper.md §7).
    """
    degenerate = zero_std_groups(rewards)  # (R, N, B)
    informative = ~degenerate
    first = informative.to(torch.int64).argmax(dim=-1)  # first True (0 if none)
    return first, degenerate.all(dim=-1)


def dapo_samples_per_input(first: torch.Tensor, dropped: torch.Tensor, group_size: int, tries: int) -> torch.Tensor:
    """Outputs real DAPO draws per input: ``G (first + 1)``, or ``G B`` when the group is dropped.

    ``first``, ``dropped``: ``(R, N)`` from :func:`first_informative_group` (the tries after the
    first informative one are never drawn). In expectation ``G (1 - d^B)/(1 - d)``
    (:func:`rftgrad.theory.group_updates.expected_samples`)."""
    return torch.where(dropped, tries, first + 1).to(torch.float64) * group_size


def clipped_surrogate(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantage: torch.Tensor, clip_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""PPO-clip per sample: ``min(ρA, clip(ρ, 1-ε, 1+ε)A)`` and whether it is clipped (all ``(R, N, G)``).

    .. math::

        \min\big(\rho_i A_i,\; \mathrm{clip}(\rho_i, 1 - \varepsilon, 1 + \varepsilon)\, A_i\big), \qquad
        \rho_i = \frac{p_\theta(y_i)}{p_{\theta_{\text{old}}}(y_i)}

    (Schulman et al., 2017), with any advantage of :func:`advantages`; at :math:`\theta = \theta_{\text{old}}`
    its gradient is :math:`A_i \nabla_\theta \log p_\theta(y_i)`, the plain estimator, so the bounds of
    Theorem 1 (Razin et al., ICLR 2024; docs/paper.md §2) cover it too.
    """
    ratio = (log_prob - old_log_prob).exp()
    clipped_ratio = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    surrogate = torch.minimum(ratio * advantage, clipped_ratio * advantage)
    return surrogate, (ratio * advantage > clipped_ratio * advantage)


# ----------------------------------------------------------------------------- pass@k
def _comb(n: int, r: int) -> int:
    """``C(n, r)``, 0 outside ``0 <= r <= n``."""
    return math.comb(n, r) if 0 <= r <= n else 0


@cache
def _pass_k_weights(group_size: int, k: int) -> tuple[tuple[float, ...], ...]:
    """``W`` ``(G, G)`` with ``A_(m) = Σ_j W[m, j] r_(j)`` over rewards sorted ascending (0-based ranks).

    For the sample of rank ``m``, the ``k``-subsets ``S ∋ m`` whose maximum has rank ``j`` number
    ``C(m, k-1)`` (``j = m``: the others all rank below) and ``C(j-1, k-2)`` (``j > m``), so
    ``G s_(m) = (G/C(G,k)) [C(m,k-1) r_(m) + Σ_{j>m} C(j-1,k-2) r_(j)]``; the leave-one-out
    U-statistic over the ``G-1`` others is ``b_(m) = [Σ_{j<m} C(j,k-1) r_(j) + Σ_{j>m} C(j-1,k-1) r_(j)]
    / C(G-1,k)``. Exact fractions, rounded once.
    """
    own, others = Fraction(group_size, _comb(group_size, k)), Fraction(k, _comb(group_size - 1, k))
    rows = []
    for m in range(group_size):
        row = []
        for j in range(group_size):
            if j == m:
                weight = own * _comb(m, k - 1)
            elif j > m:
                weight = own * _comb(j - 1, k - 2) - others * _comb(j - 1, k - 1)
            else:
                weight = -others * _comb(j, k - 1)
            row.append(float(weight))
        rows.append(tuple(row))
    return tuple(rows)


def _check_pass_k(rewards: torch.Tensor, k: int) -> int:
    group_size = rewards.shape[-1]
    if int(k) != k or k < 1 or group_size <= k:
        raise ConfigError(
            f"pass@k needs 1 <= k < G (the leave-one-out baseline uses k of the other G-1 samples), "
            f"got k={k}, G={group_size}; raise num_generations or lower pass_k"
        )
    return int(k)


def pass_k_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    r"""Unbiased pass@k advantages ``(R, N, G) -> (R, N, G)`` for real rewards (ties allowed).

    The objective is :math:`J = \mathbb{E}[\max_{j \le k} r(y_j)]` over :math:`k` i.i.d. samples: for a
    binary reward, :math:`r^- + (r^+ - r^-)(1 - (1-p)^k)`, whose gradient :math:`k(1-p)^{k-1} \nabla V`
    amplifies hard inputs (docs/paper.md §7, past the paper; Walder & Karkhanis 2025, "Pass@K Policy
    Optimization"). With

    .. math::

        s_i &= \binom{G}{k}^{-1} \sum_{|S| = k,\ S \ni i} \max_{j \in S} r_j, \\
        b_i &= \binom{G-1}{k}^{-1} \sum_{|S| = k,\ S \subseteq [G] \setminus \{i\}} \max_{j \in S} r_j
            \qquad \text{(unbiased pass@k of the others)}, \\
        A_i &= G s_i - k b_i,

    ``ĝ = (1/G) Σ_i A_i ∇ log p(y_i)`` has ``E ĝ = ∇J``: averaging ``max(S) Σ_{j∈S} ∇log p(y_j)``
    (the score-function gradient of one ``k``-subset) over all subsets gives ``Σ_i s_i ∇log p(y_i)``,
    and ``b_i`` does not depend on ``y_i`` so ``E[b_i ∇log p(y_i)] = 0``. ``k = 1`` gives RLOO,
    ``A_i = r_i - mean_{j≠i} r_j``. Computed from the sorted rewards with binomial weights
    (``_pass_k_weights``), vectorised over ``(R, N)``. Needs ``G > k``.
    """
    k = _check_pass_k(rewards, k)
    weights = torch.tensor(_pass_k_weights(rewards.shape[-1], k), dtype=rewards.dtype, device=rewards.device)
    ordered, order = rewards.sort(dim=-1)  # (R, N, G) ascending, and where each came from
    sorted_advantages = ordered @ weights.T  # (R, N, G): A_(m) = Σ_j W[m, j] r_(j)
    return torch.empty_like(rewards).scatter_(-1, order, sorted_advantages)


def pass_k_estimate(rewards: torch.Tensor, k: int) -> torch.Tensor:
    r"""Unbiased estimate of ``E[max of k samples]`` from ``G >= k`` samples, ``(R, N, G) -> (R, N)``:
    the U-statistic

    .. math::

        \binom{G}{k}^{-1} \sum_{|S| = k} \max_{j \in S} r_j = \binom{G}{k}^{-1} \sum_{j=0}^{G-1} \binom{j}{k-1} r_{(j)}

    over the sorted rewards :math:`r_{(0)} \le \dots \le r_{(G-1)}` (0-based ranks; for a binary reward,
    the pass@k estimator of Chen et al. 2021)."""
    group_size = rewards.shape[-1]
    if int(k) != k or not 1 <= k <= group_size:
        raise ConfigError(f"pass@k estimate needs 1 <= k <= G, got k={k}, G={group_size}")
    weights = [Fraction(_comb(j, int(k) - 1), _comb(group_size, int(k))) for j in range(group_size)]
    weight = torch.tensor([float(w) for w in weights], dtype=rewards.dtype, device=rewards.device)
    return rewards.sort(dim=-1).values @ weight


# ----------------------------------------------------------------------------- binary-reward simulation
class BinaryDraws(NamedTuple):
    """Per draw ``(D,)``: the update along the correct output, whether the (first) group had
    all-equal rewards, and the outputs sampled (DAPO: what real dynamic sampling draws)."""

    update: torch.Tensor  # (D,) float64: (1/G) Σ_i A_i (1[y_i = c] - p)
    zero_std: torch.Tensor  # (D,) bool
    samples: torch.Tensor  # (D,) float64


def binary_update_draws(
    success_prob: float,
    group_size: int,
    kind: str,
    num_draws: int,
    gen: torch.Generator,
    *,
    success: float = 1.0,
    failure: float = -1.0,
    std_eps: float = 1e-4,
    max_resample: int = 4,
) -> BinaryDraws:
    """Simulate one input with a binary reward and run this module's estimator on it.

    Setting of :mod:`rftgrad.theory.group_updates`: a flat softmax over outputs, correct output
    ``c`` with ``p = π_c``; a sample is a success (``y = c``, reward ``r⁺``) with probability ``p``,
    else ``r⁻``, and ``(∇_z log π(y))_c = 1[y = c] - p``. Each draw is an independent batch of
    one input: rewards ``(D, 1, G)`` (DAPO: ``(D, 1, B, G)``, the kept try chosen by
    :func:`first_informative_group`), advantages from :func:`advantages` (``scale_rewards="group"``;
    the batch-mean baseline thus averages ``M = G`` samples), and the component along ``z_c``
    ``u = (1/G) Σ_i A_i (1[y_i = c] - p)``.

    Args:
        * ``success_prob``: ``p ∈ [0, 1]``.
        * ``group_size``: ``G``.
        * ``kind``: ``reinforce``, ``reinforce_baseline``, ``rloo``, ``grpo``, ``dr_grpo`` or ``dapo``.
        * ``num_draws``: ``D``.
        * ``gen``: a CPU generator (the draws are float64 uniforms).
        * ``max_resample``: DAPO's tries ``B``.
    """
    if not 0.0 <= success_prob <= 1.0:
        raise ConfigError(f"success probability must lie in [0, 1], got {success_prob}")
    if num_draws < 1 or group_size < 1 or max_resample < 1:
        raise ConfigError(
            f"num_draws, group_size and max_resample must be >= 1, got {num_draws}, {group_size}, {max_resample}"
        )
    tries = max_resample if kind == "dapo" else 1
    hits = torch.rand(num_draws, 1, tries, group_size, generator=gen, dtype=torch.float64) < success_prob
    values = torch.tensor([failure, success], dtype=torch.float64)
    rewards = values[hits.long()]  # (D, 1, B, G)
    zero_std = zero_std_groups(rewards[:, :, 0])[:, 0]  # (D,) the first try, as SampledRFT logs it
    samples = torch.full((num_draws,), float(group_size), dtype=torch.float64)
    if kind == "dapo":
        first, dropped = first_informative_group(rewards)  # (D, 1)
        index = first[..., None, None].expand(-1, -1, 1, group_size)
        rewards, hits = rewards.gather(2, index), hits.gather(2, index)
        samples = dapo_samples_per_input(first, dropped, group_size, tries)[:, 0]
    rewards, hits = rewards[:, :, 0], hits[:, :, 0]  # (D, 1, G)
    weights = torch.ones(num_draws, 1, dtype=torch.float64)
    adv = advantages(rewards, kind, weights, "group", std_eps)  # (D, 1, G)
    update = (adv * (hits.to(torch.float64) - success_prob)).mean(-1)[:, 0]  # (D,)
    return BinaryDraws(update, zero_std, samples)


class MonteCarloUpdate(NamedTuple):
    """Means and standard errors over the ``num_draws`` i.i.d. draws of :func:`monte_carlo_update`."""

    mean: float  # E u estimate
    sem: float  # its standard error, std(u)/sqrt(D)
    frac_zero_std: float  # measured frac_reward_zero_std
    frac_zero_std_sem: float  # its binomial standard error
    samples_per_input: float  # mean outputs sampled per input
    samples_sem: float  # its standard error
    num_draws: int


def monte_carlo_update(
    success_prob: float,
    group_size: int,
    kind: str,
    num_draws: int,
    seed: int,
    *,
    success: float = 1.0,
    failure: float = -1.0,
    std_eps: float = 1e-4,
    max_resample: int = 4,
    chunk: int = 1 << 21,
) -> MonteCarloUpdate:
    """Monte Carlo estimate of the expected update along the correct output, over ``num_draws`` draws.

    Each draw is one input with a binary reward (``success`` with probability ``success_prob``, else
    ``failure``): a group of ``group_size`` rewards (DAPO: up to ``max_resample`` tries), the advantages
    of estimator ``kind`` (:func:`advantages`) and the update ``u = (1/G) Σ_i A_i (1[y_i = c] - p)``
    along the correct output's logit, the Monte Carlo side of
    :func:`rftgrad.theory.expected_update`. The draws (``binary_update_draws``) run in chunks of at
    most ``chunk`` rewards from one generator seeded by ``seed``."""
    gen = generator(seed)
    tries = max_resample if kind == "dapo" else 1
    setting = dict(success=success, failure=failure, std_eps=std_eps, max_resample=max_resample)
    per_chunk = max(1, chunk // (group_size * tries))
    total = square = zero = samples = samples_square = 0.0
    done = 0
    while done < num_draws:
        size = min(per_chunk, num_draws - done)
        draws = binary_update_draws(success_prob, group_size, kind, size, gen, **setting)
        total += float(draws.update.sum())
        square += float(draws.update.square().sum())
        zero += float(draws.zero_std.sum())
        samples += float(draws.samples.sum())
        samples_square += float(draws.samples.square().sum())
        done += size

    def sem(first: float, second: float) -> float:  # standard error of a mean from Σx and Σx²
        variance = max(second / num_draws - (first / num_draws) ** 2, 0.0) * num_draws / max(num_draws - 1, 1)
        return math.sqrt(variance / num_draws)

    rate = zero / num_draws
    return MonteCarloUpdate(
        mean=total / num_draws,
        sem=sem(total, square),
        frac_zero_std=rate,
        frac_zero_std_sem=math.sqrt(rate * (1.0 - rate) / num_draws),
        samples_per_input=samples / num_draws,
        samples_sem=sem(samples, samples_square),
        num_draws=num_draws,
    )

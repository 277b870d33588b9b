"""Advantage formulas of the sampled policy-gradient estimators, over ``(R, N, G)`` rewards.

Each input ``x_n`` gets ``G`` sampled outputs ``y_1..y_G`` with rewards ``r_1..r_G``; an
estimator turns them into advantages ``A_i`` and the update direction

    ĝ = Σ_n w_n (1/G) Σ_i A_i ∇_θ log p_θ(y_i | x_n)        (w_n: input weights, Σ w_n = 1)

whose expectation the tests compare with the exact ∇V (Razin et al., ICLR 2024, Section 3:
baselines do not change the expected gradient; PAPER.md section 7 for the group estimators):

* ``reinforce``: ``A_i = r_i`` (Williams, 1992). Unbiased.
* ``reinforce_baseline``: ``A_i = r_i - b`` with ``b`` the mean reward of the whole batch
  (all selected inputs, all samples). ``E ĝ = (1 - 1/M) ∇V`` for ``M`` samples in the batch
  (each sample's own reward sits in ``b``).
* ``rloo``: ``A_i = r_i - (1/(G-1)) Σ_{j≠i} r_j`` (Kool et al., 2019; Ahmadian et al., 2024). Unbiased.
* ``dr_grpo``: ``A_i = r_i - mean(r)`` (Liu et al., 2025, "Understanding R1-Zero-like
  training"). ``E ĝ = ((G-1)/G) ∇V``.
* ``grpo``: ``A_i = (r_i - mean(r)) / (std(r) + ε)`` (Shao et al., 2024, DeepSeekMath),
  ``std`` with Bessel's correction as in TRL and verl; ``scale_rewards`` picks the std of
  the ``group`` (default), of the whole ``batch``, or ``none`` (= Dr. GRPO).
* ``dapo``: GRPO advantages on groups chosen by dynamic sampling (Yu et al., 2025, DAPO):
  a group whose rewards are all equal is resampled, up to ``max_resample`` tries in all,
  and dropped (zero advantage) if it stays so. See :func:`first_informative_group`.
* ``ppo``: the clipped surrogate ``min(ρ_i A_i, clip(ρ_i, 1-ε, 1+ε) A_i)``,
  ``ρ_i = p_θ(y_i)/p_θold(y_i)`` (Schulman et al., 2017), with any advantage above;
  at ``θ = θ_old`` its gradient is ``A_i ∇ log p_θ(y_i)``, the plain estimator.
"""

from __future__ import annotations

import torch

from rftgrad.errors import ConfigError


def group_std(rewards: torch.Tensor) -> torch.Tensor:
    """Bessel-corrected std of each group, ``(R, N, G) -> (R, N)`` (0 when all are equal)."""
    return rewards.std(dim=-1, correction=1)


def zero_std_groups(rewards: torch.Tensor) -> torch.Tensor:
    """``(R, N, G) -> (R, N)`` bool: every reward in the group is equal (no signal).

    For a binary reward with success probability ``p`` the expected fraction is
    ``p^G + (1-p)^G`` (what libraries log as ``frac_reward_zero_std``)."""
    return (rewards == rewards[..., :1]).all(dim=-1)


def advantages(
    rewards: torch.Tensor,
    kind: str,
    input_weights: torch.Tensor,
    scale_rewards: str = "group",
    std_eps: float = 1e-4,
) -> torch.Tensor:
    """Advantages ``A`` ``(R, N, G)`` of estimator ``kind`` (formulas in the module doc).

    Args:
        rewards: ``(R, N, G)`` sampled rewards.
        kind: ``reinforce``, ``reinforce_baseline``, ``rloo``, ``grpo``, ``dr_grpo`` or ``dapo``.
        input_weights: ``(R, N)``; inputs with weight 0 are not in the batch (they are
            left out of the batch-mean baseline and of the batch std).
        scale_rewards: ``group``, ``batch`` or ``none`` (``grpo`` and ``dapo`` only).
        std_eps: ``ε`` in the GRPO denominator.
    """
    num_generations = rewards.shape[-1]
    if kind == "reinforce":
        return rewards
    in_batch = (input_weights > 0).to(rewards.dtype)[..., None]  # (R, N, 1)
    if kind == "reinforce_baseline":
        count = in_batch.sum(dim=(1, 2)) * num_generations  # (R,) samples in the batch
        baseline = (rewards * in_batch).sum(dim=(1, 2)) / count  # (R,)
        return rewards - baseline[:, None, None]
    centred = rewards - rewards.mean(dim=-1, keepdim=True)  # r_i - mean(r)
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
    """DAPO dynamic sampling over ``B`` tries: ``rewards (R, N, B, G)`` ->
    (index of the first try whose rewards are not all equal (0 if none), ``(R, N)`` long;
    whether every try was all-equal (the group is dropped), ``(R, N)`` bool).

    With per-try all-equal probability ``d = p^G + (1-p)^G`` (binary reward) the kept
    group follows the law of a group conditioned on being informative, with probability
    ``1 - d^B``, so ``E ĝ_dapo = (1 - d^B)/(1 - d) · E ĝ_grpo`` per input.
    """
    degenerate = zero_std_groups(rewards)  # (R, N, B)
    informative = ~degenerate
    first = informative.to(torch.int64).argmax(dim=-1)  # first True (0 if none)
    return first, degenerate.all(dim=-1)


def clipped_surrogate(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantage: torch.Tensor, clip_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clip per sample: ``min(ρA, clip(ρ, 1-ε, 1+ε)A)`` and whether it is clipped (all ``(R, N, G)``)."""
    ratio = (log_prob - old_log_prob).exp()
    clipped_ratio = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    surrogate = torch.minimum(ratio * advantage, clipped_ratio * advantage)
    return surrogate, (ratio * advantage > clipped_ratio * advantage)

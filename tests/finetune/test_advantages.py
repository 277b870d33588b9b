"""Expected values of the sampled policy-gradient estimators (rftgrad.finetune.advantages).

Two kinds of check:

* Monte Carlo through the whole pipeline (``SampledRFT.prepare`` + ``ascent``): a
  :class:`TabularPolicy` with ``R`` replicas that all hold replica 0's parameters, so the
  replicas are one policy sampled with ``R`` independent seeds and one step gives ``R``
  i.i.d. estimates ``ĝ_r``. Their mean is compared with the claimed expectation
  coordinate by coordinate within ``MC_Z`` standard errors (see ``assert_mc_mean``).
* Exact enumeration on a bandit: ``E ĝ`` summed over every tuple of ``G`` (DAPO: ``B·G``)
  actions with the library's own ``advantages`` / ``first_informative_group``, against
  the same closed forms to 1e-12 (checks the hand-derived formulas themselves).

Plus exact (non-statistical) checks of PPO-clip and unit checks of the advantage formulas.

Statistical tolerance. ``MC_Z = 5``: for a correct estimator each coordinate's standardised
error is ~N(0, 1) (means of R >= 20,000 i.i.d. bounded draws), so a coordinate fails with
probability P(|N(0,1)| > 5) ≈ 5.7e-7. The Monte Carlo tests of this file check 216
coordinates and rates in all (bandits: 3-4 logits, the sequence env: 2 inputs x 4 prefix
states x 3 tokens = 24 logits; 114 + 52 + 28 + 12 + 10 for tests 1-5), so by Bonferroni
the chance that any of them fails for correct code and an arbitrary seed is below
216 x 5.7e-7 ≈ 1.3e-4. Seeds are fixed, so the outcome is deterministic. Each comparison
also asserts that its tolerance is below 10% of ||E ĝ|| and, for the biased estimators,
that the competing expectation (∇V; Dr. GRPO's for GRPO; GRPO's for DAPO) lies outside
it, so no test can pass vacuously.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from rftgrad.envs.base import RewardEnv
from rftgrad.envs.classification import BanditEnv
from rftgrad.envs.sequence import random_sequence_env
from rftgrad.errors import ConfigError
from rftgrad.finetune.advantages import (
    advantages,
    clipped_surrogate,
    first_informative_group,
    group_std,
    zero_std_groups,
)
from rftgrad.finetune.config import TrainConfig
from rftgrad.finetune.objectives import SampledRFT, StepBatch
from rftgrad.models.tabular import TabularPolicy
from rftgrad.theory.exact import evaluate, mean_gradient
from tests.tolerances import EXACT_ATOL, MC_MAX_REL_TOL, MC_Z

DTYPE = torch.float64
R_MC = 20_000  # independent draws per Monte Carlo test

BINARY = (1.0, -1.0, -1.0)  # success = action 0, r = ±1
NON_BINARY = (1.0, -0.5, 0.2, -1.0)


def bandit_binary() -> BanditEnv:
    return BanditEnv(list(BINARY))


def bandit_non_binary() -> BanditEnv:
    return BanditEnv(list(NON_BINARY))


def sequence_env() -> RewardEnv:
    # rewards in {-1, 0, 1} (non-binary), 2 inputs, 3^2 outputs each
    return random_sequence_env(num_prompts=2, vocab_size=3, length=2, reward="position_match", seed=3)


ENVS = {"bandit_binary": bandit_binary, "bandit_non_binary": bandit_non_binary, "sequence": sequence_env}


# ----------------------------------------------------------------------------- helpers
def same_policy_replicas(env: RewardEnv, num_replicas: int, prob: float | None = None) -> TabularPolicy:
    """``num_replicas`` replicas holding replica 0's parameters (one policy, independent sampling seeds)."""
    policy = TabularPolicy.for_env(env, seed=list(range(num_replicas)), dtype="float64")
    if prob is not None:  # p(best action) = prob (BanditEnv's target is its best action)
        policy.set_output_probability(env, prob)
    for key in policy.params:
        policy.params[key] = policy.params[key][:1].expand_as(policy.params[key]).clone()
    return policy


def sampled_objective(policy: TabularPolicy, env: RewardEnv, config: TrainConfig) -> SampledRFT:
    zeros = torch.zeros(policy.num_replicas, dtype=DTYPE)
    return SampledRFT(policy, env, config, entropy_coef=zeros, kl_coef=zeros, ref_params=policy.params)


def uniform_weights(num_replicas: int, num_inputs: int) -> torch.Tensor:
    return torch.full((num_replicas, num_inputs), 1.0 / num_inputs, dtype=DTYPE)


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Params dict of ``(R, ...)`` tensors -> ``(R, D)``."""
    return torch.cat([grads[key].reshape(grads[key].shape[0], -1) for key in sorted(grads)], dim=1)


def draw_estimates(
    env: RewardEnv,
    config: TrainConfig,
    *,
    num_replicas: int = R_MC,
    seed: int = 0,
    prob: float | None = None,
    weights: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, TabularPolicy]:
    """``R`` i.i.d. estimates ``ĝ_r`` ``(R, D)``, the step metrics, the exact ``Σ_n w_n ∇V_n`` ``(D,)``, the policy."""
    policy = same_policy_replicas(env, num_replicas, prob)
    policy.set_temperature(temperature)
    weights = uniform_weights(num_replicas, env.num_inputs) if weights is None else weights
    objective = sampled_objective(policy, env, config)
    batch = objective.prepare(weights, seed=seed)
    grads, metrics = objective.ascent(batch)
    return flat(grads), metrics, exact_gradient(policy, env, weights[:1]), policy


def exact_gradient(policy: TabularPolicy, env: RewardEnv, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_n w_n ∇V_n`` ``(D,)`` of replica 0 (all replicas are equal), by enumeration on a one-replica copy."""
    single = TabularPolicy.for_env(env, seed=[0], dtype="float64", temperature=float(policy.temperature[0]))
    single.params = {key: value[:1].clone() for key, value in policy.params.items()}
    return flat(mean_gradient(single, env, input_weights=weights[:1]).mean_grad)[0]


def mc_tolerance(samples: torch.Tensor) -> torch.Tensor:
    """``MC_Z`` standard errors of the mean of ``samples`` ``(R, D)``, plus a floor for zero-variance coordinates."""
    return MC_Z * samples.std(dim=0, correction=1) / math.sqrt(samples.shape[0]) + 1e-12


def assert_mc_mean(samples: torch.Tensor, expected: torch.Tensor, reject: torch.Tensor | None = None) -> None:
    """Mean of ``samples`` ``(R, D)`` within ``MC_Z`` SE of ``expected`` ``(D,)`` in every coordinate.

    The tolerance must be small (< ``MC_MAX_REL_TOL`` ||expected||); if ``reject`` is given
    (a wrong expectation, e.g. the unbiased ∇V for a biased estimator) the test must be
    able to tell it apart: some coordinate lies outside the tolerance around it.
    """
    mean, tol = samples.mean(0), mc_tolerance(samples)
    scale = float(expected.norm())
    assert float(tol.max()) < MC_MAX_REL_TOL * scale, (
        f"test too weak: tolerance {float(tol.max()):.3g}, ||E|| {scale:.3g}"
    )
    zscores = (mean - expected).abs() / (tol / MC_Z)
    assert bool(((mean - expected).abs() <= tol).all()), (
        f"Monte Carlo mean off by up to {float(zscores.max()):.2f} SE\nmean     {mean.tolist()}\n"
        f"expected {expected.tolist()}"
    )
    if reject is not None:
        assert bool(((mean - reject).abs() > tol).any()), "the test cannot tell the claim from the rejected value"


def assert_rate(indicator: torch.Tensor, rate: float) -> None:
    """Mean of a 0/1 ``(R,)`` tensor within ``MC_Z`` binomial SE of ``rate`` (0 < rate < 1)."""
    se = math.sqrt(rate * (1.0 - rate) / indicator.shape[0])
    assert MC_Z * se < MC_MAX_REL_TOL * min(rate, 1.0 - rate)
    assert abs(float(indicator.double().mean()) - rate) <= MC_Z * se, (float(indicator.double().mean()), rate)


def success_probability(policy: TabularPolicy, env: RewardEnv) -> float:
    """``p = P(r = +1)`` of replica 0 on input 0."""
    single = TabularPolicy.for_env(env, seed=[0], dtype="float64")
    single.params = {key: value[:1].clone() for key, value in policy.params.items()}
    result = evaluate(single, env)
    return float((result.probs[0, 0] * (result.rewards[0] == 1.0)).sum())


def grpo_std(k: int, group: int) -> float:
    """``s_k``: Bessel std of a group with ``k`` (+1)s and ``G-k`` (-1)s, ``2 sqrt(k(G-k)/(G(G-1)))``."""
    return 2.0 * math.sqrt(k * (group - k) / (group * (group - 1)))


def grpo_factor(p: float, group: int, std_eps: float, scaled: bool = True) -> float:
    """``c`` with ``E ĝ_grpo = c ∇p`` for a binary ±1 reward with success probability ``p``.

    Given ``k`` successes among the ``G`` samples, mean(r) = (2k - G)/G, so a success gets
    ``A+ = 2(G-k)/(G (s_k + ε))`` and a failure ``A- = -2k/(G (s_k + ε))``. Conditionally on
    the reward vector the samples are independent and each follows p(.|its own reward), and

        E[∇log p(y) | r=+1] = Σ_{y∈S} (p(y)/p) ∇log p(y) = ∇p/p,
        E[∇log p(y) | r=-1] = ∇(1-p)/(1-p) = -∇p/(1-p),

    hence ``E[ĝ | k] = (1/G)[k A+ ∇p/p - (G-k) A- ∇p/(1-p)] = 2k(G-k)/(G² p(1-p)(s_k+ε)) ∇p``
    (0 for k = 0 or G), and ``E ĝ = Σ_{k=1}^{G-1} C(G,k) p^k (1-p)^(G-k) E[ĝ | k]``.
    ``scaled=False`` replaces ``s_k + ε`` by 1 (Dr. GRPO): then ``c = 2(G-1)/G``, i.e.
    ``E ĝ = ((G-1)/G) ∇V`` with ``∇V = 2∇p``.
    """
    total = 0.0
    for k in range(1, group):
        denominator = grpo_std(k, group) + std_eps if scaled else 1.0
        law = math.comb(group, k) * p**k * (1.0 - p) ** (group - k)
        total += law * 2.0 * k * (group - k) / (group**2 * p * (1.0 - p) * denominator)
    return total


def degenerate_probability(p: float, group: int) -> float:
    """``d = p^G + (1-p)^G``: a binary group of ``G`` has all-equal rewards."""
    return p**group + (1.0 - p) ** group


def dapo_factor(p: float, group: int, tries: int) -> float:
    """``E ĝ_dapo = (1 - d^B)/(1 - d) · E ĝ_grpo`` (first_informative_group's docstring).

    The kept group is the first informative one among ``B`` tries: it exists with
    probability ``1 - d^B`` and then has the law of a group conditioned on being informative;
    a group that stays all-equal is dropped with zero advantage. As the GRPO contribution of
    a degenerate group is 0, ``E ĝ_grpo = (1 - d) E[ĝ | informative]``, hence the factor.
    """
    d = degenerate_probability(p, group)
    return (1.0 - d**tries) / (1.0 - d)


def enumerate_bandit_expectation(
    probs: torch.Tensor,
    rewards: torch.Tensor,
    kind: str,
    group: int,
    tries: int = 1,
    scale_rewards: str = "group",
    std_eps: float = 1e-4,
) -> torch.Tensor:
    """Exact ``E ĝ`` w.r.t. the logits of a one-input bandit (T = 1) by summing over every
    tuple of ``tries · G`` actions (DAPO: the first informative try is kept)."""
    num_actions = probs.shape[0]
    actions = torch.tensor(list(itertools.product(range(num_actions), repeat=tries * group)))  # (Y, B·G)
    weight = probs[actions].prod(-1)  # (Y,)
    reward = rewards[actions].reshape(-1, 1, tries, group)  # each tuple its own replica: (Y, 1, B, G)
    actions = actions.reshape(-1, 1, tries, group)
    if kind == "dapo":
        first, _ = first_informative_group(reward)
        index = first[..., None, None].expand(-1, -1, 1, group)
        reward, actions = reward.gather(2, index), actions.gather(2, index)
    reward, actions = reward[:, :, 0], actions[:, :, 0]  # (Y, 1, G)
    adv = advantages(reward, kind, torch.ones(reward.shape[:2], dtype=DTYPE), scale_rewards, std_eps)
    score = torch.nn.functional.one_hot(actions, num_actions).to(DTYPE) - probs  # ∇_logits log p(a) = e_a - π
    estimate = (adv[..., None] * score).mean(dim=2)[:, 0]  # (Y, K)
    return (weight[:, None] * estimate).sum(0)


def bandit_probs(prob_best: float, num_actions: int) -> torch.Tensor:
    probs = torch.full((num_actions,), (1.0 - prob_best) / (num_actions - 1), dtype=DTYPE)
    probs[0] = prob_best
    return probs


# ----------------------------------------------------------------------------- 1. unbiased estimators
UNBIASED_CASES = [  # (env, estimator, G, temperature)
    ("bandit_binary", "reinforce", 2, 1.0),
    ("bandit_binary", "rloo", 3, 1.0),
    ("bandit_non_binary", "reinforce", 3, 1.0),
    ("bandit_non_binary", "rloo", 4, 1.0),
    ("bandit_non_binary", "ppo_reinforce", 2, 1.0),
    ("sequence", "reinforce", 2, 1.0),
    ("sequence", "rloo", 3, 1.0),
    ("sequence", "rloo", 2, 0.7),
    ("sequence", "ppo_rloo", 4, 1.0),
]


def estimator_config(name: str, group: int, **kwargs: object) -> TrainConfig:
    if name.startswith("ppo_"):
        return TrainConfig(
            estimator="ppo", ppo_epochs=1, ppo_advantage=name.removeprefix("ppo_"), num_generations=group, **kwargs
        )
    return TrainConfig(estimator=name, num_generations=group, **kwargs)


@pytest.mark.parametrize(("env_name", "estimator", "group", "temperature"), UNBIASED_CASES)
def test_unbiased_estimators_match_exact_gradient(
    env_name: str, estimator: str, group: int, temperature: float
) -> None:
    """reinforce, rloo and one-epoch PPO (reinforce / rloo advantages): E ĝ = ∇V (also at T != 1)."""
    env = ENVS[env_name]()
    samples, _, true_grad, _ = draw_estimates(
        env, estimator_config(estimator, group), seed=11 + group, temperature=temperature
    )
    assert_mc_mean(samples, true_grad)


# ----------------------------------------------------------------------------- 2. reinforce_baseline
@pytest.mark.parametrize(
    ("env_name", "group", "input_weights"),
    [("bandit_non_binary", 4, (1.0,)), ("sequence", 3, (0.75, 0.25)), ("sequence", 3, (1.0, 0.0))],
)
def test_reinforce_baseline_is_shrunk_by_one_over_batch_size(
    env_name: str, group: int, input_weights: tuple[float, ...]
) -> None:
    """E ĝ = (1 - 1/M) Σ_n w_n ∇V_n with M = (#inputs with w_n > 0) · G.

    Derivation: b = (1/M) Σ_m r_m over the M samples of the batch, so
    E[b ∇log p(y_{n,i})] = (1/M) E[r_{n,i} ∇log p(y_{n,i})] + (1/M) Σ_{m≠(n,i)} E[r_m] E[∇log p(y_{n,i})]
    = (1/M) ∇V_n, because the other samples are independent of y_{n,i} and E[∇log p] = 0.
    Then E ĝ = Σ_n w_n (1/G) Σ_i (∇V_n - ∇V_n/M) = (1 - 1/M) Σ_n w_n ∇V_n. An input with
    w_n = 0 is not in the batch: neither in M nor in b.
    """
    env = ENVS[env_name]()
    weights = torch.tensor(input_weights, dtype=DTYPE).expand(R_MC, -1).clone()
    batch_size = sum(w > 0 for w in input_weights) * group
    config = TrainConfig(estimator="reinforce_baseline", num_generations=group)
    samples, _, true_grad, _ = draw_estimates(env, config, seed=12, weights=weights)
    assert_mc_mean(samples, (1.0 - 1.0 / batch_size) * true_grad, reject=true_grad)


# ----------------------------------------------------------------------------- 3. dr_grpo
@pytest.mark.parametrize(("env_name", "group"), [("bandit_non_binary", 2), ("sequence", 3)])
def test_dr_grpo_is_shrunk_by_group_factor(env_name: str, group: int) -> None:
    """E ĝ = ((G-1)/G) ∇V (the same argument as reinforce_baseline with M = G, per group)."""
    env = ENVS[env_name]()
    samples, _, true_grad, _ = draw_estimates(env, TrainConfig(estimator="dr_grpo", num_generations=group), seed=13)
    assert_mc_mean(samples, (group - 1) / group * true_grad, reject=true_grad)


# ----------------------------------------------------------------------------- 4. grpo
def test_grpo_closed_form_consistency() -> None:
    """The hand-derived GRPO factor: its Dr. GRPO limit and the G = 2 case in closed form."""
    for p in (0.1, 0.35, 0.8):
        for group in (2, 3, 4, 7):
            # no std division: Σ_k C(G,k) p^k (1-p)^(G-k) 2k(G-k)/(G² p(1-p)) = 2 E[k(G-k)]/(G² p(1-p)) = 2(G-1)/G
            assert grpo_factor(p, group, 0.0, scaled=False) == pytest.approx(2.0 * (group - 1) / group, rel=1e-12)
        # G = 2: an informative group is (+1, -1), s_1 = sqrt(2), A = ±1/sqrt(2): E ĝ = ∇p/sqrt(2) (ε = 0)
        assert grpo_factor(p, 2, 0.0) == pytest.approx(1.0 / math.sqrt(2.0), rel=1e-12)
    assert grpo_std(2, 4) == pytest.approx(torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=DTYPE).std().item(), rel=1e-12)


@pytest.mark.parametrize(("group", "std_eps"), [(2, 1e-4), (3, 1e-4), (4, 1e-4), (3, 0.5), (4, 2.0)])
@pytest.mark.parametrize("prob", [0.3, 0.75])
def test_grpo_formula_by_enumeration(group: int, std_eps: float, prob: float) -> None:
    """The library's GRPO advantages, averaged exactly over every action tuple, give c(p, G, ε) ∇p."""
    probs = bandit_probs(prob, len(BINARY))
    rewards = torch.tensor(BINARY, dtype=DTYPE)
    grad_p = probs * (rewards == 1.0).to(DTYPE) - probs * probs[0]  # ∇_logits p(action 0) = p (e_0 - π)
    expected = grpo_factor(prob, group, std_eps) * grad_p
    got = enumerate_bandit_expectation(probs, rewards, "grpo", group, std_eps=std_eps)
    torch.testing.assert_close(got, expected, rtol=0, atol=EXACT_ATOL)


@pytest.mark.parametrize(("group", "std_eps"), [(2, 1e-4), (3, 1e-4), (4, 1e-4), (3, 0.5)])
def test_grpo_monte_carlo(group: int, std_eps: float) -> None:
    """GRPO (scale_rewards="group") on a binary ±1 bandit: E ĝ = c(p, G, ε) ∇p, ∇p = ∇V/2."""
    env = bandit_binary()
    config = TrainConfig(estimator="grpo", num_generations=group, scale_rewards="group", std_eps=std_eps)
    samples, _, true_grad, policy = draw_estimates(env, config, seed=14, prob=0.4)
    p = success_probability(policy, env)
    assert p == pytest.approx(0.4, abs=1e-12)
    expected = grpo_factor(p, group, std_eps) * true_grad / 2.0
    assert_mc_mean(samples, expected, reject=(group - 1) / group * true_grad)  # not Dr. GRPO's expectation


# ----------------------------------------------------------------------------- 5. dapo
@pytest.mark.parametrize(("group", "tries", "prob"), [(2, 2, 0.3), (3, 2, 0.8), (2, 3, 0.7)])
def test_dapo_formula_by_enumeration(group: int, tries: int, prob: float) -> None:
    """Exact E ĝ_dapo = (1 - d^B)/(1 - d) E ĝ_grpo, both by enumeration with the library's functions."""
    probs = bandit_probs(prob, len(BINARY))
    rewards = torch.tensor(BINARY, dtype=DTYPE)
    grpo = enumerate_bandit_expectation(probs, rewards, "grpo", group)
    dapo = enumerate_bandit_expectation(probs, rewards, "dapo", group, tries=tries)
    torch.testing.assert_close(dapo, dapo_factor(prob, group, tries) * grpo, rtol=0, atol=EXACT_ATOL)
    grad_p = probs * (rewards == 1.0).to(DTYPE) - probs * probs[0]
    expected = dapo_factor(prob, group, tries) * grpo_factor(prob, group, 1e-4) * grad_p
    torch.testing.assert_close(dapo, expected, rtol=0, atol=EXACT_ATOL)


@pytest.mark.parametrize(("group", "tries", "prob"), [(2, 2, 0.8), (3, 3, 0.85)])
def test_dapo_monte_carlo_and_metrics(group: int, tries: int, prob: float) -> None:
    """DAPO gradient, frac_reward_zero_std ≈ d, num_dropped_groups ≈ d^B (one input)."""
    env = bandit_binary()
    config = TrainConfig(estimator="dapo", num_generations=group, max_resample=tries)
    samples, metrics, true_grad, policy = draw_estimates(env, config, seed=15, prob=prob)
    p = success_probability(policy, env)
    d = degenerate_probability(p, group)
    grpo_mean = grpo_factor(p, group, config.std_eps) * true_grad / 2.0
    assert_mc_mean(samples, dapo_factor(p, group, tries) * grpo_mean, reject=grpo_mean)
    zero_std, dropped = metrics["frac_reward_zero_std"], metrics["num_dropped_groups"]
    assert set(zero_std.unique().tolist()) <= {0.0, 1.0} and set(dropped.unique().tolist()) <= {0.0, 1.0}
    assert_rate(zero_std, d)
    assert_rate(dropped, d**tries)
    # one input: the group is resampled exactly when its first try is all-equal
    torch.testing.assert_close(metrics["num_resampled_groups"], zero_std, rtol=0, atol=0)
    assert bool((dropped <= zero_std).all())


@pytest.mark.parametrize(("estimator", "scale_rewards"), [("grpo", "group"), ("grpo", "batch"), ("dapo", "group")])
def test_zero_std_eps_all_equal_group_gives_zero_gradient(estimator: str, scale_rewards: str) -> None:
    """With std_eps = 0 (allowed) an all-equal group carries no signal and adds 0, not 0/0 = NaN, to the gradient."""
    config = TrainConfig(
        estimator=estimator, num_generations=2, scale_rewards=scale_rewards, std_eps=0.0, max_resample=1
    )
    env = bandit_binary()
    samples, metrics, _, _ = draw_estimates(env, config, num_replicas=64, seed=21, prob=0.5)
    degenerate = metrics["frac_reward_zero_std"] == 1.0
    assert 0 < int(degenerate.sum()) < 64  # about half the groups are (+1, +1) or (-1, -1)
    assert bool(torch.isfinite(samples).all()), f"{int((~torch.isfinite(samples)).any(1).sum())} NaN gradients"
    assert float(samples[degenerate].abs().max()) == 0.0


# ----------------------------------------------------------------------------- exact enumeration, other estimators
@pytest.mark.parametrize("group", [2, 3, 4])
def test_expectations_by_enumeration(group: int) -> None:
    """Non-binary bandit rewards, exact sums over all K^G action tuples: the claimed factors of ∇V."""
    rewards = torch.tensor(NON_BINARY, dtype=DTYPE)
    probs = torch.softmax(torch.tensor([0.3, -0.2, 0.5, -0.9], dtype=DTYPE), dim=0)
    true_grad = probs * (rewards - (probs * rewards).sum())  # ∇_logits V = π ⊙ (r - V)
    claims = {
        "reinforce": 1.0,
        "rloo": 1.0,
        "reinforce_baseline": 1.0 - 1.0 / group,  # M = G samples (one input)
        "dr_grpo": (group - 1) / group,
    }
    for kind, factor in claims.items():
        got = enumerate_bandit_expectation(probs, rewards, kind, group)
        torch.testing.assert_close(got, factor * true_grad, rtol=0, atol=EXACT_ATOL, msg=kind)


# ----------------------------------------------------------------------------- 6. PPO-clip
@pytest.mark.parametrize(
    ("env_name", "advantage"),
    [("sequence", "rloo"), ("sequence", "grpo"), ("bandit_non_binary", "rloo"), ("bandit_non_binary", "grpo")],
)
def test_ppo_one_epoch_equals_plain_estimator(env_name: str, advantage: str) -> None:
    """At θ = θ_old every ratio is 1: PPO's ascent equals the plain estimator's on the same samples."""
    env = ENVS[env_name]()
    num_replicas, group = 64, 4
    policy = TabularPolicy.for_env(env, seed=list(range(num_replicas)), dtype="float64")  # distinct replicas
    weights = uniform_weights(num_replicas, env.num_inputs)
    ppo = sampled_objective(
        policy, env, TrainConfig(estimator="ppo", ppo_epochs=1, ppo_advantage=advantage, num_generations=group)
    )
    plain = sampled_objective(policy, env, TrainConfig(estimator=advantage, num_generations=group))
    ppo_batch, plain_batch = ppo.prepare(weights, seed=5), plain.prepare(weights, seed=5)
    assert ppo_batch.updates == 1 and ppo_batch.old_log_prob is not None
    torch.testing.assert_close(ppo_batch.outputs, plain_batch.outputs, rtol=0, atol=0)
    ppo_grad, ppo_metrics = ppo.ascent(ppo_batch)
    plain_grad, _ = plain.ascent(plain_batch)
    assert float(flat(plain_grad).abs().max()) > 1e-3  # a non-trivial comparison
    torch.testing.assert_close(flat(ppo_grad), flat(plain_grad), rtol=0, atol=1e-12)
    torch.testing.assert_close(ppo_metrics["clip_ratio"], torch.zeros(num_replicas, dtype=DTYPE), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("log_ratio", "sign", "clipped"),
    [(1.0, 1.0, True), (-1.0, -1.0, True), (1.0, -1.0, False), (-1.0, 1.0, False)],
)
def test_ppo_clipped_samples_contribute_no_gradient(log_ratio: float, sign: float, clipped: bool) -> None:
    """ρ = e^{±1} lies outside [1-ε, 1+ε] = [0.8, 1.2] for every sample.

    ρ > 1+ε with A > 0, or ρ < 1-ε with A < 0: the surrogate is the constant clip(ρ)A, the
    gradient is 0 and clip_ratio = 1. Otherwise min picks ρA: the gradient is that of the plain
    estimator with advantages ρA (ρ held fixed) and clip_ratio = 0.
    """
    env = sequence_env()
    num_replicas, group = 8, 4
    policy = TabularPolicy.for_env(env, seed=list(range(num_replicas)), dtype="float64")
    weights = uniform_weights(num_replicas, env.num_inputs)
    objective = sampled_objective(policy, env, TrainConfig(estimator="ppo", ppo_epochs=3, num_generations=group))
    batch = objective.prepare(weights, seed=6)
    assert batch.updates == 3 and batch.old_log_prob is not None
    magnitude = torch.rand(batch.advantages.shape, generator=torch.Generator().manual_seed(0), dtype=DTYPE) + 0.5
    shifted = dataclasses.replace(
        batch, advantages=sign * magnitude, old_log_prob=batch.old_log_prob - log_ratio, metrics={}
    )
    grads, metrics = objective.ascent(shifted)
    expected_ratio = 1.0 if clipped else 0.0
    torch.testing.assert_close(metrics["clip_ratio"], torch.full((num_replicas,), expected_ratio, dtype=DTYPE))
    if clipped:
        assert float(flat(grads).abs().max()) == 0.0
    else:
        reference = StepBatch(weights, outputs=batch.outputs, advantages=math.exp(log_ratio) * sign * magnitude)
        plain_grad, _ = objective.ascent(reference)
        assert float(flat(plain_grad).abs().max()) > 1e-3
        torch.testing.assert_close(flat(grads), flat(plain_grad), rtol=0, atol=1e-12)


def test_ppo_several_epochs_clip_acts_after_large_updates() -> None:
    """Several large-lr updates on one batch move the ratios; the ascent then matches the
    per-sample formula Σ (1/G) [not clipped] ρ_i A_i (e_{a_i} - π), and clip_ratio is the
    fraction of clipped samples (strictly between 0 and 1 here)."""
    env = bandit_non_binary()
    num_replicas, group, clip_eps = 16, 8, 0.2
    policy = TabularPolicy.for_env(env, seed=list(range(num_replicas)), dtype="float64")
    weights = uniform_weights(num_replicas, 1)
    config = TrainConfig(estimator="ppo", ppo_epochs=4, ppo_advantage="rloo", num_generations=group, clip_eps=clip_eps)
    objective = sampled_objective(policy, env, config)
    batch = objective.prepare(weights, seed=7)
    for _ in range(batch.updates - 1):
        grads, _ = objective.ascent(batch)
        policy.params = {key: value + 3.0 * grads[key] for key, value in policy.params.items()}
    grads, metrics = objective.ascent(batch)

    logits = policy.params["logits"][:, 0, 0, :]  # (R, K)
    probs = torch.softmax(logits, dim=-1)
    actions = batch.outputs[:, 0, :, 0]  # (R, G)
    log_prob = torch.log_softmax(logits, dim=-1).gather(-1, actions)
    ratio = (log_prob - batch.old_log_prob[:, 0]).exp()
    adv = batch.advantages[:, 0]
    is_clipped = ((ratio > 1 + clip_eps) & (adv > 0)) | ((ratio < 1 - clip_eps) & (adv < 0))
    score = torch.nn.functional.one_hot(actions, probs.shape[-1]).to(DTYPE) - probs[:, None, :]  # (R, G, K)
    expected = ((~is_clipped).to(DTYPE) * ratio * adv)[..., None].mul(score).mean(1)  # (R, K)

    fraction = is_clipped.to(DTYPE).mean(-1)
    assert 0.05 < float(fraction.mean()) < 0.95, "the updates should clip some samples but not all"
    torch.testing.assert_close(metrics["clip_ratio"], fraction, rtol=0, atol=1e-15)
    torch.testing.assert_close(grads["logits"][:, 0, 0, :], expected, rtol=0, atol=1e-12)


def test_clipped_surrogate_values() -> None:
    log_prob = torch.log(torch.tensor([[[1.5, 1.5, 0.5, 0.5, 1.1]]], dtype=DTYPE))
    old = torch.zeros_like(log_prob)
    adv = torch.tensor([[[2.0, -2.0, 2.0, -2.0, 1.0]]], dtype=DTYPE)
    surrogate, clipped = clipped_surrogate(log_prob, old, adv, 0.2)
    torch.testing.assert_close(surrogate, torch.tensor([[[2.4, -3.0, 1.0, -1.6, 1.1]]], dtype=DTYPE))
    assert clipped.tolist() == [[[True, False, False, True, False]]]


# ----------------------------------------------------------------------------- 7. advantages() unit checks
def test_rloo_is_reward_minus_mean_of_others() -> None:
    rewards = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(1), dtype=DTYPE) * 2 - 1
    weights = uniform_weights(2, 3)
    got = advantages(rewards, "rloo", weights)
    group = rewards.shape[-1]
    for i in range(group):
        others = torch.cat([rewards[..., :i], rewards[..., i + 1 :]], dim=-1)
        torch.testing.assert_close(got[..., i], rewards[..., i] - others.mean(-1), rtol=0, atol=1e-15)


def test_reinforce_and_dr_grpo_advantages() -> None:
    rewards = torch.tensor([[[1.0, -1.0, 0.5, 0.5]]], dtype=DTYPE)
    weights = torch.ones(1, 1, dtype=DTYPE)
    torch.testing.assert_close(advantages(rewards, "reinforce", weights), rewards, rtol=0, atol=0)
    torch.testing.assert_close(
        advantages(rewards, "dr_grpo", weights), torch.tensor([[[0.75, -1.25, 0.25, 0.25]]], dtype=DTYPE)
    )
    # grpo / dapo with scale_rewards="none" are Dr. GRPO
    for kind in ("grpo", "dapo"):
        torch.testing.assert_close(
            advantages(rewards, kind, weights, scale_rewards="none"), advantages(rewards, "dr_grpo", weights)
        )


def test_grpo_group_std_uses_bessel_correction() -> None:
    rewards = torch.tensor([[[1.0, 0.0, 0.0, -1.0]]], dtype=DTYPE)  # mean 0, Σ(r - mean)² = 2
    weights = torch.ones(1, 1, dtype=DTYPE)
    bessel_std = math.sqrt(2.0 / 3.0)  # divided by G - 1 = 3 (population std would be sqrt(2/4))
    assert float(group_std(rewards)[0, 0]) == pytest.approx(bessel_std, rel=1e-14)
    eps = 1e-4
    got = advantages(rewards, "grpo", weights, scale_rewards="group", std_eps=eps)
    torch.testing.assert_close(got, rewards / (bessel_std + eps), rtol=0, atol=1e-15)
    assert abs(float(got[0, 0, 0]) - 1.0 / (math.sqrt(0.5) + eps)) > 0.1  # not the population std
    # dapo uses the same advantages as grpo on the kept group
    torch.testing.assert_close(advantages(rewards, "dapo", weights, std_eps=eps), got, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["grpo", "dr_grpo", "rloo", "dapo"])
@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_all_equal_group_has_zero_advantage(kind: str, scale_rewards: str) -> None:
    rewards = torch.tensor([[[0.3, 0.3, 0.3], [1.0, -1.0, 0.0]], [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]], dtype=DTYPE)
    weights = uniform_weights(2, 2)
    got = advantages(rewards, kind, weights, scale_rewards=scale_rewards)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[0, 0], torch.zeros(3, dtype=DTYPE), rtol=0, atol=0)
    torch.testing.assert_close(got[1], torch.zeros(2, 3, dtype=DTYPE), rtol=0, atol=0)
    assert float(got[0, 1].abs().max()) > 0.1


def test_grpo_batch_scaling_uses_std_of_inputs_in_batch() -> None:
    """scale_rewards="batch": divide by the Bessel std of all rewards of inputs with w_n > 0."""
    rewards = torch.tensor(
        [
            [[1.0, 0.0, 0.5], [-1.0, 1.0, -1.0], [0.2, 0.2, -0.4]],
            [[0.0, 0.1, 0.2], [1.0, 1.0, 0.3], [-0.5, 0.5, 0.0]],
        ],
        dtype=DTYPE,
    )
    weights = torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]], dtype=DTYPE)  # replica 1: one input only
    eps = 1e-3
    got = advantages(rewards, "grpo", weights, scale_rewards="batch", std_eps=eps)
    centred = rewards - rewards.mean(-1, keepdim=True)
    for replica in range(2):
        in_batch = rewards[replica][weights[replica] > 0].reshape(-1)
        scale = float(in_batch.std(correction=1))
        all_inputs = float(rewards[replica].reshape(-1).std(correction=1))
        assert abs(scale - all_inputs) > 0.05  # the excluded input would change the std
        torch.testing.assert_close(got[replica], centred[replica] / (scale + eps), rtol=0, atol=1e-14)


def test_reinforce_baseline_excludes_zero_weight_inputs() -> None:
    rewards = torch.tensor([[[1.0, 0.0], [-1.0, -1.0], [0.5, 0.5]]], dtype=DTYPE)
    weights = torch.tensor([[0.5, 0.0, 0.5]], dtype=DTYPE)
    baseline = (1.0 + 0.0 + 0.5 + 0.5) / 4  # inputs 0 and 2 only, M = 2 · G = 4
    got = advantages(rewards, "reinforce_baseline", weights)
    torch.testing.assert_close(got, rewards - baseline, rtol=0, atol=1e-15)


def test_unknown_estimator_raises() -> None:
    with pytest.raises(ConfigError):
        advantages(torch.zeros(1, 1, 2, dtype=DTYPE), "vanilla", torch.ones(1, 1, dtype=DTYPE))


def test_zero_std_groups() -> None:
    rewards = torch.tensor([[[1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 0.0, 1e-9]]], dtype=DTYPE)
    assert zero_std_groups(rewards).tolist() == [[True, False, False]]


def test_first_informative_group() -> None:
    eq, info = [1.0, 1.0], [1.0, -1.0]
    rewards = torch.tensor(
        [
            [[eq, info, info], [info, eq, eq], [eq, eq, eq], [eq, eq, [0.0, 0.5]]],
            [[[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]], [info, info, eq], [eq, info, eq], [eq, eq, eq]],
        ],
        dtype=DTYPE,
    )  # (R=2, N=4, B=3, G=2)
    first, dropped = first_informative_group(rewards)
    assert first.tolist() == [[1, 0, 0, 2], [0, 0, 1, 0]]
    assert dropped.tolist() == [[False, False, True, False], [True, False, False, True]]
    assert first.dtype == torch.int64 and dropped.dtype == torch.bool


def test_an_all_equal_group_gets_zero_advantage_even_when_its_float_mean_is_off():
    """An all-equal float32 group's mean can be off by an ulp (here in 1836 of 4096 groups); the centred
    reward is then exactly 0, not that ulp, which divided by ``std + ε`` alone would be of order 0.1."""
    generator = torch.Generator().manual_seed(0)
    values = torch.rand(4096, generator=generator) * 5
    rewards = values[None, :, None].expand(1, 4096, 8).contiguous().float()  # (1, 4096, 8) all-equal groups
    assert (rewards.mean(-1) != rewards[..., 0]).sum() > 1000  # the float mean really is off in many
    for kind in ("grpo", "dr_grpo", "rloo", "dapo"):
        assert (advantages(rewards, kind, torch.ones(1, 4096), std_eps=1e-6) == 0).all(), kind

"""pass@k training (docs/paper.md §7): the estimator, its expectation, the exact objective, configs.

* ``pass_k_advantages`` against its definition by brute force over ``k``-subsets (ties included),
  and ``k = 1`` against RLOO.
* Unbiasedness without sampling noise: ``E ĝ`` summed over every ``G``-tuple of a 3-action bandit
  equals autograd of the enumerated ``E[max of k samples]`` to 1e-12 (binary, real and tied rewards).
* The exact objective: ``ExactRFT`` with ``pass_k`` equals autograd of the enumerated
  ``Σ_n w_n pass@k_n`` (plus ``β H`` when regularised) to 1e-12.
* The pipeline (``SampledRFT.prepare`` + ``ascent``) by Monte Carlo: 20,000 i.i.d. estimates within
  5 standard errors of ``k (1-p)^(k-1) ∇V`` per coordinate (the tolerance argument and helpers of
  ``tests/finetune/test_advantages.py``), rejecting the plain ``∇V``; the logged ``pass_at_k`` and
  DAPO's ``samples_per_input`` within 5 SE of their closed forms.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rftgrad.envs import random_sequence_env
from rftgrad.errors import ConfigError
from rftgrad.finetune.advantages import advantages, pass_k_advantages, pass_k_estimate
from rftgrad.finetune.config import TrainConfig
from rftgrad.finetune.objectives import ExactRFT, StepBatch
from rftgrad.models import LinearSoftmaxPolicy, TabularPolicy
from rftgrad.theory.group_updates import expected_samples
from tests.finetune.test_advantages import (
    DTYPE,
    assert_mc_mean,
    bandit_binary,
    draw_estimates,
    flat,
    success_probability,
)
from tests.tolerances import EXACT_ATOL, MC_Z


def tied_rewards(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Rewards in [-1, 1] on a grid of 5 values, so groups hold ties."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, shape, generator=gen).to(DTYPE) / 2.0 - 1.0


# ----------------------------------------------------------------------------- the formula
@pytest.mark.parametrize("group", [2, 3, 5, 8, 16])
def test_pass_1_is_rloo(group: int) -> None:
    for rewards in (tied_rewards((3, 4, group), seed=group), torch.rand(3, 4, group, dtype=DTYPE)):
        expected = advantages(rewards, "rloo", torch.ones(3, 4, dtype=DTYPE))
        torch.testing.assert_close(pass_k_advantages(rewards, 1), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize(("group", "k"), [(3, 2), (5, 2), (5, 3), (5, 4), (7, 3)])
def test_advantages_and_estimate_match_their_subset_definitions(group: int, k: int) -> None:
    """``A_i = G s_i - k b_i`` and the U-statistic, by explicit sums over ``k``-subsets."""
    rewards = torch.cat([tied_rewards((2, 3, group), seed=k), torch.rand(2, 1, group, dtype=DTYPE)], dim=1)
    got, estimate = pass_k_advantages(rewards, k), pass_k_estimate(rewards, k)
    for r, n in itertools.product(range(rewards.shape[0]), range(rewards.shape[1])):
        values = rewards[r, n].tolist()
        subsets = list(itertools.combinations(range(group), k))
        assert estimate[r, n].item() == pytest.approx(sum(max(values[j] for j in s) for s in subsets) / len(subsets))
        for i in range(group):
            own = sum(max(values[j] for j in s) for s in subsets if i in s) / math.comb(group, k)
            others = [s for s in subsets if i not in s]
            baseline = sum(max(values[j] for j in s) for s in others) / len(others)
            assert got[r, n, i].item() == pytest.approx(group * own - k * baseline, abs=1e-13)


def test_binary_estimate_is_the_unbiased_pass_at_k() -> None:
    """±1 rewards with ``c`` successes among ``G``: ``-1 + 2 (1 - C(G-c, k)/C(G, k))`` (Chen et al. 2021)."""
    group, k = 8, 3
    for successes in range(group + 1):
        rewards = torch.tensor([1.0] * successes + [-1.0] * (group - successes), dtype=DTYPE)[None, None]
        expected = -1.0 + 2.0 * (1.0 - math.comb(group - successes, k) / math.comb(group, k))
        assert pass_k_estimate(rewards, k).item() == pytest.approx(expected, abs=1e-14)


# ----------------------------------------------------------------------------- unbiasedness, exactly
def pass_k_objective(logits: torch.Tensor, rewards: torch.Tensor, k: int) -> torch.Tensor:
    """``E[max of k i.i.d. draws]`` of a bandit, by enumerating ``k``-tuples."""
    probs = torch.softmax(logits, dim=0)
    tuples = torch.tensor(list(itertools.product(range(logits.shape[0]), repeat=k)))  # (K^k, k)
    return (probs[tuples].prod(-1) * rewards[tuples].max(-1).values).sum()


@pytest.mark.parametrize("rewards", [(1.0, -1.0, -1.0), (1.0, -0.5, 0.2), (0.3, 0.3, -1.0)])
@pytest.mark.parametrize(("group", "k"), [(2, 1), (3, 2), (4, 2), (5, 3), (5, 4)])
def test_expected_update_is_the_pass_k_gradient_by_enumeration(rewards: tuple[float, ...], group: int, k: int):
    """``Σ_{a ∈ [K]^G} Π π(a_i) (1/G) Σ_i A_i (e_{a_i} - π) = ∇_z E[max of k]`` (no sampling noise)."""
    reward = torch.tensor(rewards, dtype=DTYPE)
    logits = torch.tensor([-0.7, 0.4, 0.1], dtype=DTYPE, requires_grad=True)
    (expected,) = torch.autograd.grad(pass_k_objective(logits, reward, k), logits)
    probs = torch.softmax(logits.detach(), dim=0)
    actions = torch.tensor(list(itertools.product(range(3), repeat=group)))  # (3^G, G)
    adv = pass_k_advantages(reward[actions][None], k)[0]  # (3^G, G)
    score = torch.nn.functional.one_hot(actions, 3).to(DTYPE) - probs  # ∇_z log π(a) = e_a - π
    got = (probs[actions].prod(-1)[:, None] * (adv[..., None] * score).mean(1)).sum(0)
    assert float(expected.abs().max()) > 1e-3
    torch.testing.assert_close(got, expected, rtol=0, atol=EXACT_ATOL)


# ----------------------------------------------------------------------------- the exact objective
@pytest.mark.parametrize("entropy", [0.0, 0.2])
def test_exact_pass_k_ascent_equals_autograd_of_the_enumerated_objective(entropy: float) -> None:
    """``d = ∇ Σ_n w_n [r⁻ + Δ (1 - (1 - p_n)^k) + β H_n]`` on a binary sequence env (exact_match)."""
    env = random_sequence_env(num_prompts=4, vocab_size=3, length=2, reward="exact_match", seed=5)
    policy = LinearSoftmaxPolicy.for_env(env, features="input_prefix", seed=[0, 1], dtype="float64")
    policy.params = {key: 2.0 * value for key, value in policy.params.items()}  # spread out the p_n
    beta = torch.full((2,), entropy, dtype=DTYPE)
    weights = torch.tensor([[0.4, 0.1, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=DTYPE)
    k = 3
    objective = ExactRFT(policy, env, TrainConfig(pass_k=k), beta, torch.zeros(2, dtype=DTYPE), policy.params)
    ascent, metrics = objective.ascent(StepBatch(weights))

    outputs = env.output_space.enumerate()[None].expand(env.num_inputs, -1, -1)
    ids, x, rewards = torch.arange(env.num_inputs), policy.inputs_from(env), env.reward_table()
    params = {key: value.clone().requires_grad_(True) for key, value in policy.params.items()}
    logp = policy.log_prob(ids, x, outputs, params)  # (R, N, Y)
    p = (logp.exp() * (rewards == 1.0)).sum(-1)  # (R, N) success probability
    pass_k = -1.0 + 2.0 * (1.0 - (1.0 - p) ** k)
    per_input = pass_k - beta[:, None] * (logp.exp() * logp).sum(-1)
    grads = torch.autograd.grad((per_input * weights).sum(), list(params.values()))
    assert 0.01 < float(p.detach().min()) and float(p.detach().max()) < 0.9
    for key, grad in zip(params, grads, strict=True):
        torch.testing.assert_close(ascent[key], grad, rtol=0, atol=EXACT_ATOL)
    torch.testing.assert_close(metrics["pass_at_k"], (pass_k * weights).sum(-1).detach(), rtol=0, atol=EXACT_ATOL)
    plain, _ = ExactRFT(policy, env, TrainConfig(), beta, torch.zeros(2, dtype=DTYPE), policy.params).ascent(
        StepBatch(weights)
    )
    assert float((flat(plain) - flat(ascent)).abs().max()) > 1e-2  # pass@k is another objective


def test_exact_pass_k_refuses_a_non_binary_reward() -> None:
    env = random_sequence_env(num_prompts=2, vocab_size=3, length=2, reward="position_match", seed=3)
    policy = TabularPolicy.for_env(env, seed=[0], dtype="float64")
    zeros = torch.zeros(1, dtype=DTYPE)
    with pytest.raises(ConfigError, match="needs a binary reward, but input 0 .* has 3 distinct reward values"):
        ExactRFT(policy, env, TrainConfig(pass_k=2), zeros, zeros, policy.params)


# ----------------------------------------------------------------------------- the pipeline, Monte Carlo
@pytest.mark.parametrize(("group", "k", "prob"), [(5, 3, 0.1), (8, 4, 0.3)])
def test_sampled_pass_k_matches_the_exact_pass_k_gradient(group: int, k: int, prob: float) -> None:
    """rloo with pass_k: E ĝ = k (1-p)^(k-1) ∇V; the exact objective's ascent is the same vector."""
    env = bandit_binary()
    config = TrainConfig(estimator="rloo", num_generations=group, pass_k=k)
    samples, metrics, true_grad, policy = draw_estimates(env, config, seed=31 + group, prob=prob)
    p = success_probability(policy, env)
    scale = k * (1.0 - p) ** (k - 1)
    assert_mc_mean(samples, scale * true_grad, reject=true_grad)

    single = TabularPolicy.for_env(env, seed=[0], dtype="float64")
    single.params = {key: value[:1].clone() for key, value in policy.params.items()}
    zeros = torch.zeros(1, dtype=DTYPE)
    ascent, exact_metrics = ExactRFT(single, env, TrainConfig(pass_k=k), zeros, zeros, single.params).ascent(
        StepBatch(torch.ones(1, 1, dtype=DTYPE))
    )
    torch.testing.assert_close(flat(ascent)[0], scale * true_grad, rtol=0, atol=EXACT_ATOL)
    pass_value = -1.0 + 2.0 * (1.0 - (1.0 - p) ** k)
    assert float(exact_metrics["pass_at_k"]) == pytest.approx(pass_value, abs=EXACT_ATOL)
    logged = metrics["pass_at_k"]
    se = float(logged.std()) / math.sqrt(logged.shape[0])
    assert MC_Z * se < 0.05 and abs(float(logged.mean()) - pass_value) <= MC_Z * se


@pytest.mark.parametrize(("estimator", "group", "tries", "prob"), [("dapo", 3, 3, 0.85), ("dapo", 4, 2, 0.1)])
def test_dapo_samples_per_input_matches_its_expectation(estimator: str, group: int, tries: int, prob: float):
    """``samples_per_input = G (first informative try + 1)`` or ``G B``: mean ``G (1 - d^B)/(1 - d)``."""
    config = TrainConfig(estimator=estimator, num_generations=group, max_resample=tries)
    _, metrics, _, policy = draw_estimates(bandit_binary(), config, seed=41, prob=prob)
    logged = metrics["samples_per_input"]
    assert set(logged.unique().tolist()) <= {float(group * t) for t in range(1, tries + 1)}
    expected = float(expected_samples(success_probability(policy, bandit_binary()), group, "dapo", tries))
    se = float(logged.std()) / math.sqrt(logged.shape[0])
    assert MC_Z * se < 0.05 * expected and abs(float(logged.mean()) - expected) <= MC_Z * se
    assert expected > 1.2 * group  # resampling happens often enough to be seen


def test_other_estimators_log_g_samples_per_input() -> None:
    _, metrics, _, _ = draw_estimates(bandit_binary(), TrainConfig(estimator="grpo", num_generations=6), num_replicas=8)
    assert metrics["samples_per_input"].tolist() == [6.0] * 8


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pass_k": 0}, "pass_k must be >= 1"),
        ({"pass_k": 2, "estimator": "grpo"}, "pass_k > 1 supports estimator exact or rloo, got 'grpo'"),
        ({"pass_k": 2, "estimator": "ppo"}, "pass_k > 1 supports estimator exact or rloo"),
        ({"pass_k": 4, "estimator": "rloo", "num_generations": 4}, "needs num_generations > pass_k"),
    ],
)
def test_bad_pass_k_configs_raise(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**overrides)  # type: ignore[arg-type]


def test_pass_k_estimators_refuse_too_small_groups() -> None:
    rewards = torch.zeros(1, 1, 3, dtype=DTYPE)
    with pytest.raises(ConfigError, match="pass@k needs 1 <= k < G"):
        pass_k_advantages(rewards, 3)
    with pytest.raises(ConfigError, match="pass@k estimate needs 1 <= k <= G"):
        pass_k_estimate(rewards, 4)
    assert TrainConfig(pass_k=8, estimator="exact", num_generations=2).pass_k == 8  # exact: any k

"""Sampling by the Gumbel-max trick: right distribution, seeded, shaped (R, N, M, L)."""

from __future__ import annotations

import pytest
import torch

from rftgrad.envs import random_sequence_env
from rftgrad.errors import ConfigError
from tests.models.builders import KINDS, all_outputs, env_for, ids_of, make_policy

SIGMAS = 5.0  # per-output bound; fixed seeds make the tests deterministic anyway


def empirical_vs_exact(policy, env, num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequencies of every output among ``num_samples`` draws and the exact probabilities, ``(R, N, V^L)``."""
    ids, x = ids_of(env), policy.inputs_from(env)
    samples = policy.sample(ids, x, num_samples, env.output_space.length, seed=seed)
    index = env.output_space.index(samples)  # (R, N, M)
    counts = torch.zeros(*index.shape[:2], env.output_space.num_outputs, dtype=torch.float64)
    counts.scatter_add_(-1, index, torch.ones_like(index, dtype=torch.float64))
    exact = policy.log_prob(ids, x, all_outputs(env)).exp()
    return counts / num_samples, exact


def test_tabular_frequencies_match_exact_probabilities() -> None:
    """V = 3, L = 2, 2 inputs, 2 replicas, 20,000 samples each.

    Each output's count is Binomial(n, p): frequency standard error sqrt(p(1-p)/n) <= 0.0035.
    A 5-sigma band on each of the 36 (replica, input, output) cells has a false-alarm chance
    of about 36 · 5.7e-7 ≈ 2e-5; the 1e-12 floor only guards p ≈ 0 (none here).
    """
    env = random_sequence_env(num_prompts=2, vocab_size=3, length=2, seed=3)
    policy = make_policy("tabular", env, seed=[1, 2], temperature=[1.0, 0.6])
    num_samples = 20_000
    freq, exact = empirical_vs_exact(policy, env, num_samples, seed=7)
    assert exact.shape == (2, 2, 9)
    assert float(exact.min()) > 1e-4  # every output is reachable, so every bound is informative
    stderr = (exact * (1 - exact) / num_samples).sqrt()
    assert bool(((freq - exact).abs() <= SIGMAS * stderr + 1e-12).all()), (freq - exact).abs() / stderr
    torch.testing.assert_close(freq.sum(-1), torch.ones(2, 2, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_samples_from_its_own_distribution(kind: str) -> None:
    """4,000 samples per input: stderr sqrt(p(1-p)/4000) <= 0.0079; 5-sigma per cell.

    At most 4 · 27 = 108 cells: false-alarm chance about 108 · 5.7e-7 ≈ 6e-5. A cell with
    tiny p and no draw passes (|0 - p| <= 5 sqrt(p/n) whenever p <= 25/n).
    """
    env = env_for(kind)
    policy = make_policy(kind, env, seed=3)
    num_samples = 4_000
    freq, exact = empirical_vs_exact(policy, env, num_samples, seed=1)
    stderr = (exact * (1 - exact) / num_samples).sqrt()
    assert bool(((freq - exact).abs() <= SIGMAS * stderr + 1e-12).all()), ((freq - exact).abs() / stderr).max()


def test_sampling_follows_the_temperature() -> None:
    """T = 3 flattens a tabular bandit: frequencies match softmax(f/3), not softmax(f)."""
    env = random_sequence_env(num_prompts=1, vocab_size=4, length=1, seed=0)
    policy = make_policy("tabular", env, seed=0, init_scale=2.0, temperature=3.0)
    num_samples = 20_000  # stderr <= 0.0035
    freq, exact = empirical_vs_exact(policy, env, num_samples, seed=2)
    stderr = (exact * (1 - exact) / num_samples).sqrt()
    assert bool(((freq - exact).abs() <= SIGMAS * stderr).all())
    policy.set_temperature(1.0)
    untempered = policy.log_prob(ids_of(env), None, all_outputs(env)).exp()
    assert float((untempered - exact).abs().max()) > 20 * float(stderr.max())  # the check above can tell T apart


@pytest.mark.parametrize("kind", ["tabular", "linear-input_last_token", "mlp", "transformer"])
def test_samples_are_seeded(kind: str) -> None:
    env = env_for(kind)
    policy = make_policy(kind, env, seed=[0, 1])
    ids, x, length = ids_of(env), policy.inputs_from(env), env.output_space.length
    first = policy.sample(ids, x, 50, length, seed=4)
    assert first.shape == (2, env.num_inputs, 50, length)
    assert first.dtype == torch.long
    assert int(first.min()) >= 0 and int(first.max()) < env.output_space.vocab_size
    assert torch.equal(first, policy.sample(ids, x, 50, length, seed=4))
    other = policy.sample(ids, x, 50, length, seed=5)
    # with >= 50·N outputs per replica over V^L >= 3 values, two seeds agreeing everywhere
    # would need every draw to repeat: (max p)^(50·N) is astronomically small.
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


def test_shorter_samples_are_prefixes_of_longer_ones() -> None:
    """Same seed: the first l tokens do not depend on how many more are drawn."""
    env = env_for("transformer")
    policy = make_policy("transformer", env, seed=0)
    ids, x = ids_of(env), policy.inputs_from(env)
    full = policy.sample(ids, x, 20, 3, seed=8)
    assert torch.equal(policy.sample(ids, x, 20, 2, seed=8), full[..., :2])


@pytest.mark.parametrize(
    ("num_samples", "length"), [(0, 2), (-1, 2), (5, 0), (5, 4)]
)
def test_bad_sample_arguments_raise_config_error(num_samples: int, length: int) -> None:
    env = env_for("tabular")
    policy = make_policy("tabular", env)
    with pytest.raises(ConfigError, match=r"need num_samples >= 1 and 1 <= length <= 3"):
        policy.sample(ids_of(env), policy.inputs_from(env), num_samples, length)

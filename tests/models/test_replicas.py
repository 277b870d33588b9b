"""Replicas: replica r depends only on its own seed (rftgrad.models.base docstring).

A policy with ``seed=[5, 6, 7]`` must hold exactly the parameters of three single-replica
policies with seeds 5, 6 and 7, score outputs identically, and draw identical samples for
the same ``sample(seed=...)``. float32 and float64 policies draw the same float64 numbers
and differ only by rounding.
"""

from __future__ import annotations

import pytest
import torch

from rftgrad.errors import ConfigError
from tests.models.builders import KINDS, all_outputs, env_for, ids_of, make_policy

SEEDS = [5, 6, 7]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_batched_replicas_equal_single_replica_policies(kind: str) -> None:
    env = env_for(kind)
    batched = make_policy(kind, env, seed=SEEDS)
    assert batched.num_replicas == 3 and batched.seeds == SEEDS
    ids, x, outputs = ids_of(env), batched.inputs_from(env), all_outputs(env)
    length = env.output_space.length
    samples = batched.sample(ids, x, num_samples=6, length=length, seed=11)  # (3, N, 6, L)
    logp = batched.log_prob(ids, x, outputs)
    logp_samples = batched.log_prob(ids, x, samples)
    for r, seed in enumerate(SEEDS):
        single = make_policy(kind, env, seed=seed)
        assert single.params.keys() == batched.params.keys()
        for key, value in single.params.items():
            assert value.shape[0] == 1
            assert torch.equal(batched.params[key][r], value[0]), key
        torch.testing.assert_close(single.log_prob(ids, x, outputs)[0], logp[r], rtol=0, atol=1e-13)
        assert torch.equal(single.sample(ids, x, num_samples=6, length=length, seed=11)[0], samples[r])
        torch.testing.assert_close(single.log_prob(ids, x, samples[r])[0], logp_samples[r], rtol=0, atol=1e-13)


def test_distinct_seeds_give_distinct_parameters(kind: str) -> None:
    env = env_for(kind)
    policy = make_policy(kind, env, seed=SEEDS)
    random_keys = [key for key, value in policy.params.items() if value[0].std() > 0]
    assert random_keys, "some parameters must be random"
    for key in random_keys:
        value = policy.params[key]
        assert not torch.equal(value[0], value[1]) and not torch.equal(value[1], value[2]), key


def test_integer_seed_counts_up(kind: str) -> None:
    """seed=5, num_replicas=3 is seed=[5, 6, 7]."""
    env = env_for(kind)
    counted = make_policy(kind, env, seed=5, num_replicas=3)
    listed = make_policy(kind, env, seed=SEEDS)
    assert counted.seeds == SEEDS
    for key in listed.params:
        assert torch.equal(counted.params[key], listed.params[key]), key


def test_float32_params_are_float64_params_rounded(kind: str) -> None:
    env = env_for(kind)
    p64 = make_policy(kind, env, seed=SEEDS)
    p32 = make_policy(kind, env, seed=SEEDS, dtype="float32")
    for key, value in p64.params.items():
        assert value.dtype == torch.float64 and p32.params[key].dtype == torch.float32
        assert torch.equal(p32.params[key], value.to(torch.float32)), key
        # rounding to float32 moves each number by at most half an ulp: 2^-24 relative
        assert bool(((p32.params[key].double() - value).abs() <= value.abs() * 2.0**-24).all()), key


def test_seed_count_mismatch_raises_config_error() -> None:
    env = env_for("tabular")
    with pytest.raises(ConfigError, match=r"2 seeds given for num_replicas=3; give one seed per replica"):
        make_policy("tabular", env, seed=[1, 2], num_replicas=3)
    with pytest.raises(ConfigError, match=r"seed list is empty"):
        make_policy("tabular", env, seed=[])
    with pytest.raises(ConfigError, match=r"num_replicas must be >= 1, got 0"):
        make_policy("tabular", env, seed=1, num_replicas=0)

"""Sampling temperature: logits are ``f_θ / T``, one ``T`` per replica, ``T`` finite and > 0."""

from __future__ import annotations

import math

import pytest
import torch

from rftgrad.errors import ConfigError
from tests.models.builders import KINDS, all_outputs, env_for, ids_of, make_policy
from tests.tolerances import EXACT_ATOL


@pytest.mark.parametrize("kind", KINDS)
def test_logits_scale_as_one_over_temperature_per_replica(kind: str) -> None:
    """Three replicas with one seed (identical θ) and T = 0.5, 1, 3: logits_r · T_r all equal."""
    env = env_for(kind)
    temps = [0.5, 1.0, 3.0]
    policy = make_policy(kind, env, seed=[4, 4, 4], temperature=temps)
    reference = make_policy(kind, env, seed=4)  # T = 1
    ids, x, outputs = ids_of(env), policy.inputs_from(env), all_outputs(env)
    torch.testing.assert_close(policy.temperature, torch.tensor(temps, dtype=torch.float64))
    for pos in range(env.output_space.length):
        logits = policy.prefix_logits(ids, x, outputs[..., :pos])  # (3, N, M, V)
        base = reference.prefix_logits(ids, x, outputs[..., :pos])[0]
        for r, temp in enumerate(temps):
            torch.testing.assert_close(logits[r], base / temp, rtol=0, atol=EXACT_ATOL)
    seq = policy.sequence_logits(ids, x, outputs)
    base_seq = reference.sequence_logits(ids, x, outputs)[0]
    for r, temp in enumerate(temps):
        torch.testing.assert_close(seq[r], base_seq / temp, rtol=0, atol=EXACT_ATOL)


@pytest.mark.parametrize("kind", ["tabular", "mlp", "transformer"])
def test_log_prob_uses_the_tempered_softmax(kind: str) -> None:
    env = env_for(kind)
    policy = make_policy(kind, env, seed=2)
    ids, x, outputs = ids_of(env), policy.inputs_from(env), all_outputs(env)
    raw = policy.sequence_logits(ids, x, outputs)  # T = 1
    policy.set_temperature(2.5)
    expected = torch.log_softmax(raw / 2.5, dim=-1).gather(-1, outputs[None, ..., None])[..., 0].sum(-1)
    torch.testing.assert_close(policy.log_prob(ids, x, outputs), expected, rtol=0, atol=EXACT_ATOL)
    total = policy.log_prob(ids, x, outputs).exp().sum(-1)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=EXACT_ATOL)


def test_high_temperature_flattens_and_low_temperature_sharpens() -> None:
    """T -> inf gives the uniform policy, T -> 0 puts the mass on the argmax logit (tabular, L = 1)."""
    env = env_for("mlp")
    policy = make_policy("tabular", env, seed=0, temperature=[1e6, 1e-3], num_replicas=2)
    logits = policy.prefix_logits(ids_of(env), None, torch.zeros(env.num_inputs, 1, 0, dtype=torch.long))
    probs = logits.softmax(-1)  # (2, N, 1, V)
    vocab = env.output_space.vocab_size
    # |f| <= ~4 at init_scale 1: with T = 1e6 each probability is 1/V up to ~1e-5 relative.
    torch.testing.assert_close(probs[0], torch.full_like(probs[0], 1 / vocab), rtol=0, atol=1e-5)
    assert bool((probs[1].amax(-1) > 1 - 1e-9).all())


@pytest.mark.parametrize(
    ("temperature", "match"),
    [
        (0.0, r"temperature must be finite and > 0, got \[0\.0, 0\.0, 0\.0\]"),
        (-1.0, r"temperature must be finite and > 0, got \[-1\.0, -1\.0, -1\.0\]"),
        (math.nan, r"temperature must be finite and > 0, got \[nan, nan, nan\]"),
        (math.inf, r"temperature must be finite and > 0, got \[inf, inf, inf\]"),
        ([1.0, 0.0, 2.0], r"temperature must be finite and > 0"),
        ([1.0, 2.0], r"2 temperatures for R=3 replicas; give 1 or R"),
        ([1.0, 2.0, 3.0, 4.0], r"4 temperatures for R=3 replicas; give 1 or R"),
        ([], r"0 temperatures for R=3 replicas; give 1 or R"),
    ],
)
def test_bad_temperature_raises_config_error(temperature, match: str) -> None:
    env = env_for("tabular")
    with pytest.raises(ConfigError, match=match):
        make_policy("tabular", env, num_replicas=3, temperature=temperature)
    policy = make_policy("tabular", env, num_replicas=3, temperature=[1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match=match):
        policy.set_temperature(temperature)
    # a refused temperature leaves the old one in place
    torch.testing.assert_close(policy.temperature, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))


def test_temperature_accepts_a_tensor_and_follows_the_dtype() -> None:
    env = env_for("tabular")
    policy = make_policy("tabular", env, num_replicas=2, dtype="float32")
    policy.set_temperature(torch.tensor([0.25, 4.0]))
    assert policy.temperature.dtype == torch.float32
    assert policy.temperature.tolist() == [0.25, 4.0]
    policy.set_temperature(1.5)  # one value for every replica
    assert policy.temperature.tolist() == [1.5, 1.5]

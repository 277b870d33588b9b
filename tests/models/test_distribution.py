"""The autoregressive softmax distribution of every policy kind (docs/paper.md §1).

``p_θ(y|x) = Π_l softmax(f_θ(x, y_<l)/T)[y_l]``: it must normalise over all ``V^L``
outputs, ``sequence_logits`` must agree with ``prefix_logits`` on every prefix (teacher
forcing, including the transformer's one-pass causal evaluation), and ``log_prob`` must
equal the per-position log-softmax sum computed by hand.
"""

from __future__ import annotations

import pytest
import torch

from tests.models.builders import KINDS, all_outputs, env_for, ids_of, make_policy
from tests.tolerances import EXACT_ATOL


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def setup(kind: str):
    env = env_for(kind)
    policy = make_policy(kind, env, seed=[3, 4], temperature=[1.0, 0.7])
    return env, policy, ids_of(env), policy.inputs_from(env)


def test_probabilities_of_all_outputs_sum_to_one(setup) -> None:
    env, policy, ids, x = setup
    logp = policy.log_prob(ids, x, all_outputs(env))  # (R, N, V^L)
    assert logp.shape == (2, env.num_inputs, env.output_space.num_outputs)
    assert logp.dtype == torch.float64
    total = logp.exp().sum(-1)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=EXACT_ATOL)
    assert bool((logp < 0).all())  # no output takes all the mass at random init


def test_sequence_logits_equal_prefix_logits_at_every_position(setup) -> None:
    env, policy, ids, x = setup
    outputs = all_outputs(env)
    seq = policy.sequence_logits(ids, x, outputs)  # (R, N, M, L, V)
    assert seq.shape == (2, *outputs.shape, env.output_space.vocab_size)
    for pos in range(env.output_space.length):
        by_prefix = policy.prefix_logits(ids, x, outputs[..., :pos])  # (R, N, M, V)
        torch.testing.assert_close(seq[..., pos, :], by_prefix, rtol=0, atol=EXACT_ATOL)


def test_log_prob_is_the_sum_of_per_position_log_softmax(setup) -> None:
    env, policy, ids, x = setup
    outputs = all_outputs(env)
    by_hand = torch.zeros(2, *outputs.shape[:2], dtype=torch.float64)
    for pos in range(env.output_space.length):
        logits = policy.prefix_logits(ids, x, outputs[..., :pos])  # (R, N, M, V)
        logsm = logits - logits.logsumexp(-1, keepdim=True)
        by_hand += logsm.gather(-1, outputs[None, ..., pos, None].expand(2, -1, -1, 1))[..., 0]
    torch.testing.assert_close(policy.log_prob(ids, x, outputs), by_hand, rtol=0, atol=EXACT_ATOL)


def test_outputs_with_a_replica_axis_are_scored_per_replica(setup) -> None:
    """``(R, N, M, L)`` outputs: replica r scores its own outputs only."""
    env, policy, ids, x = setup
    outputs = all_outputs(env)
    shuffled = torch.stack([outputs, outputs.flip(1)])  # (R=2, N, M, L), different per replica
    logp = policy.log_prob(ids, x, shuffled)
    shared = policy.log_prob(ids, x, outputs)
    torch.testing.assert_close(logp[0], shared[0], rtol=0, atol=EXACT_ATOL)
    torch.testing.assert_close(logp[1], shared[1].flip(1), rtol=0, atol=EXACT_ATOL)


def test_a_subset_of_inputs_gives_the_same_rows(setup) -> None:
    """ids and x select inputs consistently (tabular reads ids, the others read x)."""
    env, policy, ids, x = setup
    outputs = all_outputs(env)
    subset = torch.tensor([2, 0])
    full = policy.log_prob(ids, x, outputs)
    part = policy.log_prob(ids[subset], x[subset], outputs[subset])
    torch.testing.assert_close(part, full[:, subset], rtol=0, atol=EXACT_ATOL)


def test_zero_init_scale_gives_the_uniform_policy(kind: str) -> None:
    """init_scale = 0 zeroes the read-out (or the tabular logits): p(y|x) = V^-L for every y."""
    env = env_for(kind)
    policy = make_policy(kind, env, init_scale=0.0)
    logp = policy.log_prob(ids_of(env), policy.inputs_from(env), all_outputs(env))
    vocab, length = env.output_space.vocab_size, env.output_space.length
    expected = -length * torch.log(torch.tensor(float(vocab), dtype=torch.float64))
    torch.testing.assert_close(logp, expected.expand_as(logp), rtol=0, atol=EXACT_ATOL)


def test_float32_log_probs_match_float64(kind: str) -> None:
    """Same seed in float32: log p agrees with float64 to float32 accuracy (|log p| <= ~15 here)."""
    env = env_for(kind)
    p64 = make_policy(kind, env, seed=9)
    p32 = make_policy(kind, env, seed=9, dtype="float32")
    outputs = all_outputs(env)
    lp64 = p64.log_prob(ids_of(env), p64.inputs_from(env), outputs)
    lp32 = p32.log_prob(ids_of(env), p32.inputs_from(env), outputs)
    assert lp32.dtype == torch.float32
    # float32 eps 1.2e-7 times |log p| <= 20 and a few dozen ops: 1e-4 is a generous bound.
    torch.testing.assert_close(lp32.double(), lp64, rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["tabular", "linear-input_prefix", "transformer"])
def test_policy_with_longer_max_length_serves_a_shorter_env(kind: str) -> None:
    """A policy built for L = 3 acts in an L = 2 env of the same V: still normalised."""
    long_env = env_for(kind)
    short_env = type(long_env)(
        long_env.prompts, long_env.targets[:, :2], long_env.output_space.vocab_size,
        prompt_vocab_size=long_env.prompt_vocab_size,
    )
    policy = make_policy(kind, long_env, seed=1)
    policy.check_compatible(short_env)
    logp = policy.log_prob(ids_of(short_env), policy.inputs_from(short_env), all_outputs(short_env))
    assert logp.shape == (1, 4, 9)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(1, 4, dtype=torch.float64), rtol=0, atol=EXACT_ATOL)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("mlp", {"activation": "relu"}),
        ("mlp", {"activation": "gelu", "hidden": (5,)}),
        ("transformer", {"num_layers": 3}),  # num_layers=0 is refused (no blocks)
        ("transformer", {"num_layers": 1, "num_heads": 1, "d_model": 6}),
    ],
)
def test_architecture_variants_are_normalised_and_teacher_forced(kind: str, extra: dict) -> None:
    env = env_for(kind)
    policy = make_policy(kind, env, seed=[1, 2], **extra)
    ids, x, outputs = ids_of(env), policy.inputs_from(env), all_outputs(env)
    total = policy.log_prob(ids, x, outputs).exp().sum(-1)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=EXACT_ATOL)
    seq = policy.sequence_logits(ids, x, outputs)
    for pos in range(env.output_space.length):
        by_prefix = policy.prefix_logits(ids, x, outputs[..., :pos])
        torch.testing.assert_close(seq[..., pos, :], by_prefix, rtol=0, atol=EXACT_ATOL)

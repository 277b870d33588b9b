"""Tests of rftgrad.envs.sequence: reward functions, SequenceEnv and random_sequence_env."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from rftgrad.envs import (
    ENVIRONMENTS,
    REWARDS,
    CallableReward,
    ContainsToken,
    ExactMatch,
    OutputSpace,
    PositionMatch,
    RandomRewardNetwork,
    SequenceEnv,
    TableReward,
    random_sequence_env,
)
from rftgrad.errors import ConfigError, OutputSpaceError, RewardRangeError, ShapeMismatchError

# --------------------------------------------------------------------------- reward functions


def test_exact_match():
    fn = ExactMatch(torch.tensor([[0, 1, 2], [2, 2, 0]]))
    ids = torch.tensor([0, 0, 1, 1])
    ys = torch.tensor([[0, 1, 2], [0, 1, 0], [2, 2, 0], [0, 1, 2]])
    torch.testing.assert_close(fn(ids, ys), torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64), atol=0, rtol=0)


def test_position_match():
    fn = PositionMatch(torch.tensor([[1, 0, 2, 3]]))
    ys = torch.tensor([[1, 0, 2, 0], [1, 0, 2, 3], [0, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    # 3/4 -> 0.5, 4/4 -> 1, 0/4 -> -1, 1/4 -> -0.5, 2/4 -> 0
    expected = torch.tensor([0.5, 1.0, -1.0, -0.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(fn(torch.zeros(5, dtype=torch.long), ys), expected, atol=1e-15, rtol=0)


def test_contains_token_scalar_and_per_input():
    ys = torch.tensor([[0, 1, 1], [2, 2, 2], [1, 0, 3]])
    ids = torch.tensor([0, 1, 2])
    torch.testing.assert_close(
        ContainsToken(3)(ids, ys), torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64), atol=0, rtol=0
    )
    per_input = ContainsToken(torch.tensor([1, 0, 0]))
    torch.testing.assert_close(
        per_input(ids, ys), torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64), atol=0, rtol=0
    )


def test_random_reward_network_range_and_determinism():
    space = OutputSpace(3, 3)
    ys = space.enumerate().repeat(4, 1)  # (4·27, 3)
    ids = torch.arange(4).repeat_interleave(27)
    a = RandomRewardNetwork(4, space, seed=0)(ids, ys)
    b = RandomRewardNetwork(4, space, seed=0)(ids, ys)
    c = RandomRewardNetwork(4, space, seed=1)(ids, ys)
    assert a.shape == (108,) and a.dtype == torch.float64
    assert float(a.abs().max()) < 1.0
    assert torch.equal(a, b)
    assert float((a - c).abs().max()) > 1e-3
    # dense: not a constant, and depends on the input as well as the output
    assert float(a.std()) > 1e-3
    assert not torch.allclose(a[:27], a[27:54])


def test_random_reward_network_scale_zero_is_zero():
    space = OutputSpace(2, 2)
    out = RandomRewardNetwork(2, space, scale=0.0)(torch.tensor([0, 1]), torch.tensor([[0, 1], [1, 1]]))
    torch.testing.assert_close(out, torch.zeros(2, dtype=torch.float64), atol=0, rtol=0)


def test_table_reward_reads_enumeration_order():
    space = OutputSpace(2, 2)
    table = torch.tensor([[0.1, 0.2, 0.3, 0.4], [-0.1, -0.2, -0.3, -0.4]], dtype=torch.float64)
    fn = TableReward(table, space)
    out = fn(torch.tensor([0, 1, 0]), torch.tensor([[1, 0], [1, 1], [0, 1]]))  # indices 2, 3, 1
    torch.testing.assert_close(out, torch.tensor([0.3, -0.4, 0.2], dtype=torch.float64), atol=0, rtol=0)


@pytest.mark.parametrize("shape", [(2, 3), (2, 5), (4,), (1, 2, 4)])
def test_table_reward_rejects_shape(shape):
    with pytest.raises(ShapeMismatchError, match=r"reward table has shape .*expected \(N, V\^L=4\)"):
        TableReward(np.zeros(shape), OutputSpace(2, 2))


def test_table_reward_rejects_range():
    with pytest.raises(RewardRangeError, match=r"reward table at index \(0, 3\) is -3.0, outside \[-1, 1\]"):
        TableReward(np.array([[0.0, 0.0, 0.0, -3.0]]), OutputSpace(2, 2))


def test_callable_reward_converts_lists_and_rejects_non_callables():
    fn = CallableReward(lambda ids, ys: [0.25] * len(ids))
    out = fn(torch.tensor([0, 1]), torch.zeros(2, 2, dtype=torch.long))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([0.25, 0.25], dtype=torch.float64), atol=0, rtol=0)
    with pytest.raises(ConfigError, match=r"reward must be callable.*got int"):
        CallableReward(5)


# --------------------------------------------------------------------------- SequenceEnv


PROMPTS = torch.tensor([[0, 3], [2, 1], [1, 1]])
TARGETS = torch.tensor([[0, 1, 2], [2, 2, 0], [1, 0, 1]])


def _brute_force_table(env: SequenceEnv, fn) -> torch.Tensor:
    space = env.output_space
    rows = []
    for i in range(env.num_inputs):
        row = []
        for y in itertools.product(range(space.vocab_size), repeat=space.length):
            row.append(float(fn(torch.tensor([i]), torch.tensor([y]))[0]))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def _reference(name: str):
    """Independent per-(input, output) definitions of the named rewards."""
    targets = TARGETS.tolist()

    def exact(i, y):
        return 1.0 if list(y) == targets[i] else -1.0

    def position(i, y):
        return 2.0 * sum(a == b for a, b in zip(y, targets[i], strict=True)) / len(y) - 1.0

    def contains(i, y):
        return 1.0 if targets[i][0] in y else -1.0

    return {"exact_match": exact, "position_match": position, "contains_token": contains}[name]


@pytest.mark.parametrize("name", ["exact_match", "position_match", "contains_token"])
def test_named_reward_table_matches_brute_force(name):
    env = SequenceEnv(PROMPTS, TARGETS, 3, reward=name)
    table = env.reward_table()
    assert table.shape == (3, 27) and table.dtype == torch.float64
    ref = _reference(name)
    expected = torch.tensor(
        [[ref(i, y) for y in itertools.product(range(3), repeat=3)] for i in range(3)], dtype=torch.float64
    )
    torch.testing.assert_close(table, expected, atol=1e-15, rtol=0)
    torch.testing.assert_close(table, _brute_force_table(env, env.reward), atol=1e-15, rtol=0)


def test_exact_match_table_has_one_plus_one_per_row_at_target():
    env = SequenceEnv(PROMPTS, TARGETS, 3)
    table = env.reward_table()
    assert torch.equal((table == 1.0).sum(1), torch.ones(3, dtype=torch.long))
    assert torch.equal(table.argmax(1), env.target_index())
    assert torch.equal(env.target_index(), torch.tensor([0 * 9 + 1 * 3 + 2, 2 * 9 + 2 * 3 + 0, 1 * 9 + 0 + 1]))


def test_random_network_env_table_matches_brute_force():
    env = SequenceEnv(PROMPTS, TARGETS, 3, reward="random_network", seed=3)
    table = env.reward_table()
    assert table.shape == (3, 27)
    torch.testing.assert_close(table, _brute_force_table(env, env.reward_fn), atol=1e-14, rtol=0)
    direct = RandomRewardNetwork(3, env.output_space, seed=3)
    torch.testing.assert_close(table, _brute_force_table(env, direct), atol=1e-14, rtol=0)
    assert float(table.abs().max()) < 1.0
    other = SequenceEnv(PROMPTS, TARGETS, 3, reward="random_network", seed=4).reward_table()
    assert float((table - other).abs().max()) > 1e-3


def test_table_env():
    table = torch.linspace(-1, 1, 3 * 27, dtype=torch.float64).reshape(3, 27)
    env = SequenceEnv(PROMPTS, TARGETS, 3, reward=table)
    torch.testing.assert_close(env.reward_table(), table, atol=0, rtol=0)
    torch.testing.assert_close(env.reward_table(), _brute_force_table(env, env.reward), atol=0, rtol=0)
    with pytest.raises(ShapeMismatchError, match=r"reward table has 2 rows, expected N=3"):
        SequenceEnv(PROMPTS, TARGETS, 3, reward=np.zeros((2, 27)))
    with pytest.raises(ShapeMismatchError, match=r"expected \(N, V\^L=27\)"):
        SequenceEnv(PROMPTS, TARGETS, 3, reward=np.zeros((3, 9)))


def test_callable_env():
    def fn(ids, ys):
        # reward = (y_1 - y_3) / 2.5 + 0.1 · input id - 0.1, within [-0.9, 0.9] for V = 3, N = 3
        return (ys[:, 0] - ys[:, 2]).double() / 2.5 + 0.1 * ids.double() - 0.1

    env = SequenceEnv(PROMPTS, TARGETS, 3, reward=fn)
    assert isinstance(env.reward_fn, CallableReward)
    table = env.reward_table()
    expected = torch.tensor(
        [[(y[0] - y[2]) / 2.5 + 0.1 * i - 0.1 for y in itertools.product(range(3), repeat=3)] for i in range(3)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(table, expected, atol=1e-15, rtol=0)
    torch.testing.assert_close(table, _brute_force_table(env, fn), atol=1e-15, rtol=0)


def test_callable_env_out_of_range_in_table():
    env = SequenceEnv(PROMPTS, TARGETS, 3, reward=lambda ids, ys: ys[:, 0].double(), name="bad")
    with pytest.raises(RewardRangeError, match=r"reward of bad at index 18 is 2.0, outside \[-1, 1\]"):
        env.reward_table()


def test_reward_objects_are_used_directly():
    fn = PositionMatch(TARGETS)
    env = SequenceEnv(PROMPTS, TARGETS, 3, reward=fn)
    assert env.reward_fn is fn


def test_unknown_reward_name():
    with pytest.raises(ConfigError, match=r"unknown reward 'bleu'; choose one of exact_match, position_match"):
        SequenceEnv(PROMPTS, TARGETS, 3, reward="bleu")


def test_features_are_one_hot_prompts():
    env = SequenceEnv(PROMPTS, TARGETS, 3)
    assert env.prompt_vocab_size == 4
    assert env.features.shape == (3, 2 * 4) and env.features.dtype == torch.float64
    expected = torch.zeros(3, 8, dtype=torch.float64)
    for i, (a, b) in enumerate(PROMPTS.tolist()):
        expected[i, a] = 1.0
        expected[i, 4 + b] = 1.0
    assert torch.equal(env.features, expected)
    wide = SequenceEnv(PROMPTS, TARGETS, 3, prompt_vocab_size=6)
    assert wide.features.shape == (3, 12)


@pytest.mark.parametrize(
    "prompts,targets,kwargs,pattern",
    [
        (torch.tensor([0, 1, 2]), TARGETS, {}, r"prompts must be 2-D \(N, P\), got shape \(3,\)"),
        (PROMPTS, TARGETS[:2], {}, r"targets have shape \(2, 3\), expected \(N=3, L\)"),
        (PROMPTS, TARGETS[0], {}, r"targets have shape \(3,\), expected \(N=3, L\)"),
        (PROMPTS, TARGETS + 1, {}, r"\[0, V=3\)"),
        (-PROMPTS - 1, TARGETS, {}, r"prompt tokens must be >= 0"),
        (PROMPTS, TARGETS, {"prompt_vocab_size": 3}, r"prompt token 3 >= prompt_vocab_size=3"),
    ],
)
def test_sequence_env_shape_checks(prompts, targets, kwargs, pattern):
    with pytest.raises(ShapeMismatchError, match=pattern):
        SequenceEnv(prompts, targets, 3, **kwargs)


def test_sequence_env_rejects_bad_group_mask():
    with pytest.raises(ShapeMismatchError, match=r"group 'g' mask has shape"):
        SequenceEnv(PROMPTS, TARGETS, 3, groups={"g": torch.tensor([True, False])})


def test_sequence_env_groups():
    mask = torch.tensor([True, False, True])
    env = SequenceEnv(PROMPTS, TARGETS, 3, groups={"g": mask})
    assert torch.equal(env.group_masks()["g"], mask)
    assert torch.equal(env.group_masks()["all"], torch.ones(3, dtype=torch.bool))


# --------------------------------------------------------------------------- random_sequence_env


def test_random_sequence_env_shapes_and_determinism():
    env = random_sequence_env(num_prompts=5, vocab_size=3, length=2, prompt_length=4, prompt_vocab_size=6, seed=2)
    assert env.prompts.shape == (5, 4) and env.targets.shape == (5, 2)
    assert env.output_space == OutputSpace(3, 2)
    assert env.prompt_vocab_size == 6 and env.features.shape == (5, 24)
    assert env.name == "sequence-exact_match"
    assert int(env.prompts.max()) < 6 and int(env.targets.max()) < 3
    again = random_sequence_env(num_prompts=5, vocab_size=3, length=2, prompt_length=4, prompt_vocab_size=6, seed=2)
    assert torch.equal(env.prompts, again.prompts) and torch.equal(env.targets, again.targets)
    other = random_sequence_env(num_prompts=5, vocab_size=3, length=2, prompt_length=4, prompt_vocab_size=6, seed=3)
    assert not (torch.equal(env.prompts, other.prompts) and torch.equal(env.targets, other.targets))
    torch.testing.assert_close(env.reward_table(), _brute_force_table(env, env.reward), atol=0, rtol=0)


def test_random_sequence_env_custom_reward_name():
    env = random_sequence_env(reward=lambda ids, ys: torch.zeros(len(ids)))
    assert env.name == "sequence-custom"
    torch.testing.assert_close(env.reward_table(), torch.zeros(8, 64, dtype=torch.float64), atol=0, rtol=0)


@pytest.mark.parametrize("kwargs,pattern", [({"vocab_size": 1}, r"V=1"), ({"length": 0}, r"L=0")])
def test_random_sequence_env_rejects_bad_space(kwargs, pattern):
    with pytest.raises(OutputSpaceError, match=pattern):
        random_sequence_env(**kwargs)


def test_registry_lists_rewards():
    assert REWARDS == ("exact_match", "position_match", "contains_token", "random_network")
    assert set(ENVIRONMENTS) == {"bandit", "orthonormal", "gaussian", "digits", "sequence"}
    assert all(name in ENVIRONMENTS["sequence"] for name in REWARDS)


def test_sequence_with_rewards_swaps_only_the_reward_table():
    env = random_sequence_env(num_prompts=3, vocab_size=2, length=2, reward="exact_match", seed=4)
    table = torch.tensor([[0.1, 0.2, 0.3, 0.4]] * 3, dtype=torch.float64)
    swapped = env.with_rewards(table)
    assert torch.equal(swapped.reward_table(), table)
    assert torch.equal(swapped.prompts, env.prompts) and torch.equal(swapped.features, env.features)
    with pytest.raises(ShapeMismatchError, match="expected"):
        env.with_rewards(table[:, :3])

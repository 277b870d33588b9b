"""Tests of rftgrad.envs.base: OutputSpace, validate_rewards and the RewardEnv checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rftgrad.envs import DEFAULT_MAX_OUTPUTS, ClassificationEnv, OutputSpace, SequenceEnv, validate_rewards
from rftgrad.errors import EnumerationLimitError, OutputSpaceError, RewardRangeError, ShapeMismatchError

SPACES = [(2, 1), (2, 3), (3, 2), (4, 3), (5, 1), (3, 4)]


# --------------------------------------------------------------------------- OutputSpace


@pytest.mark.parametrize("vocab", [1, 0, -3])
def test_output_space_rejects_small_vocab(vocab):
    with pytest.raises(OutputSpaceError, match=rf"V={vocab}.*V >= 2"):
        OutputSpace(vocab, 2)


@pytest.mark.parametrize("length", [0, -1])
def test_output_space_rejects_short_length(length):
    with pytest.raises(OutputSpaceError, match=rf"L={length}.*L >= 1"):
        OutputSpace(3, length)


@pytest.mark.parametrize("vocab,length", [(2.0, 2), (2, 1.0), ("3", 2)])
def test_output_space_rejects_non_integer_sizes(vocab, length):
    with pytest.raises(OutputSpaceError, match=r"(V|L)=.*invalid"):
        OutputSpace(vocab, length)


def test_output_space_accepts_numpy_integers():
    space = OutputSpace(np.int64(3), np.int32(2))
    assert space.num_outputs == 9


@pytest.mark.parametrize("vocab,length", SPACES)
def test_num_outputs_and_prefix_states(vocab, length):
    space = OutputSpace(vocab, length)
    assert space.num_outputs == vocab**length
    assert space.num_prefix_states == sum(vocab**j for j in range(length))


@pytest.mark.parametrize("vocab,length", SPACES)
def test_enumerate_matches_itertools_product(vocab, length):
    space = OutputSpace(vocab, length)
    outputs = space.enumerate()
    expected = torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long)
    assert outputs.dtype == torch.long
    assert outputs.shape == (vocab**length, length)
    assert torch.equal(outputs, expected)


@pytest.mark.parametrize("vocab,length", SPACES)
def test_prefixes_match_itertools_product_at_every_level(vocab, length):
    space = OutputSpace(vocab, length)
    for level in range(length + 1):
        prefixes = space.prefixes(level)
        expected = list(itertools.product(range(vocab), repeat=level))
        assert prefixes.shape == (vocab**level, level)
        assert [tuple(int(t) for t in row) for row in prefixes] == expected


@pytest.mark.parametrize("level", [-1, 4])
def test_prefixes_rejects_level_outside_range(level):
    with pytest.raises(OutputSpaceError, match=rf"prefix level {level} outside \[0, L=3\]"):
        OutputSpace(2, 3).prefixes(level)


@pytest.mark.parametrize("vocab,length", SPACES)
def test_index_inverts_enumerate(vocab, length):
    space = OutputSpace(vocab, length)
    outputs = space.enumerate()
    assert torch.equal(space.index(outputs), torch.arange(vocab**length))
    # batched (..., L) input keeps the leading shape
    batched = outputs.reshape(1, -1, length)
    assert torch.equal(space.index(batched), torch.arange(vocab**length)[None])


def test_index_of_explicit_output():
    # y = (2, 0, 1) over V = 3: 2·9 + 0·3 + 1 = 19
    assert int(OutputSpace(3, 3).index(torch.tensor([2, 0, 1]))) == 19


def test_outputs_below_a_prefix_form_a_contiguous_block():
    space = OutputSpace(3, 3)
    outputs = space.enumerate()
    for level in range(space.length + 1):
        for u, prefix in enumerate(space.prefixes(level)):
            block = torch.nonzero((outputs[:, :level] == prefix).all(-1)).flatten()
            width = 3 ** (space.length - level)
            assert torch.equal(block, torch.arange(u * width, (u + 1) * width))


@pytest.mark.parametrize("vocab,length", SPACES)
def test_prefix_state_is_a_bijection_onto_all_states(vocab, length):
    space = OutputSpace(vocab, length)
    states = []
    for level in range(length):
        prefixes = space.prefixes(level)
        got = space.prefix_state(prefixes)
        offset = sum(vocab**j for j in range(level))
        # block [Σ_{j<l} V^j, Σ_{j<=l} V^j) in lexicographic order
        assert torch.equal(got, offset + torch.arange(vocab**level))
        states.extend(int(s) for s in got)
    assert sorted(states) == list(range(space.num_prefix_states))
    assert len(set(states)) == space.num_prefix_states


def test_prefix_state_of_empty_prefix_is_zero():
    assert int(OutputSpace(4, 3).prefix_state(torch.zeros(0, dtype=torch.long))) == 0


def test_check_enumerable_limit():
    space = OutputSpace(4, 3)  # 64 outputs
    space.check_enumerable(64)  # at the limit: fine
    with pytest.raises(EnumerationLimitError, match=r"max_outputs=63.*sampl"):
        space.check_enumerable(63)
    with pytest.raises(EnumerationLimitError, match=r"max_outputs=10.*sampl"):
        space.enumerate(max_outputs=10)


def test_default_enumeration_limit():
    assert DEFAULT_MAX_OUTPUTS == 2**20
    OutputSpace(2, 20).check_enumerable()
    with pytest.raises(EnumerationLimitError, match=r"2\^21 = 2097152.*max_outputs=1048576.*sampl"):
        OutputSpace(2, 21).check_enumerable()


@pytest.mark.parametrize(
    "outputs,pattern",
    [
        (torch.zeros(3, 2, dtype=torch.long), r"shape \(3, 2\), expected \(\.\.\., L=3\)"),
        (torch.tensor([[0, 1, 3]]), r"\[0, V=3\).*\[0, 3\]"),
        (torch.tensor([[0, -1, 2]]), r"\[0, V=3\).*\[-1, 2\]"),
        (torch.zeros(2, 3), r"integer tokens.*float32"),
        (torch.zeros(2, 3, dtype=torch.bool), r"integer tokens.*bool"),
        (torch.tensor(1), r"shape \(\), expected"),
    ],
)
def test_check_outputs_rejects(outputs, pattern):
    with pytest.raises(ShapeMismatchError, match=pattern):
        OutputSpace(3, 3).check_outputs(outputs)


# --------------------------------------------------------------------------- validate_rewards


@pytest.mark.parametrize(
    "values,index,shown",
    [
        ([0.0, 0.5, float("nan")], 2, "nan"),
        ([1.5, 0.0], 0, "1.5"),
        ([0.0, 0.0, 0.0, -1.0001], 3, "-1.0001"),
        ([0.2, float("inf")], 1, "inf"),
    ],
)
def test_validate_rewards_rejects_out_of_range(values, index, shown):
    with pytest.raises(RewardRangeError, match=rf"reward at index {index} is {shown}, outside \[-1, 1\]"):
        validate_rewards(torch.tensor(values, dtype=torch.float64))


def test_validate_rewards_names_first_bad_entry_of_a_matrix():
    values = np.zeros((2, 3))
    values[1, 2] = 2.0
    values[1, 0] = np.nan
    with pytest.raises(RewardRangeError, match=r"my table at index \(1, 0\) is nan, outside \[-1, 1\]"):
        validate_rewards(values, "my table")


def test_validate_rewards_accepts_boundaries_as_float64():
    out = validate_rewards(torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float32))
    assert out.dtype == torch.float64
    assert torch.equal(out, torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.int8])
def test_validate_rewards_accepts_int_input(dtype):
    out = validate_rewards(np.array([-1, 0, 1], dtype=dtype))
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), [-1.0, 0.0, 1.0])


def test_validate_rewards_rejects_int_out_of_range():
    with pytest.raises(RewardRangeError, match=r"index 1 is 2.0, outside \[-1, 1\]"):
        validate_rewards(torch.tensor([1, 2]))


@pytest.mark.parametrize("values", [torch.tensor([True, False]), torch.tensor([1j])])
def test_validate_rewards_rejects_non_numeric(values):
    with pytest.raises(RewardRangeError, match=r"must be numeric"):
        validate_rewards(values)


def test_validate_rewards_accepts_uint8():
    out = validate_rewards(np.array([0, 1], dtype=np.uint8))
    np.testing.assert_array_equal(out.numpy(), [0.0, 1.0])


@given(st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=1, max_size=20))
def test_validate_rewards_is_identity_on_range(values):
    out = validate_rewards(np.array(values))
    np.testing.assert_array_equal(out.numpy(), np.array(values))


# --------------------------------------------------------------------------- RewardEnv.reward


@pytest.fixture
def env() -> ClassificationEnv:
    """N = 3 inputs, K = 4 classes, labels 0, 2, 3."""
    return ClassificationEnv(torch.eye(3), torch.tensor([0, 2, 3]), 4)


def test_reward_values_and_dtype(env):
    out = env.reward(torch.tensor([0, 1, 2, 2]), torch.tensor([[0], [1], [3], [0]]))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64), atol=0, rtol=0)


@pytest.mark.parametrize(
    "ids,outputs,pattern",
    [
        ([0, 1], torch.tensor([[0, 1], [0, 1]]), r"expected \(\.\.\., L=1\)"),  # wrong L
        ([0, 1], torch.tensor([[0], [4]]), r"\[0, V=4\)"),  # token >= V
        ([0, 1], torch.tensor([[-1], [0]]), r"\[0, V=4\)"),  # negative token
        ([0, 3], torch.tensor([[0], [0]]), r"input ids must lie in \[0, N=3\).*\[0, 3\]"),
        ([-1, 0], torch.tensor([[0], [0]]), r"input ids must lie in \[0, N=3\).*\[-1, 0\]"),
        ([0, 1, 2], torch.tensor([[0], [0]]), r"3 input ids and outputs of shape \(2, 1\)"),  # batch mismatch
        ([0], torch.tensor([[[0]]]), r"1 input ids and outputs of shape \(1, 1, 1\)"),  # 3-D outputs
    ],
)
def test_reward_rejects_bad_shapes(env, ids, outputs, pattern):
    with pytest.raises(ShapeMismatchError, match=pattern):
        env.reward(torch.tensor(ids), outputs)


def test_reward_rejects_float_input_ids(env):
    with pytest.raises(ShapeMismatchError, match=r"input ids"):
        env.reward(torch.tensor([0.7]), torch.tensor([[0]]))


def _seq_env(fn) -> SequenceEnv:
    return SequenceEnv(torch.tensor([[0], [1]]), torch.tensor([[0, 1], [1, 0]]), 2, reward=fn, name="custom")


@pytest.mark.parametrize("bad", [1.5, -2.0, float("nan")])
def test_callable_returning_out_of_range_is_refused(bad):
    env = _seq_env(lambda ids, ys: [0.0] * (len(ids) - 1) + [bad])
    with pytest.raises(RewardRangeError, match=r"reward of custom at index 2 is .*outside \[-1, 1\]"):
        env.reward(torch.tensor([0, 1, 0]), torch.tensor([[0, 0], [1, 1], [0, 1]]))


@pytest.mark.parametrize("result,shape", [(np.zeros((3, 1)), r"\(3, 1\)"), (np.zeros(2), r"\(2,\)"), (0.0, r"\(\)")])
def test_callable_returning_wrong_shape_is_refused(result, shape):
    env = _seq_env(lambda ids, ys: result)
    with pytest.raises(ShapeMismatchError, match=rf"returned shape {shape}, expected \(3,\)"):
        env.reward(torch.tensor([0, 1, 0]), torch.tensor([[0, 0], [1, 1], [0, 1]]))


def test_reward_table_is_cached_and_still_checks_limit(env, monkeypatch):
    table = env.reward_table()
    assert table.shape == (3, 4)
    monkeypatch.setattr(env, "reward", lambda *args: pytest.fail("reward table recomputed"))
    assert torch.equal(env.reward_table(), table)
    with pytest.raises(EnumerationLimitError, match=r"max_outputs=3.*sampl"):
        env.reward_table(max_outputs=3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ClassificationEnv(torch.eye(3), torch.tensor([0, 2, 3]), 4),
        lambda: SequenceEnv(torch.tensor([[0], [1]]), torch.tensor([[0, 1], [1, 0]]), 2),
        lambda: _seq_env(lambda ids, ys: torch.zeros(len(ids))),
    ],
)
def test_editing_the_returned_reward_table_leaves_the_env_unchanged(make):
    env = make()
    first = env.reward_table()
    expected = first.clone()
    first.fill_(0.5)
    assert torch.equal(env.reward_table(), expected)
    assert env.reward_table() is not env.reward_table()


def test_getters_and_constructors_do_not_share_tensors_with_the_caller():
    """labels, group masks and reward tables handed in or out are copies: editing them leaves the env."""
    groups = {"odd": torch.tensor([False, True, False])}
    table = -torch.ones(3, 4, dtype=torch.float64)
    env = ClassificationEnv(torch.eye(3), torch.tensor([0, 2, 3]), 4, reward_table=table, groups=groups)
    table.fill_(1.0)
    groups["odd"].fill_(True)
    assert torch.equal(env.reward_table(), -torch.ones(3, 4, dtype=torch.float64))
    env.labels.fill_(1)
    env.group_masks()["odd"].fill_(True)
    assert env.labels.tolist() == [0, 2, 3]
    assert env.group_masks()["odd"].tolist() == [False, True, False]
    other = env.with_rewards(torch.zeros(3, 4))
    other.groups["odd"].fill_(True)
    assert env.groups["odd"].tolist() == [False, True, False]
    rewards = torch.tensor([0.5, -0.5], dtype=torch.float64)
    checked = validate_rewards(rewards)
    assert checked is not rewards and checked.data_ptr() != rewards.data_ptr()


def test_target_index_groups_and_describe(env):
    assert torch.equal(env.target_index(), torch.tensor([0, 2, 3]))
    masks = env.group_masks()
    assert list(masks) == ["all"]
    assert torch.equal(masks["all"], torch.ones(3, dtype=torch.bool))
    assert env.describe() == "classification: N=3 inputs, V=4, L=1"
    assert repr(env) == "<ClassificationEnv classification: N=3 inputs, V=4, L=1>"

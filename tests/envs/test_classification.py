"""Tests of rftgrad.envs.classification: bandits, labelled data, label sets and label modification."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rftgrad.envs import (
    BanditEnv,
    ClassificationEnv,
    digits,
    gaussian_clusters,
    modify_labels,
    orthonormal,
    pretraining_label_sets,
    with_label_sets,
)
from rftgrad.errors import ConfigError, OutputSpaceError, RewardRangeError, ShapeMismatchError

# --------------------------------------------------------------------------- BanditEnv


def test_bandit_table_and_target():
    rewards = [0.1, -0.5, 0.9, 0.3]
    env = BanditEnv(rewards)
    assert env.num_inputs == 1
    assert env.output_space.vocab_size == 4 and env.output_space.length == 1
    torch.testing.assert_close(env.reward_table(), torch.tensor([rewards], dtype=torch.float64), atol=0, rtol=0)
    torch.testing.assert_close(env.table, torch.tensor([rewards], dtype=torch.float64), atol=0, rtol=0)
    assert int(env.labels[0]) == 2  # argmax
    assert torch.equal(env.target_index(), torch.tensor([2]))
    assert torch.equal(env.features, torch.ones(1, 1, dtype=torch.float64))


def test_bandit_tie_picks_first_best_action():
    env = BanditEnv(np.array([0.0, 1.0, 1.0]))
    assert int(env.labels[0]) == 1


@pytest.mark.parametrize("rewards,index,shown", [([0.0, 1.2], 1, "1.2"), ([float("nan"), 0.0], 0, "nan")])
def test_bandit_rejects_out_of_range(rewards, index, shown):
    with pytest.raises(RewardRangeError, match=rf"bandit reward at index {index} is {shown}, outside \[-1, 1\]"):
        BanditEnv(rewards)


def test_bandit_rejects_matrix_and_single_action():
    with pytest.raises(ShapeMismatchError, match=r"vector \(K,\), got shape \(2, 2\)"):
        BanditEnv([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(OutputSpaceError, match=r"V=1"):
        BanditEnv([0.5])


# --------------------------------------------------------------------------- ClassificationEnv


def test_default_table_is_plus_one_at_label():
    labels = torch.tensor([2, 0, 1, 2])
    env = ClassificationEnv(np.eye(4), labels, 3)
    expected = -torch.ones(4, 3, dtype=torch.float64)
    expected[torch.arange(4), labels] = 1.0
    torch.testing.assert_close(env.table, expected, atol=0, rtol=0)
    torch.testing.assert_close(env.reward_table(), expected, atol=0, rtol=0)
    assert torch.equal(env.labels, labels)
    assert env.targets.shape == (4, 1)
    assert env.features.dtype == torch.float64


def test_custom_table_is_used():
    table = np.array([[0.5, -0.25, 1.0], [0.0, -1.0, 0.75]])
    env = ClassificationEnv(np.eye(2), [2, 0], 3, reward_table=table)
    torch.testing.assert_close(env.reward_table(), torch.as_tensor(table), atol=0, rtol=0)
    out = env.reward(torch.tensor([1, 0]), torch.tensor([[2], [1]]))
    torch.testing.assert_close(out, torch.tensor([0.75, -0.25], dtype=torch.float64), atol=0, rtol=0)


def test_custom_table_shape_and_range_are_validated():
    with pytest.raises(ShapeMismatchError, match=r"reward table has shape \(2, 2\), expected \(N=2, K=3\)"):
        ClassificationEnv(np.eye(2), [2, 0], 3, reward_table=np.zeros((2, 2)))
    with pytest.raises(ShapeMismatchError, match=r"reward table has shape \(3,\), expected \(N=2, K=3\)"):
        ClassificationEnv(np.eye(2), [2, 0], 3, reward_table=np.zeros(3))
    with pytest.raises(RewardRangeError, match=r"reward table of clf at index \(1, 2\) is 1.5, outside \[-1, 1\]"):
        ClassificationEnv(np.eye(2), [2, 0], 3, reward_table=np.array([[0, 0, 0], [0, 0, 1.5]]), name="clf")


def test_constructor_shape_checks():
    with pytest.raises(ShapeMismatchError, match=r"features must be 2-D \(N, D\), got shape \(3,\)"):
        ClassificationEnv(np.ones(3), [0, 1, 0], 2)
    with pytest.raises(ShapeMismatchError, match=r"labels have shape \(2,\), expected \(N=3,\)"):
        ClassificationEnv(np.eye(3), [0, 1], 2)
    with pytest.raises(ShapeMismatchError, match=r"\[0, V=2\)"):
        ClassificationEnv(np.eye(3), [0, 1, 2], 2)
    with pytest.raises(ShapeMismatchError, match=r"group 'g' mask has shape \(2,\), expected \(N=3,\)"):
        ClassificationEnv(np.eye(3), [0, 1, 0], 2, groups={"g": torch.tensor([True, False])})


@given(
    num_classes=st.integers(2, 8),
    label=st.integers(0, 7),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_expected_reward_is_two_p_minus_one(num_classes, label, p, seed):
    """E_y r = 2p - 1 and STD = 2 sqrt(p(1-p)) for any split of the remaining mass (docs/paper.md §3)."""
    label = label % num_classes
    env = ClassificationEnv(np.ones((1, 1)), [label], num_classes)
    rest = np.random.default_rng(seed).dirichlet(np.ones(num_classes - 1)) * (1.0 - p)
    probs = np.insert(rest, label, p)
    row = env.reward_table()[0].numpy()
    value = float(probs @ row)
    std = float(np.sqrt(probs @ (row - value) ** 2))
    assert value == pytest.approx(2 * p - 1, abs=1e-12)
    assert std == pytest.approx(2 * np.sqrt(p * (1 - p)), abs=1e-6)


def test_subset_keeps_everything_aligned():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((6, 3))
    labels = np.array([0, 1, 2, 3, 1, 0])
    table = rng.uniform(-1, 1, size=(6, 4))
    sets = rng.integers(0, 4, size=(6, 2))
    group = torch.tensor([True, False, True, False, False, True])
    env = ClassificationEnv(features, labels, 4, reward_table=table, label_sets=sets, groups={"g": group}, name="e")
    index = torch.tensor([5, 2, 3])
    sub = env.subset(index)
    assert sub.name == "e" and env.subset(index, name="s").name == "s"
    assert sub.num_inputs == 3
    np.testing.assert_array_equal(sub.features.numpy(), features[[5, 2, 3]])
    np.testing.assert_array_equal(sub.labels.numpy(), labels[[5, 2, 3]])
    np.testing.assert_array_equal(sub.table.numpy(), table[[5, 2, 3]])
    np.testing.assert_array_equal(sub.reward_table().numpy(), table[[5, 2, 3]])
    np.testing.assert_array_equal(sub.label_sets.numpy(), sets[[5, 2, 3]])
    assert torch.equal(sub.groups["g"], torch.tensor([True, True, False]))
    assert list(sub.group_masks()) == ["all", "g"]


# --------------------------------------------------------------------------- orthonormal


@pytest.mark.parametrize("num_inputs,dim", [(5, None), (4, 9), (1, 1)])
def test_orthonormal_features(num_inputs, dim):
    env = orthonormal(num_inputs, 3, dim=dim, seed=1)
    x = env.features
    assert x.shape == (num_inputs, num_inputs if dim is None else dim)
    torch.testing.assert_close(x @ x.T, torch.eye(num_inputs, dtype=torch.float64), atol=1e-12, rtol=0)
    assert env.output_space.vocab_size == 3
    assert int(env.labels.min()) >= 0 and int(env.labels.max()) < 3


def test_orthonormal_rejects_small_dim():
    with pytest.raises(ConfigError, match=r"dim=3 < num_inputs=4"):
        orthonormal(4, 2, dim=3)


def test_orthonormal_deterministic_in_seed():
    a, b, c = orthonormal(6, 4, seed=7), orthonormal(6, 4, seed=7), orthonormal(6, 4, seed=8)
    assert torch.equal(a.features, b.features) and torch.equal(a.labels, b.labels)
    assert not torch.allclose(a.features, c.features)


def test_orthonormal_given_labels():
    env = orthonormal(3, 4, labels=np.array([3, 1, 0]))
    assert torch.equal(env.labels, torch.tensor([3, 1, 0]))


# --------------------------------------------------------------------------- gaussian_clusters


@pytest.mark.parametrize("test_fraction,num_test", [(0.2, 12), (0.0, 0), (0.3, 18), (0.9, 54)])
def test_gaussian_split_sizes(test_fraction, num_test):
    split = gaussian_clusters(num_classes=3, per_class=20, dim=4, test_fraction=test_fraction, seed=0)
    assert split.test.num_inputs == num_test
    assert split.train.num_inputs == 60 - num_test
    assert split.train.features.shape[1] == 4
    # every class keeps its per_class count across both halves
    counts = np.bincount(torch.cat([split.train.labels, split.test.labels]).numpy(), minlength=3)
    np.testing.assert_array_equal(counts, [20, 20, 20])


def test_gaussian_deterministic_in_seed():
    a, b, c = (gaussian_clusters(num_classes=4, per_class=10, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.train.features, b.train.features) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.allclose(a.train.features, c.train.features)


def test_gaussian_clusters_are_separated():
    """With tiny noise every point sits near its class centre: nearest-centroid accuracy is 1."""
    split = gaussian_clusters(num_classes=5, per_class=20, dim=8, noise=0.01, separation=5.0, seed=0)
    x, y = split.train.features, split.train.labels
    centroids = torch.stack([x[y == c].mean(0) for c in range(5)])
    pred = torch.cdist(split.test.features, centroids).argmin(1)
    assert float((pred == split.test.labels).double().mean()) == pytest.approx(1.0)


@pytest.mark.parametrize("test_fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_gaussian_rejects_bad_test_fraction(test_fraction):
    with pytest.raises(ConfigError, match=r"test_fraction=.* is outside \[0, 1\)"):
        gaussian_clusters(num_classes=2, per_class=5, test_fraction=test_fraction)


def test_gaussian_rejects_negative_noise():
    with pytest.raises(ConfigError, match=r"noise=-1.0 and separation=3.0 must be >= 0"):
        gaussian_clusters(noise=-1.0)


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digit_split():
    return digits(test_fraction=0.2, seed=0)


def test_digits_data(digit_split):
    train, test = digit_split.train, digit_split.test
    assert train.num_inputs + test.num_inputs == 1797
    assert test.num_inputs == round(0.2 * 1797) == 359
    assert train.features.shape == (1438, 64)
    features = torch.cat([train.features, test.features])
    assert float(features.min()) == 0.0 and float(features.max()) == 1.0
    labels = torch.cat([train.labels, test.labels])
    assert train.output_space.vocab_size == 10
    np.testing.assert_array_equal(torch.unique(labels).numpy(), np.arange(10))
    # scikit-learn's bundled set has 178-183 images per class
    counts = np.bincount(labels.numpy(), minlength=10)
    assert counts.min() >= 170 and counts.sum() == 1797


def test_digits_split_deterministic(digit_split):
    again = digits(test_fraction=0.2, seed=0)
    assert torch.equal(again.train.features, digit_split.train.features)
    assert torch.equal(again.test.labels, digit_split.test.labels)
    other = digits(test_fraction=0.2, seed=1)
    assert not torch.equal(other.train.labels, digit_split.train.labels)


def test_digits_num_train(digit_split):
    split = digits(test_fraction=0.2, num_train=100, seed=0)
    assert split.train.num_inputs == 100
    assert split.test.num_inputs == 359
    # the first num_train training images of the same split
    assert torch.equal(split.train.features, digit_split.train.features[:100])
    assert torch.equal(split.train.labels, digit_split.train.labels[:100])


@pytest.mark.parametrize("num_train", [0, 1439, -5])
def test_digits_rejects_bad_num_train(num_train):
    with pytest.raises(ConfigError, match=rf"num_train={num_train} outside \[1, 1438\]"):
        digits(test_fraction=0.2, num_train=num_train, seed=0)


# --------------------------------------------------------------------------- label sets


@pytest.mark.parametrize("num_classes,k", [(10, 5), (4, 1), (6, 6), (3, 2)])
def test_pretraining_label_sets(num_classes, k):
    sets = pretraining_label_sets(num_classes, k, seed=2)
    assert sets.shape == (num_classes, k) and sets.dtype == torch.long
    assert torch.equal(sets[:, 0], torch.arange(num_classes))
    for row in sets.tolist():
        assert len(set(row)) == k
        assert all(0 <= label < num_classes for label in row)
    assert torch.equal(sets, pretraining_label_sets(num_classes, k, seed=2))


def test_pretraining_label_sets_vary_with_seed():
    draws = {tuple(pretraining_label_sets(10, 5, seed=s).flatten().tolist()) for s in range(5)}
    assert len(draws) == 5


@pytest.mark.parametrize("k", [0, 11, -1])
def test_pretraining_label_sets_rejects_k(k):
    with pytest.raises(ConfigError, match=rf"k={k} outside \[1, num_classes=10\]"):
        pretraining_label_sets(10, k)


def test_with_label_sets_assigns_sets_of_label():
    env = orthonormal(20, 10, seed=0)
    out = with_label_sets(env, 4, seed=3)
    sets = pretraining_label_sets(10, 4, seed=3)
    assert torch.equal(out.label_sets, sets[env.labels])
    assert torch.equal(out.label_sets[:, 0], env.labels)
    assert torch.equal(out.labels, env.labels) and torch.equal(out.features, env.features)
    torch.testing.assert_close(out.table, env.table, atol=0, rtol=0)


# --------------------------------------------------------------------------- modify_labels


@pytest.fixture(scope="module")
def base_env() -> ClassificationEnv:
    return with_label_sets(orthonormal(50, 10, seed=0), 5, seed=0)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.33, 1.0, 0.0])
def test_modify_labels(base_env, fraction):
    env = modify_labels(base_env, fraction=fraction, seed=4)
    modified, unmodified = env.groups["modified"], env.groups["unmodified"]
    assert int(modified.sum()) == round(fraction * 50)
    # partition
    assert torch.equal(modified ^ unmodified, torch.ones(50, dtype=torch.bool))
    assert not bool((modified & unmodified).any())
    # new labels outside the input's label set; unmodified labels unchanged
    for i in torch.nonzero(modified).flatten().tolist():
        assert int(env.labels[i]) not in base_env.label_sets[i].tolist()
    assert torch.equal(env.labels[unmodified], base_env.labels[unmodified])
    assert torch.equal(env.labels[modified] != base_env.labels[modified], torch.ones(int(modified.sum()), dtype=bool))
    # rewards: +1 at the new label, -1 elsewhere
    expected = -torch.ones(50, 10, dtype=torch.float64)
    expected[torch.arange(50), env.labels] = 1.0
    torch.testing.assert_close(env.reward_table(), expected, atol=0, rtol=0)
    assert torch.equal(env.label_sets, base_env.label_sets)
    assert env.name == "orthonormal-modified"


def test_modify_labels_high_initial_reward(base_env):
    env = modify_labels(base_env, fraction=0.2, seed=1, wrong_reward=0.5)
    table = env.reward_table()
    modified = env.groups["modified"]
    at_label = table[torch.arange(50), env.labels]
    torch.testing.assert_close(at_label, torch.ones(50, dtype=torch.float64), atol=0, rtol=0)
    wrong = torch.ones(50, 10, dtype=torch.bool)
    wrong[torch.arange(50), env.labels] = False
    assert torch.all(table[modified[:, None] & wrong] == 0.5)
    assert torch.all(table[~modified[:, None] & wrong] == -1.0)
    assert int((table == 0.5).sum()) == 10 * 9  # 10 modified inputs, 9 wrong answers each


def test_modify_labels_deterministic(base_env):
    a, b = modify_labels(base_env, 0.3, seed=5), modify_labels(base_env, 0.3, seed=5)
    c = modify_labels(base_env, 0.3, seed=6)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.groups["modified"], b.groups["modified"])
    assert not (torch.equal(a.labels, c.labels) and torch.equal(a.groups["modified"], c.groups["modified"]))


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_modify_labels_rejects_fraction(base_env, fraction):
    with pytest.raises(ConfigError, match=rf"fraction={fraction} is outside \[0, 1\]"):
        modify_labels(base_env, fraction=fraction)


def test_modify_labels_needs_label_sets():
    with pytest.raises(ConfigError, match=r"needs label sets.*with_label_sets"):
        modify_labels(orthonormal(10, 4), fraction=0.1)


def test_modify_labels_rejects_full_label_sets():
    env = with_label_sets(orthonormal(10, 4), 4)
    with pytest.raises(ConfigError, match=r"k=4 = num_classes.*k < num_classes"):
        modify_labels(env, fraction=0.5)


def test_modify_labels_rejects_wrong_reward(base_env):
    with pytest.raises(RewardRangeError, match=r"wrong_reward at index 0 is 2.0, outside \[-1, 1\]"):
        modify_labels(base_env, wrong_reward=2.0)


def test_with_rewards_swaps_only_the_reward_table():
    env = modify_labels(with_label_sets(gaussian_clusters(num_classes=4, per_class=5, seed=0).train, 2), 0.5)
    table = torch.linspace(-1, 1, env.num_inputs * 4, dtype=torch.float64).reshape(env.num_inputs, 4)
    swapped = env.with_rewards(table)
    assert torch.equal(swapped.reward_table(), table)
    assert torch.equal(swapped.features, env.features) and torch.equal(swapped.targets, env.targets)
    assert torch.equal(swapped.label_sets, env.label_sets)
    assert torch.equal(swapped.groups["modified"], env.groups["modified"])
    with pytest.raises(RewardRangeError, match=r"outside \[-1, 1\]"):
        env.with_rewards(table * 2)

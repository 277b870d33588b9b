"""Tests of the environments behind ``heuristics`` and ``sft_budget``: wider output spaces, class families
sharing a direction, and the family relabelling rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rftgrad.envs import (
    family_label,
    gaussian_clusters,
    modify_labels,
    pretraining_label_sets,
    relabel_family,
    with_label_sets,
    with_num_outputs,
)
from rftgrad.errors import ConfigError


def test_with_num_outputs_keeps_inputs_and_widens_rewards():
    split = gaussian_clusters(num_classes=4, per_class=5, dim=3, seed=0)
    wide = with_num_outputs(split.train, 50)
    assert wide.output_space.vocab_size == 50
    assert torch.equal(wide.labels, split.train.labels) and torch.equal(wide.features, split.train.features)
    table = wide.reward_table()  # (N, 50): +1 at the label, -1 on every other output, the new ones included
    assert torch.equal(table.argmax(-1), wide.labels)
    assert (table == 1).sum().item() == wide.num_inputs and (table == -1).sum().item() == wide.num_inputs * 49
    with pytest.raises(ConfigError, match="num_outputs=3"):
        with_num_outputs(split.train, 3)


def test_modify_labels_used_labels_only_draws_from_the_sets():
    split = gaussian_clusters(num_classes=10, per_class=10, dim=4, seed=1)
    env = with_label_sets(with_num_outputs(split.train, 1000), k=3, seed=1)
    used = set(np.unique(env.label_sets.numpy()))
    assert len(used) <= 30  # 10 classes x k = 3: most of the 1,000 outputs no input asks for
    modified = modify_labels(env, 0.5, seed=2, used_labels_only=True)
    new = modified.labels[modified.groups["modified"]].tolist()
    assert set(new) <= used
    for n in torch.nonzero(modified.groups["modified"])[:, 0].tolist():
        assert modified.labels[n].item() not in env.label_sets[n].tolist()
    anywhere = modify_labels(env, 0.5, seed=2)  # without the restriction the new labels are mostly unused outputs
    assert not set(anywhere.labels[anywhere.groups["modified"]].tolist()) <= used


def test_family_centres_share_a_direction():
    """The family's class means are closer to each other than to other classes (shared component w u)."""
    split = gaussian_clusters(num_classes=8, per_class=200, dim=64, noise=0.1, seed=0, family_size=3, family_weight=0.8)
    means = np.stack([split.train.features[split.train.labels == c].mean(0).numpy() for c in range(8)])
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    cosine = unit @ unit.T
    within = cosine[:3, :3][~np.eye(3, dtype=bool)]
    across = cosine[3:, 3:][~np.eye(5, dtype=bool)]
    # w² = 0.64 of each family centre's squared norm is the shared part: cosines about 0.64 inside the family;
    # independent random centres in 64 dimensions have |cosine| about 1/sqrt(64) = 0.125 (0.45 is 3.6 of those)
    assert within.min() > 0.45 and np.abs(across).max() < 0.45
    plain = gaussian_clusters(num_classes=8, per_class=200, dim=64, noise=0.1, seed=0)
    assert np.array_equal(plain.train.labels.numpy(), split.train.labels.numpy())
    with pytest.raises(ConfigError, match="family_size"):
        gaussian_clusters(num_classes=4, family_size=5)


def test_family_label_is_outside_the_family_sets_and_used_elsewhere():
    sets = pretraining_label_sets(10, 3, seed=0)  # (10, 3)
    label = family_label(sets, range(3), seed=0)
    assert all(label not in sets[c].tolist() for c in range(3))
    assert any(label in sets[c].tolist() for c in range(3, 10))
    with pytest.raises(ConfigError, match="family"):
        family_label(pretraining_label_sets(4, 4, seed=0), [0], seed=0)  # every label is in every set


def test_relabel_family_applies_one_rule_to_every_family_input():
    split = gaussian_clusters(num_classes=5, per_class=6, dim=3, seed=0)
    env = relabel_family(with_label_sets(split.train, 2, seed=0), [0, 2], new_label=4, wrong_reward=0.5)
    family = torch.isin(split.train.labels, torch.tensor([0, 2]))
    assert torch.equal(env.groups["modified"], family) and torch.equal(env.groups["unmodified"], ~family)
    assert (env.labels[family] == 4).all() and torch.equal(env.labels[~family], split.train.labels[~family])
    table = env.reward_table()
    assert (table[family].max(-1).values == 1).all() and (table[family].min(-1).values == 0.5).all()
    assert (table[~family].min(-1).values == -1).all()
    with pytest.raises(ConfigError, match="new_label=7"):
        relabel_family(split.train, [0], new_label=7)

"""Single-token environments (L = 1): bandits and labelled classification.

* :class:`BanditEnv`: one input, ``K`` actions, a given reward vector.
* :class:`ClassificationEnv`: ``N`` inputs with features and labels; reward ``+1`` for
  the label and ``-1`` otherwise (expected reward ``2p - 1``, STD ``2 sqrt(p(1-p))`` with
  ``p`` the probability of the label; docs/paper.md §3), or any per-input table.

Constructors: :func:`orthonormal` (Theorem 2's setting), :func:`gaussian_clusters`
(synthetic), :func:`digits` (scikit-learn's bundled 8x8 digits, no download), and the
label sets / label modification of the controlled experiments (docs/paper.md §4,
Razin et al. 2024, Section 4.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rftgrad.envs.base import OutputSpace, RewardEnv, index_tensor, validate_rewards
from rftgrad.errors import ConfigError, OutputSpaceError, ShapeMismatchError
from rftgrad.runtime import is_count


def correct_label_rewards(labels: torch.Tensor, num_classes: int, wrong: float = -1.0) -> torch.Tensor:
    """Reward table ``(N, K)``: ``+1`` at each input's label, ``wrong`` elsewhere."""
    table = torch.full((labels.shape[0], num_classes), float(wrong), dtype=torch.float64)
    table[torch.arange(labels.shape[0]), labels] = 1.0
    return table


class ClassificationEnv(RewardEnv):
    """Labelled inputs, one output token (``L = 1``, ``V = num_classes``).

    Args:
        * ``features``: ``(N, D)`` input features (``N = 0`` only for an empty split, e.g. ``test_fraction=0``;
          the constructors refuse zero inputs).
        * ``labels``: ``(N,)`` correct labels in ``[0, num_classes)`` (the SFT targets): integers, or floats
          that are whole numbers (``1.7`` is refused, not truncated).
        * ``num_classes``: ``K``, the number of output tokens.
        * ``reward_table``: optional ``(N, K)`` rewards; default ``+1`` for the label, ``-1``
          otherwise. Validated to lie in ``[-1, 1]``.
        * ``label_sets``: optional ``(N, k)`` pretraining label set of each input.
        * ``groups``: optional name -> ``(N,)`` bool mask.
        * ``name``: shown in tables and errors.
    """

    def __init__(
        self,
        features: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        num_classes: int,
        reward_table: torch.Tensor | np.ndarray | None = None,
        label_sets: torch.Tensor | np.ndarray | None = None,
        groups: dict[str, torch.Tensor] | None = None,
        name: str = "classification",
    ) -> None:
        super().__init__()
        self.name = name
        self.output_space = OutputSpace(int(num_classes), 1)
        self.features = torch.as_tensor(features, dtype=torch.float64)
        labels = index_tensor(labels, f"labels of {name}")
        if self.features.ndim != 2:
            raise ShapeMismatchError(f"features must be 2-D (N, D), got shape {tuple(self.features.shape)}")
        if labels.shape != (self.features.shape[0],):
            raise ShapeMismatchError(f"labels have shape {tuple(labels.shape)}, expected (N={self.features.shape[0]},)")
        self.targets = labels[:, None]  # (N, 1)
        self.output_space.check_outputs(self.targets)
        if reward_table is None:
            table = correct_label_rewards(labels, self.output_space.vocab_size)
        else:
            table = validate_rewards(reward_table, f"reward table of {name}")
            if table.shape != (self.num_inputs, self.output_space.vocab_size):
                raise ShapeMismatchError(
                    f"reward table has shape {tuple(table.shape)}, expected "
                    f"(N={self.num_inputs}, K={self.output_space.vocab_size})"
                )
        self.table = table  # (N, K)
        self.label_sets = None if label_sets is None else index_tensor(label_sets, f"label sets of {name}")
        self._set_groups(groups)

    @property
    def labels(self) -> torch.Tensor:
        """``(N,)`` correct labels (a copy of ``targets[:, 0]``)."""
        return self.targets[:, 0].clone()

    def _reward(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return self.table[input_ids, outputs[:, 0]]

    def with_rewards(self, rewards: torch.Tensor | np.ndarray) -> ClassificationEnv:
        """The same inputs, labels, label sets and groups with the reward table ``rewards`` ``(N, K)``."""
        return ClassificationEnv(
            self.features,
            self.labels,
            self.output_space.vocab_size,
            reward_table=rewards,
            label_sets=self.label_sets,
            groups=self.groups,
            name=self.name,
        )

    def subset(self, index: torch.Tensor | np.ndarray, name: str | None = None) -> ClassificationEnv:
        """The environment restricted to inputs ``index`` (tables, sets and groups follow)."""
        index = torch.as_tensor(index).long()
        return ClassificationEnv(
            self.features[index],
            self.labels[index],
            self.output_space.vocab_size,
            reward_table=self.table[index],
            label_sets=None if self.label_sets is None else self.label_sets[index],
            groups={key: mask[index] for key, mask in self.groups.items()},
            name=name or self.name,
        )


class BanditEnv(ClassificationEnv):
    """One input (feature ``[1.0]``), ``K >= 2`` actions, reward vector ``rewards`` in [-1, 1].

    The target (for SFT) is the best action.
    """

    def __init__(self, rewards: torch.Tensor | np.ndarray | list[float], name: str = "bandit") -> None:
        table = validate_rewards(rewards, "bandit reward")
        if table.ndim != 1:
            raise ShapeMismatchError(f"bandit rewards must be a vector (K,), got shape {tuple(table.shape)}")
        if table.shape[0] < 2:
            raise OutputSpaceError(
                f"a bandit needs K >= 2 actions, got {table.shape[0]} reward(s) (V={table.shape[0]}); "
                "give one reward per action, at least 2"
            )
        super().__init__(torch.ones(1, 1), table.argmax()[None], table.shape[0], reward_table=table[None], name=name)


@dataclass(frozen=True)
class DataSplit:
    """A train environment and a test environment drawn from the same data."""

    train: ClassificationEnv
    test: ClassificationEnv


def _check_fraction(value: float, what: str, *, open_right: bool = False) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0) or (open_right and value == 1.0):
        upper = "1)" if open_right else "1]"
        raise ConfigError(f"{what}={value} is outside [0, {upper}; give a fraction in that range")
    return value


def _split(
    features: np.ndarray, labels: np.ndarray, num_classes: int, test_fraction: float, seed: int, name: str
) -> DataSplit:
    """Seeded random train/test split into two :class:`ClassificationEnv`."""
    _check_fraction(test_fraction, "test_fraction", open_right=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    num_test = int(round(test_fraction * len(labels)))
    test, train = order[:num_test], order[num_test:]
    return DataSplit(
        ClassificationEnv(features[train], labels[train], num_classes, name=f"{name}-train"),
        ClassificationEnv(features[test], labels[test], num_classes, name=f"{name}-test"),
    )


def orthonormal(
    num_inputs: int, num_classes: int, dim: int | None = None, seed: int = 0, labels: np.ndarray | None = None
) -> ClassificationEnv:
    """``N`` orthonormal inputs in ``R^dim`` (Theorem 2's setting), random labels.

    Features are the first ``N`` rows of a Haar-random orthogonal ``dim x dim`` matrix
    (``dim`` defaults to ``N``), so ``x_i · x_j = δ_ij`` and, for a linear policy, each
    input's logits evolve on their own (docs/paper.md §3). ``num_inputs >= 1``, ``seed >= 0``.
    """
    if not is_count(num_inputs):
        raise ConfigError(f"num_inputs={num_inputs!r} is invalid: give at least 1 input")
    dim = num_inputs if dim is None else dim
    if dim < num_inputs:
        raise ConfigError(f"dim={dim} < num_inputs={num_inputs}: at most dim orthonormal vectors exist; raise dim")
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))  # Haar measure
    if labels is None:
        labels = rng.integers(0, num_classes, size=num_inputs)
    return ClassificationEnv(q[:num_inputs], labels, num_classes, name="orthonormal")


def gaussian_clusters(
    num_classes: int = 10,
    per_class: int = 50,
    dim: int = 16,
    noise: float = 1.0,
    separation: float = 3.0,
    test_fraction: float = 0.2,
    seed: int = 0,
    family_size: int = 0,
    family_weight: float = 0.8,
) -> DataSplit:
    """Synthetic classification: class ``c`` is ``N(μ_c, noise² I)`` with random centres
    ``μ_c ~ N(0, (separation²/dim) I)`` (so ``||μ_c|| ≈ separation``).

    A *family* of classes shares structure: the centres of classes ``0..family_size-1`` are
    ``sqrt(1 - w²) μ_c + w u`` with one common random direction ``u`` (``||u|| ≈ separation``,
    ``w = family_weight``), so what a model learns along ``u`` from one family member
    transfers to the others (the shared structure of language that lets a little SFT
    generalise, docs/paper.md §6).
    """
    for what, value in (("num_classes", num_classes), ("per_class", per_class), ("dim", dim)):
        if not is_count(value):
            raise ConfigError(f"{what}={value!r} is invalid: give an integer >= 1")
    if noise < 0 or separation < 0:
        raise ConfigError(f"noise={noise} and separation={separation} must be >= 0")
    if not 0 <= family_size <= num_classes or not 0.0 <= family_weight <= 1.0:
        raise ConfigError(
            f"family_size={family_size} must lie in [0, num_classes={num_classes}] and "
            f"family_weight={family_weight} in [0, 1]"
        )
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_classes, dim)) * separation / np.sqrt(dim)
    if family_size:
        shared = rng.standard_normal(dim) * separation / np.sqrt(dim)  # u
        centres[:family_size] = np.sqrt(1 - family_weight**2) * centres[:family_size] + family_weight * shared
    labels = np.repeat(np.arange(num_classes), per_class)
    features = centres[labels] + noise * rng.standard_normal((labels.size, dim))
    return _split(features, labels, num_classes, test_fraction, seed, "gaussian")


def digits(test_fraction: float = 0.2, num_train: int | None = None, seed: int = 0) -> DataSplit:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; no download).

    Pixels are scaled to [0, 1] (64 features). The split is seeded; ``num_train`` keeps
    only the first ``num_train`` training images (the paper used 1,000 MNIST images).
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    split = _split(data.data / 16.0, data.target, 10, test_fraction, seed, "digits")
    if num_train is not None:
        if not 1 <= num_train <= split.train.num_inputs:
            raise ConfigError(
                f"num_train={num_train} outside [1, {split.train.num_inputs}] for test_fraction={test_fraction}"
            )
        split = DataSplit(split.train.subset(torch.arange(num_train)), split.test)
    return split


def pretraining_label_sets(num_classes: int, k: int, seed: int = 0) -> torch.Tensor:
    """Label set of each class for pretraining (docs/paper.md §4, step 1).

    Class ``c`` gets ``{c}`` plus ``k - 1`` distinct other labels drawn at random.
    Returns ``(num_classes, k)`` long, row ``c`` starting with ``c``.
    """
    if not 1 <= k <= num_classes:
        raise ConfigError(f"label-set size k={k} outside [1, num_classes={num_classes}]")
    rng = np.random.default_rng(seed)
    sets = []
    for c in range(num_classes):
        others = np.delete(np.arange(num_classes), c)
        sets.append([c, *rng.choice(others, size=k - 1, replace=False)])
    return torch.as_tensor(np.array(sets), dtype=torch.long)


def with_label_sets(env: ClassificationEnv, k: int, seed: int = 0) -> ClassificationEnv:
    """``env`` with each input's pretraining label set (the set of its label's class)."""
    sets = pretraining_label_sets(env.output_space.vocab_size, k, seed)
    return ClassificationEnv(
        env.features,
        env.labels,
        env.output_space.vocab_size,
        reward_table=env.table,
        label_sets=sets[env.labels],
        groups=env.groups,
        name=env.name,
    )


def with_num_outputs(env: ClassificationEnv, num_outputs: int) -> ClassificationEnv:
    """The same inputs and labels with ``num_outputs`` output tokens (reward +1 for the label, -1 else).

    Outputs past the labels in use are answers no input asks for, like most tokens of a
    large vocabulary: a policy spreads probability over them (docs/paper.md §6, how the
    heuristics behave as the output space grows). Label sets and groups are dropped; add
    them after widening.
    """
    if num_outputs < env.output_space.vocab_size:
        raise ConfigError(
            f"num_outputs={num_outputs} is below the {env.output_space.vocab_size} outputs {env.name} has; "
            "give at least that many"
        )
    return ClassificationEnv(env.features, env.labels, num_outputs, name=env.name)


def modify_labels(
    env: ClassificationEnv,
    fraction: float = 0.1,
    seed: int = 0,
    wrong_reward: float = -1.0,
    used_labels_only: bool = False,
) -> ClassificationEnv:
    """Relabel a random ``fraction`` of inputs outside their label set (docs/paper.md §4, step 2).

    Each chosen input gets a label drawn uniformly from the labels *not* in its
    pretraining set, so a model pretrained on the sets starts with probability about 0
    on it: expected reward about -1 and STD about 0. Rewards: ``+1`` for the (new)
    label, ``-1`` otherwise, except that a wrong answer on a modified input earns
    ``wrong_reward`` (0.5 gives the paper's "high initial reward" variant).
    Groups ``modified`` / ``unmodified`` mark the two kinds of input.

    ``used_labels_only`` draws the new label among the labels some input's set contains
    (so other inputs train that output, as with a token of a shared vocabulary), not among
    outputs nothing else uses.
    """
    fraction = _check_fraction(fraction, "label-modification fraction")
    validate_rewards(torch.tensor([wrong_reward]), "wrong_reward")
    if env.label_sets is None:
        raise ConfigError("modify_labels needs label sets; call with_label_sets(env, k) first")
    num_classes = env.output_space.vocab_size
    if env.label_sets.shape[1] >= num_classes and fraction > 0:
        raise ConfigError(
            f"label sets have k={env.label_sets.shape[1]} = num_classes labels, so no label lies "
            "outside them; use k < num_classes"
        )
    rng = np.random.default_rng(seed)
    num_modified = int(round(fraction * env.num_inputs))
    chosen = rng.choice(env.num_inputs, size=num_modified, replace=False)
    labels = env.labels.clone()
    candidates = np.unique(env.label_sets.numpy()) if used_labels_only else np.arange(num_classes)
    for i in chosen:
        outside = np.setdiff1d(candidates, env.label_sets[i].numpy())
        if outside.size == 0:
            raise ConfigError(f"input {i}: every label in use is in its set; use a smaller label-set size k")
        labels[i] = int(rng.choice(outside))
    modified = torch.zeros(env.num_inputs, dtype=torch.bool)
    modified[torch.as_tensor(chosen, dtype=torch.long)] = True
    return _relabelled(env, labels, modified, wrong_reward)


def _relabelled(
    env: ClassificationEnv, labels: torch.Tensor, modified: torch.Tensor, wrong_reward: float
) -> ClassificationEnv:
    """``env`` with new ``labels`` ``(N,)``; a wrong answer on a ``modified`` ``(N,)`` input earns ``wrong_reward``."""
    table = correct_label_rewards(labels, env.output_space.vocab_size)
    table[modified[:, None] & (table != 1.0)] = float(wrong_reward)  # wrong answers on modified inputs
    return ClassificationEnv(
        env.features,
        labels,
        env.output_space.vocab_size,
        reward_table=table,
        label_sets=env.label_sets,
        groups={"modified": modified, "unmodified": ~modified},
        name=f"{env.name}-modified",
    )


def family_label(label_sets: torch.Tensor, family: Sequence[int], seed: int = 0) -> int:
    """A label outside the pretraining sets ``(C, k)`` of every class in ``family`` that other classes' sets use.

    Other inputs train that output (its head gets large gradients), as with a token of a
    shared vocabulary; the family's inputs give it probability about 0.
    """
    family_sets = label_sets[list(family)].numpy()
    others = np.delete(label_sets.numpy(), list(family), axis=0)
    candidates = np.setdiff1d(np.unique(others), family_sets)
    if candidates.size == 0:
        raise ConfigError(
            f"every label the other classes use is in a family class's set (family {list(family)}); "
            "use a smaller family or label-set size"
        )
    return int(np.random.default_rng(seed).choice(candidates))


def relabel_family(
    env: ClassificationEnv, family: Sequence[int], new_label: int, wrong_reward: float = -1.0
) -> ClassificationEnv:
    """A consistent relabelling rule: every input of a class in ``family`` gets label ``new_label``.

    Unlike :func:`modify_labels` (random inputs, each its own new label), the rule is shared
    by a family of inputs, so learning it on a few inputs transfers to the rest (docs/paper.md
    section 6: a short SFT phase on 1% of the inputs). Groups ``modified`` (the family) and
    ``unmodified``.
    """
    num_outputs = env.output_space.vocab_size
    if not 0 <= new_label < num_outputs:
        raise ConfigError(f"new_label={new_label} outside [0, {num_outputs})")
    modified = torch.isin(env.labels, torch.as_tensor(list(family), dtype=torch.long))
    labels = torch.where(modified, torch.tensor(new_label), env.labels)
    return _relabelled(env, labels, modified, wrong_reward)

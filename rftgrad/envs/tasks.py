"""Tasks several experiments train on, built by name from plain arguments.

* :func:`build_env`: an environment by name (``--env``; the ``compare`` experiment and ``rftgrad exact``).
* :func:`classification_task` and :func:`sequence_task`: the controlled tasks of paper Section 4.2
  (docs/paper.md §4): each training input gets a set of k outputs to be pretrained toward, and a
  ``modify_fraction`` of them a new target outside their set (probability about 0 after pretraining:
  expected reward about -1 and STD about 0), groups ``modified`` / ``unmodified``.
* :func:`family_task`: the shared-rule task of paper Section 5.2 (docs/paper.md §6): the inputs of
  ``family_size`` classes that share a direction are all relabelled to one label ``ℓ*`` outside
  their sets.

Each returns a :class:`Task`: the training environment, the test environment (or None) and the
outputs each training input is pretrained toward. The builders are deterministic in their seed.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from rftgrad.envs.base import OutputSpace, RewardEnv
from rftgrad.envs.classification import (
    BanditEnv,
    digits,
    family_label,
    gaussian_clusters,
    modify_labels,
    orthonormal,
    pretraining_label_sets,
    relabel_family,
    with_label_sets,
    with_num_outputs,
)
from rftgrad.envs.sequence import SequenceEnv, random_sequence_env
from rftgrad.errors import ConfigError
from rftgrad.registry import ENVIRONMENTS
from rftgrad.runtime import check_seed, is_count

#: prompt length and prompt vocabulary of :func:`sequence_task`.
PROMPT_LENGTH, PROMPT_VOCAB = 4, 16
#: the classification data of :func:`classification_task`.
CLASSIFICATION_DATA = ("digits", "gaussian")


#: environment name -> the :func:`build_env` arguments it reads (the others it ignores).
ENV_SETTINGS: dict[str, tuple[str, ...]] = {
    "bandit": ("bandit_rewards",),
    "orthonormal": ("num_inputs", "vocab_size", "seed"),
    "gaussian": ("num_inputs", "vocab_size", "seed"),
    "digits": ("num_inputs", "seed"),
    "sequence": ("num_inputs", "vocab_size", "length", "reward", "seed"),
}


def check_env_settings(name: str, given: Iterable[str]) -> None:
    """Refuse settings the environment ``name`` ignores (what :func:`build_env` would drop silently).

    ``given`` names the :func:`build_env` arguments a caller set explicitly (e.g. the command-line
    options given, translated to argument names); any not in ``ENV_SETTINGS[name]`` raises
    :class:`ConfigError` naming it and the settings that do apply.
    """
    if name not in ENV_SETTINGS:
        raise ConfigError(f"unknown environment {name!r}; choose one of {', '.join(ENVIRONMENTS)}")
    ignored = [key for key in given if key not in ENV_SETTINGS[name]]
    if ignored:
        names = ", ".join(ignored)
        raise ConfigError(
            f"{names} {'does' if len(ignored) == 1 else 'do'} not apply to the {name} environment, which reads "
            f"only {', '.join(ENV_SETTINGS[name])}; drop {names} or choose an environment that reads it"
        )


@dataclasses.dataclass
class Task:
    """What an experiment trains on: environments and each training input's pretraining set."""

    train: RewardEnv  # training inputs (groups modified / unmodified)
    test: RewardEnv | None  # untouched test inputs (None where there is no split)
    pretrain_outputs: torch.Tensor  # (N, k, L) the outputs each training input is pretrained toward


def build_env(
    name: str,
    num_inputs: int,
    vocab_size: int,
    length: int = 1,
    reward: str = "exact_match",
    seed: int = 0,
    bandit_rewards: Sequence[float] = (1.0, -1.0, -1.0, 0.5),
) -> tuple[RewardEnv, RewardEnv | None]:
    """``(train, test)`` environments named ``name`` (``test`` is None where there is no split).

    ``num_inputs >= 1`` is the number of inputs (orthonormal), prompts (sequence), training images
    (digits, at most 1,437) or points per class (gaussian); ``vocab_size`` the classes or output
    vocabulary; ``seed >= 0``. Each environment reads only the arguments ``ENV_SETTINGS[name]`` lists
    (the bandit: its rewards; digits: its 10 classes whatever ``vocab_size``); callers that must not
    drop a setting silently check it with :func:`check_env_settings`.
    """
    if name not in ENV_SETTINGS:
        raise ConfigError(f"unknown environment {name!r}; choose one of {', '.join(ENVIRONMENTS)}")
    check_seed(seed)
    if name != "bandit" and not is_count(num_inputs):
        raise ConfigError(f"num_inputs={num_inputs!r} is invalid: give at least 1 input")
    if name == "bandit":
        return BanditEnv(list(bandit_rewards)), None
    if name == "orthonormal":
        return orthonormal(num_inputs, vocab_size, seed=seed), None
    if name == "gaussian":
        split = gaussian_clusters(num_classes=vocab_size, per_class=num_inputs, seed=seed)
        return split.train, split.test
    if name == "digits":
        split = digits(num_train=num_inputs, seed=seed)
        return split.train, split.test
    if name == "sequence":
        env = random_sequence_env(
            num_prompts=num_inputs, vocab_size=vocab_size, length=length, reward=reward, seed=seed
        )
        return env, None
    raise ConfigError(f"unknown environment {name!r}; choose one of {', '.join(ENVIRONMENTS)}")


def classification_task(
    data: str,
    *,
    num_train: int,
    cluster_dim: int,
    cluster_noise: float,
    num_outputs: int,
    label_set_size: int,
    modify_fraction: float,
    wrong_reward: float,
    data_seed: int,
) -> Task:
    """Digits or Gaussian clusters with k-label sets and a modified share of the training labels.

    Args:
        * ``data``: ``"digits"`` (scikit-learn's 1,437 training images, 360 test) or ``"gaussian"``.
        * ``num_train``: digits: training images kept (0: all); gaussian: points per class (0: 40).
        * ``cluster_dim``, ``cluster_noise``: gaussian feature dimension and within-cluster noise.
        * ``num_outputs``: output tokens (0: one per class); above the 10 classes the output space grows
          by answers no input asks for, and a modified input's new label is drawn among the
          labels the sets use.
        * ``label_set_size``: k, labels per pretraining set (its class and k-1 others).
        * ``modify_fraction``: share of training inputs whose target moves outside their set.
        * ``wrong_reward``: reward of a wrong answer on a modified input (-1, or 0.5 for high initial reward).
        * ``data_seed``: seed of the data, the sets and the modification.
    """
    if data not in CLASSIFICATION_DATA:
        raise ConfigError(f"unknown classification data {data!r}; choose one of {', '.join(CLASSIFICATION_DATA)}")
    if data == "digits":
        split = digits(num_train=num_train or None, seed=data_seed)
    else:
        split = gaussian_clusters(
            num_classes=10, per_class=num_train or 40, dim=cluster_dim, noise=cluster_noise, seed=data_seed
        )
    train, test = split.train, split.test
    if num_outputs:
        train, test = with_num_outputs(train, num_outputs), with_num_outputs(test, num_outputs)
    with_sets = with_label_sets(train, label_set_size, seed=data_seed)
    train_env = modify_labels(with_sets, modify_fraction, data_seed, wrong_reward, used_labels_only=bool(num_outputs))
    assert with_sets.label_sets is not None
    return Task(train_env, test, with_sets.label_sets[:, :, None])


def sequence_task(
    *,
    num_prompts: int,
    num_prompt_groups: int,
    vocab_size: int,
    length: int,
    reward: str,
    label_set_size: int,
    modify_fraction: float,
    data_seed: int,
) -> Task:
    """Prompts in groups; group g owns k distinct outputs; a ``modify_fraction`` of the prompts get a
    target outside their group's set.

    Prompts are ``PROMPT_LENGTH`` tokens over ``PROMPT_VOCAB``; prompt ``n`` is in group
    ``n mod num_prompt_groups``; its target is one of its group's ``k = label_set_size`` outputs
    (of the ``V^L`` with ``V = vocab_size``, ``L = length``), or, if modified, one outside them.
    """
    rng = np.random.default_rng(data_seed)
    vocab, k = vocab_size, label_set_size
    if k >= vocab**length:
        raise ConfigError(f"label_set_size k={k} must be below V^L={vocab**length}")
    prompts = rng.integers(0, PROMPT_VOCAB, size=(num_prompts, PROMPT_LENGTH))
    group = np.arange(num_prompts) % num_prompt_groups
    group_sets = np.stack([rng.choice(vocab**length, size=k, replace=False) for _ in range(num_prompt_groups)])
    target_index = group_sets[group, rng.integers(0, k, size=num_prompts)]  # one of its group's outputs
    modified = np.zeros(num_prompts, dtype=bool)
    num_modified = round(modify_fraction * num_prompts)
    modified[rng.choice(num_prompts, size=num_modified, replace=False)] = True
    for n in np.flatnonzero(modified):
        outside = np.setdiff1d(np.arange(vocab**length), group_sets[group[n]])
        target_index[n] = rng.choice(outside)
    outputs = OutputSpace(vocab, length).enumerate()  # (V^L, L): output index -> tokens
    masks = {"modified": torch.as_tensor(modified), "unmodified": torch.as_tensor(~modified)}
    targets = outputs[torch.as_tensor(target_index)]  # (N, L)
    env = SequenceEnv(prompts, targets, vocab, reward, PROMPT_VOCAB, groups=masks, name="sequence-modified")
    return Task(env, None, outputs[torch.as_tensor(group_sets[group])])  # (N, k, L)


def family_task(
    *,
    num_train: int,
    cluster_dim: int,
    cluster_noise: float,
    family_size: int,
    family_weight: float,
    label_set_size: int,
    wrong_reward: float,
    data_seed: int,
) -> Task:
    """Gaussian clusters whose first ``family_size`` classes share a direction (weight ``family_weight``);
    every input of those classes, training and test, is relabelled to one ``ℓ*`` outside the family's
    pretraining sets but inside other classes' (:func:`~rftgrad.envs.classification.family_label`)."""
    split = gaussian_clusters(
        num_classes=10,
        per_class=num_train,
        dim=cluster_dim,
        noise=cluster_noise,
        seed=data_seed,
        family_size=family_size,
        family_weight=family_weight,
    )
    family = range(family_size)
    class_sets = pretraining_label_sets(10, label_set_size, seed=data_seed)  # (10, k)
    new_label = family_label(class_sets, family, seed=data_seed)
    with_sets = with_label_sets(split.train, label_set_size, seed=data_seed)
    train_env = relabel_family(with_sets, family, new_label, wrong_reward)
    test_env = relabel_family(split.test, family, new_label, wrong_reward)
    assert with_sets.label_sets is not None
    return Task(train_env, test_env, with_sets.label_sets[:, :, None])


def family_task_of(settings: object) -> Task:
    """:func:`family_task` at a config's settings: each of its keyword parameters (``num_train``,
    ``cluster_dim``, ..., ``data_seed``) read from the attribute of that name, so that every experiment
    on the family task (``sft_budget``, ``sft_targeting``) builds it from its config the same way."""
    names = inspect.signature(family_task).parameters
    return family_task(**{name: getattr(settings, name) for name in names})


#: ``name -> smallest allowed value`` of the integer task settings, checked by :func:`check_task_settings`.
_AT_LEAST_ONE = ("cluster_dim", "hidden", "label_set_size", "num_prompts", "num_prompt_groups", "vocab_size", "length")


def check_task_settings(settings: object) -> None:
    """Refuse out-of-range task settings of a config (each checked only if the config has it).

    One place for the checks the controlled-task experiments share: ``modify_fraction`` in (0, 1),
    ``wrong_reward`` in [-1, 1], ``pretrain_steps >= 0`` and ``pretrain_lr > 0``, ``cluster_noise >= 0``,
    ``num_outputs`` 0 or >= the 10 classes, ``num_train >= 0``, the sizes in ``_AT_LEAST_ONE`` >= 1.
    Raises :class:`ConfigError` naming the key.
    """

    def has(name: str) -> bool:
        return hasattr(settings, name)

    if has("modify_fraction") and not 0.0 < settings.modify_fraction < 1.0:
        raise ConfigError(f"modify_fraction must lie in (0, 1), got {settings.modify_fraction}")
    if has("wrong_reward") and not -1.0 <= settings.wrong_reward <= 1.0:
        raise ConfigError(f"wrong_reward must lie in [-1, 1], got {settings.wrong_reward}")
    if has("pretrain_steps") and (settings.pretrain_steps < 0 or not settings.pretrain_lr > 0):
        raise ConfigError("pretrain_steps must be >= 0 and pretrain_lr > 0")
    for name in _AT_LEAST_ONE:
        if has(name) and getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(settings, name)}")
    if has("cluster_noise") and not settings.cluster_noise >= 0:
        raise ConfigError(f"cluster_noise must be >= 0, got {settings.cluster_noise}")
    if has("num_outputs") and settings.num_outputs and settings.num_outputs < 10:
        raise ConfigError(f"num_outputs must be 0 (one per class) or >= the 10 classes, got {settings.num_outputs}")
    if has("num_train") and settings.num_train < 0:
        raise ConfigError(f"num_train must be >= 0 (0: all), got {settings.num_train}")

"""Run ``controlled``: data, pretraining to uniform sets, label modification, RFT vs SFT.

Steps (docs/paper.md §4):

1. data: digits (1,437 training images, 360 test) or Gaussian clusters (classification),
   or prompts in groups (sequence; each group owns a set of k outputs and each prompt's
   target is one of them);
2. pretrain every replica to the uniform distribution over its input's set (k labels of
   its class, or k outputs of its prompt group) with :func:`rftgrad.finetune.pretraining`;
3. modify: a ``modify_fraction`` of the training inputs get a target outside their set
   (groups ``modified`` / ``unmodified``); test inputs keep theirs;
4. finetune from the pretrained weights with each arm (exact RFT, SFT) and record, per
   group, reward mean, STD, gradient norm and accuracy over training (train and test
   splits), plus the per-input (reward mean, STD) cloud before and after.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rftgrad.envs import (
    OutputSpace,
    RewardEnv,
    SequenceEnv,
    digits,
    gaussian_clusters,
    modify_labels,
    with_label_sets,
    with_num_outputs,
)
from rftgrad.errors import ConfigError
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.builders import build_policy
from rftgrad.experiments.controlled.config import Config
from rftgrad.finetune import ReplicaSettings, replica_grid, train
from rftgrad.finetune.config import TrainConfig
from rftgrad.finetune.pretraining import pretrain
from rftgrad.finetune.trainer import TrainResult, per_input_metrics
from rftgrad.models import Params, SoftmaxPolicy
from rftgrad.runtime import resolve_device, resolve_dtype

PROMPT_LENGTH, PROMPT_VOCAB = 4, 16


@dataclasses.dataclass
class Task:
    """What the variant trains on: environments and each training input's pretraining set."""

    train: RewardEnv  # modified training inputs (groups modified / unmodified)
    test: RewardEnv | None  # untouched test inputs (classification only)
    pretrain_outputs: torch.Tensor  # (N, k, L) the outputs each training input is pretrained toward


def classification_task(config: Config) -> Task:
    """Digits or Gaussian clusters with k-label sets and a modified share of the training labels.

    With ``num_outputs`` above the 10 classes the output space grows (answers no input asks
    for); a modified input's new label is then drawn among the labels the sets use.
    """
    if config.variant.startswith("digits"):
        split = digits(num_train=config.num_train or None, seed=config.data_seed)
    else:
        split = gaussian_clusters(
            num_classes=10,
            per_class=config.num_train or 40,
            dim=config.cluster_dim,
            noise=config.cluster_noise,
            seed=config.data_seed,
        )
    train, test = split.train, split.test
    if config.num_outputs:
        train, test = with_num_outputs(train, config.num_outputs), with_num_outputs(test, config.num_outputs)
    with_sets = with_label_sets(train, config.label_set_size, seed=config.data_seed)
    widened = bool(config.num_outputs)
    train_env = modify_labels(
        with_sets, config.modify_fraction, config.data_seed, config.wrong_reward, used_labels_only=widened
    )
    assert with_sets.label_sets is not None
    return Task(train_env, test, with_sets.label_sets[:, :, None])


def sequence_task(config: Config) -> Task:
    """Prompts in groups; group g owns k distinct outputs; 10% of prompts get a target outside theirs."""
    rng = np.random.default_rng(config.data_seed)
    vocab, length, k = config.vocab_size, config.length, config.label_set_size
    if k >= vocab**length:
        raise ConfigError(f"label_set_size k={k} must be below V^L={vocab**length}")
    prompts = rng.integers(0, PROMPT_VOCAB, size=(config.num_prompts, PROMPT_LENGTH))
    group = np.arange(config.num_prompts) % config.num_prompt_groups
    group_sets = np.stack([rng.choice(vocab**length, size=k, replace=False) for _ in range(config.num_prompt_groups)])
    target_index = group_sets[group, rng.integers(0, k, size=config.num_prompts)]  # one of its group's outputs
    modified = np.zeros(config.num_prompts, dtype=bool)
    num_modified = round(config.modify_fraction * config.num_prompts)
    modified[rng.choice(config.num_prompts, size=num_modified, replace=False)] = True
    for n in np.flatnonzero(modified):
        outside = np.setdiff1d(np.arange(vocab**length), group_sets[group[n]])
        target_index[n] = rng.choice(outside)
    outputs = OutputSpace(vocab, length).enumerate()  # (V^L, L): output index -> tokens
    masks = {"modified": torch.as_tensor(modified), "unmodified": torch.as_tensor(~modified)}
    targets = outputs[torch.as_tensor(target_index)]  # (N, L)
    env = SequenceEnv(prompts, targets, vocab, config.reward, PROMPT_VOCAB, groups=masks, name="sequence-modified")
    return Task(env, None, outputs[torch.as_tensor(group_sets[group])])  # (N, k, L)


def make_task(config: Config) -> Task:
    """The variant's task."""
    return sequence_task(config) if config.variant == "sequence" else classification_task(config)


def cloud_rows(policy: SoftmaxPolicy, params: Params, env: RewardEnv, arm: str, when: str) -> pd.DataFrame:
    """Per (replica, input): exact reward mean and STD under ``params``, with the input's group."""
    policy.params = {key: value.to(policy.device) for key, value in params.items()}
    metrics = per_input_metrics(policy, env, with_grad_norm=False)
    num_replicas, num_inputs = metrics["reward_mean"].shape
    modified = env.groups["modified"].numpy()
    return pd.DataFrame(
        {
            "arm": arm,
            "when": when,
            "replica": np.repeat(np.arange(num_replicas), num_inputs),
            "input": np.tile(np.arange(num_inputs), num_replicas),
            "group": np.tile(np.where(modified, "modified", "unmodified"), num_replicas),
            "reward_mean": metrics["reward_mean"].double().cpu().numpy().ravel(),
            "reward_std": metrics["reward_std"].double().cpu().numpy().ravel(),
        }
    )


class PretrainedPolicies:
    """Policy factory for :func:`rftgrad.finetune.train`: every arm starts from the same pretrained weights.

    The first call for a set of seeds builds the policy (``config.policy`` sized for
    ``env``) and pretrains it at temperature 1 toward ``pretrain_outputs`` ``(N, k, L)``
    (uniform over each input's set); every call returns a fresh policy holding a copy of
    the cached weights, sampling at the replicas' temperatures (a higher temperature
    flattens the pretrained distribution, as when sampling a pretrained model hotter).
    ``losses[seeds]`` holds the final pretraining loss per replica.
    """

    def __init__(self, config: Config, env: RewardEnv, pretrain_outputs: torch.Tensor, progress: bool) -> None:
        self.config, self.env, self.pretrain_outputs, self.progress = config, env, pretrain_outputs, progress
        self.weights: dict[tuple[int, ...], Params] = {}  # seeds -> pretrained params
        self.losses: dict[tuple[int, ...], torch.Tensor] = {}  # seeds -> (R,) final pretraining loss

    def __call__(self, settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> SoftmaxPolicy:
        config = self.config
        policy = build_policy(
            config.policy, self.env, settings.seeds, device, dtype, features="input", hidden=(config.hidden,)
        )
        key = tuple(settings.seeds)
        if key not in self.weights:
            self.losses[key] = pretrain(
                policy, self.env, self.pretrain_outputs, None, config.pretrain_steps, config.pretrain_lr,
                progress=self.progress,
            )  # fmt: skip
            self.weights[key] = {name: value.clone() for name, value in policy.params.items()}
        policy.params = {name: value.clone() for name, value in self.weights[key].items()}
        policy.set_temperature(settings.temperature)
        return policy

    def finetune(
        self, config: TrainConfig, checkpoint_dir: Path, eval_envs: dict[str, RewardEnv] | None = None
    ) -> TrainResult:
        """Train ``config``'s arms on the pretraining environment from the cached pretrained weights
        (:func:`rftgrad.finetune.train`; the config is the run key of the checkpoints in ``checkpoint_dir``)."""
        return train(
            self,
            self.env,
            config,
            eval_envs=eval_envs,
            checkpoint_dir=checkpoint_dir,
            run_key=dataclasses.asdict(config),
            progress=self.progress,
        )

    def pretraining_table(self, settings: ReplicaSettings) -> pd.DataFrame:
        """Per replica: the final pretraining loss next to ln k, the loss of the uniform set."""
        losses = self.losses[tuple(settings.seeds)].double().cpu().numpy()
        uniform_set_loss = np.log(self.config.label_set_size)
        replicas = range(settings.num_replicas)
        return pd.DataFrame({"replica": replicas, "loss": losses, "uniform_set_loss": uniform_set_loss})


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """``records`` (training curves), ``replicas``, ``cloud`` (per-input before/after) and ``pretraining``."""
    task = make_task(config)
    make_policy = PretrainedPolicies(config, task.train, task.pretrain_outputs, context.progress)
    result = make_policy.finetune(config, context.checkpoint_dir, {} if task.test is None else {"test": task.test})
    settings = replica_grid(config)
    policy = make_policy(settings, resolve_device(config.device), resolve_dtype(config.dtype))
    clouds = [cloud_rows(policy, make_policy.weights[tuple(settings.seeds)], task.train, "pretrained", "before")]
    clouds += [cloud_rows(policy, params, task.train, arm, "after") for arm, params in result.params.items()]
    return {
        "records": result.records,
        "replicas": result.replicas,
        "cloud": pd.concat(clouds, ignore_index=True),
        "pretraining": make_policy.pretraining_table(settings),
    }

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

import numpy as np
import pandas as pd

from rftgrad.envs import RewardEnv, Task, classification_task, sequence_task
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.controlled.config import Config
from rftgrad.finetune import PretrainedPolicies, replica_grid
from rftgrad.finetune.trainer import per_input_metrics
from rftgrad.models import Params, SoftmaxPolicy
from rftgrad.runtime import resolve_device, resolve_dtype


def make_task(config: Config) -> Task:
    """The variant's task (:func:`rftgrad.envs.sequence_task` or :func:`rftgrad.envs.classification_task`)."""
    if config.variant == "sequence":
        return sequence_task(
            num_prompts=config.num_prompts, num_prompt_groups=config.num_prompt_groups, vocab_size=config.vocab_size,
            length=config.length, reward=config.reward, label_set_size=config.label_set_size,
            modify_fraction=config.modify_fraction, data_seed=config.data_seed,
        )  # fmt: skip
    return classification_task(
        "digits" if config.variant.startswith("digits") else "gaussian",
        num_train=config.num_train, cluster_dim=config.cluster_dim, cluster_noise=config.cluster_noise,
        num_outputs=config.num_outputs, label_set_size=config.label_set_size,
        modify_fraction=config.modify_fraction, wrong_reward=config.wrong_reward, data_seed=config.data_seed,
    )  # fmt: skip


def pretrained_policies(config: Config, task: Task, progress: bool) -> PretrainedPolicies:
    """The policy factory: ``config.policy`` pretrained toward the task's sets, shared by every arm."""
    return PretrainedPolicies(
        config.policy, task.train, task.pretrain_outputs, hidden=config.hidden, steps=config.pretrain_steps,
        lr=config.pretrain_lr, progress=progress,
    )  # fmt: skip


def cloud_rows(policy: SoftmaxPolicy, params: Params, env: RewardEnv, arm: str, when: str) -> pd.DataFrame:
    """Per (replica, input): exact reward mean and STD under ``params``, with the input's group.

    ``policy`` supplies the architecture and is left as it was (its parameters are restored).
    """
    held = policy.params
    policy.params = {key: value.to(policy.device) for key, value in params.items()}
    try:
        metrics = per_input_metrics(policy, env, with_grad_norm=False)
    finally:
        policy.params = held
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


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """``records`` (training curves), ``replicas``, ``cloud`` (per-input before/after) and ``pretraining``."""
    task = make_task(config)
    make_policy = pretrained_policies(config, task, context.progress)
    eval_envs = {} if task.test is None else {"test": task.test}
    result = make_policy.finetune(config.trainer, context.checkpoint_dir, eval_envs, run_key=dataclasses.asdict(config))
    settings = replica_grid(config.trainer)
    policy = make_policy(settings, resolve_device(config.trainer.device), resolve_dtype(config.trainer.dtype))
    clouds = [cloud_rows(policy, make_policy.weights[tuple(settings.seeds)], task.train, "pretrained", "before")]
    clouds += [cloud_rows(policy, params, task.train, arm, "after") for arm, params in result.params.items()]
    return {
        "records": result.records,
        "replicas": result.replicas,
        "cloud": pd.concat(clouds, ignore_index=True),
        "pretraining": make_policy.pretraining_table(settings),
    }

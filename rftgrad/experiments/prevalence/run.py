"""Run ``prevalence``: pretrain on an uneven task mixture, measure each prompt, train RFT vs SFT.

Steps (docs/paper.md §5):

1. the language (:func:`rftgrad.envs.language.language_env`) and its pretraining mixture
   (:func:`~rftgrad.envs.language.pretraining_mixture`, coverage per task, graded targets on
   the covered prompts: ``near_misses``, ``reference_range``); a transformer
   pretrained on it (:func:`rftgrad.finetune.pretraining.pretrained_transformer`, cached);
2. per reward in ``rewards`` and prompt: the exact reward mean ``V`` and STD under the
   pretrained model, the prompt's best and worst reward, and whether it is *stalled*
   (STD below ``std_threshold`` and ``V < best - far_fraction·(best - worst)``);
3. ``sample_draws`` independent draws of ``num_samples`` outputs per prompt (the same
   outputs scored by every reward): the sample mean and STD (``ddof = 0``, as the exact
   STD is a population STD) of each draw;
4. per reward in ``train_rewards``: RFT and SFT for ``steps`` steps from the pretrained
   weights (replicas: the learning rates x seeds), and every prompt's exact ``V`` and STD
   at the end.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from rftgrad.envs.language import Mixture, language_env, pretraining_mixture
from rftgrad.envs.sequence import SequenceEnv
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.prevalence.config import Config
from rftgrad.finetune import ReplicaSettings, replica_grid, train
from rftgrad.finetune.pretraining import pretrained_transformer
from rftgrad.finetune.trainer import per_input_metrics
from rftgrad.models.base import Params
from rftgrad.models.transformer import TinyTransformerPolicy
from rftgrad.theory.bounds import stalled


def task_env(config: Config, reward: str) -> SequenceEnv:
    """The language with ``reward``; the prompts do not depend on the reward."""
    return language_env(
        config.tasks, config.prompts_per_task, config.vocab_size, config.length, reward, seed=config.data_seed
    )


def pretrained(config: Config, env: SequenceEnv, progress: bool) -> tuple[TinyTransformerPolicy, Mixture]:
    """The one-replica pretrained transformer (from the cache when present) and its mixture."""
    mixture = pretraining_mixture(
        env, dict(zip(config.tasks, config.coverage, strict=True)), config.noise, seed=config.data_seed,
        near_misses=config.near_misses, reference_range=config.reference_range,
    )  # fmt: skip
    policy = pretrained_transformer(
        env, mixture, steps=config.pretrain_steps, lr=config.pretrain_lr, seed=config.data_seed,
        d_model=config.d_model, num_layers=config.num_layers, num_heads=config.num_heads,
        dtype=config.trainer.dtype, device=config.trainer.device, progress=progress,
    )  # fmt: skip
    return policy, mixture


def task_labels(env: SequenceEnv, tasks: tuple[str, ...]) -> np.ndarray:
    """``(N,)`` the task of every prompt."""
    labels = np.empty(env.num_inputs, dtype=object)
    for task in tasks:
        labels[env.groups[task].numpy()] = task
    return labels


def prompt_rows(policy: TinyTransformerPolicy, env: SequenceEnv, config: Config, **columns: object) -> pd.DataFrame:
    """Per (replica, prompt): exact ``reward_mean``, ``reward_std`` and the prompt's best/worst reward."""
    metrics = per_input_metrics(policy, env, with_grad_norm=False)  # (R, N) each
    rewards = env.reward_table()  # (N, Y)
    num_replicas, num_inputs = metrics["reward_mean"].shape
    return pd.DataFrame(
        {
            **columns,
            "replica": np.repeat(np.arange(num_replicas), num_inputs),
            "input": np.tile(np.arange(num_inputs), num_replicas),
            "task": np.tile(task_labels(env, config.tasks), num_replicas),
            "reward_mean": metrics["reward_mean"].double().cpu().numpy().ravel(),
            "reward_std": metrics["reward_std"].double().cpu().numpy().ravel(),
            "best_reward": np.tile(rewards.max(-1).values.numpy(), num_replicas),
            "worst_reward": np.tile(rewards.min(-1).values.numpy(), num_replicas),
            "std_threshold": config.trainer.std_threshold,
        }
    ).assign(stalled=lambda frame: stalled_rows(frame, "reward_mean", "reward_std", config))


def stalled_rows(frame: pd.DataFrame, mean: str, std: str, config: Config) -> pd.Series:
    """:func:`rftgrad.theory.bounds.stalled` on columns ``mean`` and ``std`` of ``frame`` with its
    ``best_reward`` and ``worst_reward`` (the config's ``std_threshold`` and ``far_fraction``)."""
    bounds = frame["best_reward"], frame["worst_reward"]
    return stalled(frame[mean], frame[std], *bounds, config.trainer.std_threshold, config.far_fraction)


def sampled_rows(policy: TinyTransformerPolicy, envs: dict[str, SequenceEnv], config: Config) -> pd.DataFrame:
    """Per (reward, prompt, draw): mean and STD (ddof 0) of the rewards of ``num_samples`` sampled outputs."""
    env = next(iter(envs.values()))
    ids = torch.arange(env.num_inputs, device=policy.device)
    total = config.num_samples * config.sample_draws
    outputs = policy.sample(ids, policy.inputs_from(env), total, config.length, seed=config.sample_seed)[0]
    outputs = outputs.cpu()  # (N, D·K, L)
    flat_ids = torch.arange(env.num_inputs).repeat_interleave(total)  # (N·D·K,)
    frames = []
    for reward, reward_env in envs.items():
        values = reward_env.reward(flat_ids, outputs.reshape(-1, config.length))  # (N·D·K,)
        values = values.reshape(env.num_inputs, config.sample_draws, config.num_samples).numpy()  # (N, D, K)
        frames.append(
            pd.DataFrame(
                {
                    "reward": reward,
                    "input": np.repeat(np.arange(env.num_inputs), config.sample_draws),
                    "draw": np.tile(np.arange(config.sample_draws), env.num_inputs),
                    "sample_mean": values.mean(-1).ravel(),
                    "sample_std": values.std(-1).ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


class FromPretrained:
    """Policy factory for :func:`rftgrad.finetune.train`: every replica starts from the pretrained weights."""

    def __init__(self, env: SequenceEnv, params: Params, config: Config) -> None:
        self.env, self.params, self.config = env, params, config

    def __call__(self, settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> TinyTransformerPolicy:
        config = self.config
        policy = TinyTransformerPolicy.for_env(
            self.env, d_model=config.d_model, num_layers=config.num_layers, num_heads=config.num_heads,
            seed=list(settings.seeds), temperature=list(settings.temperature), device=device, dtype=dtype,
        )  # fmt: skip
        replicas = settings.num_replicas
        policy.params = {
            name: value.expand(replicas, *value.shape[1:]).clone().to(device, dtype)  # (R, ...) from (1, ...)
            for name, value in self.params.items()
        }
        return policy


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """``prompts`` (pretrained, exact), ``samples`` (10-sample estimates), ``records``, ``replicas``, ``final``."""
    trainer = config.equal_trainer()
    envs = {reward: task_env(config, reward) for reward in config.rewards}
    base, mixture = pretrained(config, envs[config.rewards[0]], context.progress)
    covered = mixture.covered.numpy()
    prompts = pd.concat(
        [prompt_rows(base, env, config, reward=reward).assign(covered=covered) for reward, env in envs.items()],
        ignore_index=True,
    )
    records, finals, replicas = [], [], None
    for reward in config.train_rewards:
        env = envs[reward]
        make_policy = FromPretrained(env, base.params, config)
        result = train(
            make_policy, env, trainer, checkpoint_dir=context.checkpoint_dir / reward,
            run_key={**dataclasses.asdict(config), "trainer": dataclasses.asdict(trainer), "train_reward": reward},
            progress=context.progress,
        )  # fmt: skip
        records.append(result.records.assign(reward=reward))
        replicas = result.replicas
        policy = make_policy(replica_grid(trainer), torch.device(base.device), base.dtype)
        for arm, params in result.params.items():
            policy.params = {name: value.to(policy.device) for name, value in params.items()}
            finals.append(prompt_rows(policy, env, config, reward=reward, arm=arm))
    bounds = prompts[["reward", "input", "best_reward", "worst_reward"]]
    samples = sampled_rows(base, envs, config).merge(bounds, on=["reward", "input"])
    samples["stalled"] = stalled_rows(samples, "sample_mean", "sample_std", config)
    return {
        "prompts": prompts,
        "samples": samples,
        "records": pd.concat(records, ignore_index=True),
        "replicas": replicas,
        "final": pd.concat(finals, ignore_index=True),
    }

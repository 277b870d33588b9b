"""Run ``heuristics``: per output-space size, three one-at-a-time sweeps of exact RFT.

For each size ``C`` in ``output_sizes`` the controlled task is built once (pretrained
weights are cached per seed and shared by every sweep), then each sweep in
:data:`~rftgrad.experiments.heuristics.config.SWEEPS` trains its values as replicas of one
batched run. The trainer evaluates at each replica's sampling temperature; at the end
every replica is evaluated again at T = 1 (the policy a user deploys), per group.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import torch

from rftgrad.envs import RewardEnv, Task, classification_task
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.heuristics.config import SWEEPS, Config
from rftgrad.finetune import PretrainedPolicies, TrainConfig, parse_arm, replica_grid
from rftgrad.finetune.trainer import group_means, per_input_metrics
from rftgrad.runtime import resolve_device, resolve_dtype


def sweep_config(config: Config, sweep: str) -> TrainConfig:
    """The trainer of one sweep: only ``sweep`` varied (the other swept fields at their first value);
    the ``lr`` sweep also trains SFT for as many steps as the RFT arm (``sft_reference``)."""
    trainer = config.trainer
    baseline = {name: getattr(trainer, name)[:1] for name in SWEEPS if name != sweep}
    arms = trainer.arms
    if sweep == "lr" and config.sft_reference:
        arms = (*arms, f"sft:{sum(phase.steps for phase in parse_arm(trainer.arms[0]))}")
    return dataclasses.replace(trainer, **baseline, arms=arms)


def task_with_outputs(config: Config, num_outputs: int) -> Task:
    """The controlled classification task of ``config.variant`` with ``num_outputs`` output tokens."""
    return classification_task(
        "digits" if config.variant.startswith("digits") else "gaussian",
        num_train=config.num_train, cluster_dim=config.cluster_dim, cluster_noise=config.cluster_noise,
        num_outputs=num_outputs, label_set_size=config.label_set_size, modify_fraction=config.modify_fraction,
        wrong_reward=config.wrong_reward, data_seed=config.data_seed,
    )  # fmt: skip


def final_at_temperature_one(
    make_policy: PretrainedPolicies, trainer: TrainConfig, params: dict[str, dict[str, torch.Tensor]], env: RewardEnv
) -> pd.DataFrame:
    """Per arm, replica and group: exact reward mean and STD of the final parameters at T = 1."""
    settings = replica_grid(trainer)
    policy = make_policy(settings, resolve_device(trainer.device), resolve_dtype(trainer.dtype))
    policy.set_temperature(1.0)
    masks = env.group_masks().items()
    groups = {name: mask.to(policy.device)[None].expand(settings.num_replicas, -1) for name, mask in masks}
    rows = []
    for arm, arm_params in params.items():
        policy.params = {key: value.to(policy.device) for key, value in arm_params.items()}
        metrics = per_input_metrics(policy, env, with_grad_norm=False)
        for metric in ("reward_mean", "reward_std", "accuracy"):
            for group, means in group_means(metrics[metric], groups).items():
                for replica, value in enumerate(means.double().cpu().tolist()):
                    rows.append({"arm": arm, "replica": replica, "group": group, "metric": metric, "value": value})
    return pd.DataFrame(rows)


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """``records`` and ``final_t1`` (with columns ``num_outputs`` and ``sweep``), ``replicas``, ``pretraining``."""
    records, finals, replicas, pretraining = [], [], [], []
    for num_outputs in config.output_sizes:
        task = task_with_outputs(config, num_outputs)
        make_policy = PretrainedPolicies(
            config.policy, task.train, task.pretrain_outputs, hidden=config.hidden, steps=config.pretrain_steps,
            lr=config.pretrain_lr, progress=context.progress,
        )  # fmt: skip
        for sweep in SWEEPS:
            trainer = sweep_config(config, sweep)
            tag = {"num_outputs": num_outputs, "sweep": sweep}
            run_key = {**dataclasses.asdict(config), "trainer": dataclasses.asdict(trainer), **tag}
            result = make_policy.finetune(trainer, context.checkpoint_dir / f"C{num_outputs}-{sweep}", run_key=run_key)
            records.append(result.records.assign(**tag))
            replicas.append(result.replicas.assign(**tag))
            finals.append(final_at_temperature_one(make_policy, trainer, result.params, task.train).assign(**tag))
        settings = replica_grid(sweep_config(config, SWEEPS[0]))
        pretraining.append(make_policy.pretraining_table(settings).assign(num_outputs=num_outputs))
    return {
        "records": pd.concat(records, ignore_index=True),
        "final_t1": pd.concat(finals, ignore_index=True),
        "replicas": pd.concat(replicas, ignore_index=True),
        "pretraining": pd.concat(pretraining, ignore_index=True),
    }

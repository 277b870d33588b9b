"""Run ``compare``: build the environment and policy, train every arm, return the records."""

from __future__ import annotations

import dataclasses

import pandas as pd
import torch

from rftgrad.envs import RewardEnv, build_env
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.compare.config import Config
from rftgrad.finetune.config import ReplicaSettings
from rftgrad.finetune.trainer import train
from rftgrad.models import SoftmaxPolicy, build_policy
from rftgrad.runtime import generator


def start_probabilities(policy: SoftmaxPolicy, env: RewardEnv, config: Config) -> torch.Tensor:
    """``(R, N)`` target probabilities to start from: ``p0`` on a seeded ``p0_fraction`` of the
    inputs (the same for every replica), each replica's current value elsewhere."""
    ids = torch.arange(env.num_inputs, device=policy.device)
    targets = env.targets.to(policy.device)[:, None, :]  # (N, 1, L)
    with torch.no_grad():
        current = policy.log_prob(ids, policy.inputs_from(env), targets)[..., 0].double().exp()  # (R, N)
    order = torch.randperm(env.num_inputs, generator=generator(config.data_seed))
    chosen = torch.zeros(env.num_inputs, dtype=torch.bool)
    chosen[order[: round(config.p0_fraction * env.num_inputs)]] = True
    return torch.where(chosen.to(policy.device), torch.full_like(current, config.p0), current)


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """``records`` (one row per arm, step, replica, split, group, metric) and ``replicas`` (settings)."""
    env, test_env = build_env(
        config.env, config.num_inputs, config.vocab_size, config.length, config.reward, config.data_seed
    )

    def make_policy(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> SoftmaxPolicy:
        policy = build_policy(
            config.policy,
            env,
            settings.seeds,
            device,
            dtype,
            temperature=settings.temperature,
            features=config.features,
            hidden=(config.hidden,),
        )
        if config.p0 > 0 and config.p0_fraction > 0:
            policy.set_output_probability(env, start_probabilities(policy, env, config))
        return policy

    result = train(
        make_policy,
        env,
        config.trainer,
        eval_envs={} if test_env is None else {"test": test_env},
        checkpoint_dir=context.checkpoint_dir,
        run_key=dataclasses.asdict(config),
        progress=context.progress,
    )
    return {"records": result.records, "replicas": result.replicas}

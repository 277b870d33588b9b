"""Run ``tightness``: the witness ratio against L, and an adversarial search per policy class.

Search: for each policy class, ``restarts`` random instances (one input) are pushed by Adam
on ``log(‖∇_θ V‖ / (γ · sqrt(L) · STD))`` over the policy's parameters and the reward table
``r = tanh(ρ)`` (kept in (-1, 1)). ``‖∇_θ V‖`` comes from autograd of the enumerated objective
with ``create_graph=True``; γ is recomputed every ``gamma_every`` steps (it is constant for
tabular and linear policies). The best restart is re-evaluated with the exact engine.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from tqdm.auto import tqdm

from rftgrad.envs import RewardEnv
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.tightness.config import Config
from rftgrad.models import SoftmaxPolicy
from rftgrad.runtime import generator
from rftgrad.theory.bounds import bound_table
from rftgrad.theory.gamma import gamma
from rftgrad.theory.instances import InstanceSpec, random_instance, tightness_witness


def witness_rows(config: Config) -> pd.DataFrame:
    """Per (L, p): ||∇V||/(γ·STD) of the witness, its closed form sqrt(2Lp(1-p)) and the bound ratios."""
    rows = []
    for length in config.lengths:
        for prob in config.probs:
            env, policy = tightness_witness(length, prob)
            table = bound_table(policy, env).iloc[0]
            rows.append(
                {
                    "length": length,
                    "prob": prob,
                    "ratio_gamma_std": table["grad_norm"] / (table["gamma"] * table["reward_std"]),
                    "expected": math.sqrt(2 * length * prob * (1 - prob)),
                    "ratio_sharpened": table["ratio_sharpened"],
                    "ratio_tight": table["ratio_tight"],
                    "ratio_paper": table["ratio_paper"],
                }
            )
    return pd.DataFrame(rows)


def sharpened_ratio(
    policy: SoftmaxPolicy, params: dict[str, torch.Tensor], rewards: torch.Tensor, env: RewardEnv, gammas: torch.Tensor
) -> torch.Tensor:
    """``‖∇_θ V‖ / (γ · sqrt(L) · STD)`` per replica, differentiable in ``params`` and ``rewards`` ``(R, Y)``."""
    outputs = env.output_space.enumerate(policy.device)[None]  # (1, Y, L)
    ids = torch.zeros(1, dtype=torch.long, device=policy.device)
    probs = policy.log_prob(ids, policy.inputs_from(env), outputs, params)[:, 0].exp()  # (R, Y)
    value = (probs * rewards).sum(-1)  # (R,)
    grads = torch.autograd.grad(value.sum(), list(params.values()), create_graph=True)  # replicas independent
    grad_norm = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (R,)
    std = (probs * (rewards - value[:, None]).pow(2)).sum(-1).sqrt()  # (R,)
    return grad_norm / (gammas * math.sqrt(env.output_space.length) * std)


def search(kind: str, config: Config, progress: bool) -> tuple[pd.DataFrame, dict[str, object]]:
    """Adam on log(ratio) for one policy class; returns the trajectory and the verified best restart."""
    spec = InstanceSpec(
        kind=kind,
        vocab_size=config.search_vocab,
        length=1 if kind == "mlp" else config.search_length,
        num_inputs=1,
        reward_kind="uniform",
        seed=config.seed,
    )
    env, policy = random_instance(spec, num_replicas=config.restarts)
    num_outputs = env.output_space.num_outputs
    rho = torch.randn(config.restarts, num_outputs, generator=generator(config.seed), dtype=torch.float64)
    params = {key: value.detach().clone().requires_grad_(True) for key, value in policy.params.items()}
    rho.requires_grad_(True)
    optimizer = torch.optim.Adam([*params.values(), rho], lr=config.lr)
    trajectory = []
    for step in tqdm(range(config.steps + 1), desc=f"search {kind}", disable=not progress, leave=False):
        if step % config.gamma_every == 0 or step == config.steps:
            policy.params = {key: value.detach() for key, value in params.items()}
            gammas = gamma(policy, env)[:, 0]  # (R,), fresh for the current parameters
            fresh = True
        ratio = sharpened_ratio(policy, params, torch.tanh(rho), env, gammas)
        if fresh:
            trajectory += [
                {"kind": kind, "step": step, "replica": r, "ratio_sharpened": float(v)}
                for r, v in enumerate(ratio.detach())
            ]
            fresh = False
        if step == config.steps:
            break
        optimizer.zero_grad()
        (-torch.log(ratio).sum()).backward()
        optimizer.step()
    best = int(ratio.detach().argmax())
    check_env, check_policy = random_instance(spec, num_replicas=1)
    check_env = check_env.with_rewards(torch.tanh(rho[best : best + 1]).detach())
    check_policy.params = {key: value[best : best + 1].detach().clone() for key, value in params.items()}
    verified = bound_table(check_policy, check_env).iloc[0]
    summary = {
        "kind": kind,
        "vocab_size": spec.vocab_size,
        "length": spec.length,
        "restarts": config.restarts,
        "steps": config.steps,
        "search_ratio": float(ratio[best].detach()),
        "best_replica": best,
        **{key: float(verified[key]) for key in ("reward_std", "ratio_sharpened", "ratio_tight", "ratio_paper")},
        "violation": bool(verified["violation"]),
    }
    return pd.DataFrame(trajectory), summary


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """Tables ``witness``, ``search_trajectory`` and ``search_best``."""
    trajectories, bests = [], []
    for kind in config.search_kinds:
        trajectory, best = search(kind, config, context.progress)
        trajectories.append(trajectory)
        bests.append(best)
    return {
        "witness": witness_rows(config),
        "search_trajectory": pd.concat(trajectories, ignore_index=True),
        "search_best": pd.DataFrame(bests),
    }

"""Run ``estimators``: closed forms vs Monte Carlo of the group estimators, then learning curves.

1. Sweep (docs/paper.md §7): for each estimator, group size ``G`` and success probability ``p``
   on a log grid, the closed-form expected update along the correct output and
   ``frac_reward_zero_std`` (:mod:`rftgrad.theory.group_updates`) next to the mean of simulated
   groups run through the library's estimators (:func:`rftgrad.finetune.advantages.monte_carlo_update`),
   with about ``mc_informative`` informative groups per point.
2. Learning curves: the controlled sequence task (:func:`rftgrad.envs.sequence_task`),
   pretrained once (:class:`rftgrad.finetune.PretrainedPolicies`), then one RFT run
   per estimator in ``curve_estimators`` and one with ``estimator`` at ``pass_k``; every run logs
   ``samples_per_input`` (DAPO: what dynamic sampling draws), so curves compare at equal budgets.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
from tqdm.auto import tqdm

from rftgrad.envs import sequence_task
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.estimators.config import Config
from rftgrad.finetune import PretrainedPolicies, TrainConfig, replica_grid
from rftgrad.finetune.advantages import monte_carlo_update
from rftgrad.theory.dynamics import p0_grid
from rftgrad.theory.group_updates import expected_samples, expected_update, frac_reward_zero_std, informative_prob


def tries_of(estimator: str, config: Config) -> int:
    """``B`` for DAPO (``max_resample``), 1 otherwise."""
    return config.trainer.max_resample if estimator == "dapo" else 1


def in_fit_window(p: float, group: int, tries: int, grid: list[float], config: Config) -> bool:
    """``p <= fit_window / (G·B)`` (the leading term dominates there), or one of the two smallest ``p``."""
    return p <= config.fit_window / (group * tries) * (1 + 1e-9) or p <= sorted(grid)[1]


def sweep_rows(config: Config, progress: bool) -> pd.DataFrame:
    """Per (estimator, G, p): closed form and Monte Carlo of ``E u``, ``frac_reward_zero_std`` and samples."""
    grid = [float(p) for p in p0_grid(config.p_min, config.p_max, config.points_per_decade)]
    jobs = [(e, g, i) for e in config.mc_estimators for g in config.group_sizes for i in range(len(grid))]
    rows = []
    for estimator, group, index in tqdm(jobs, desc="closed form vs Monte Carlo", disable=not progress, leave=False):
        p, tries = grid[index], tries_of(estimator, config)
        draws = min(config.mc_max_draws, math.ceil(config.mc_informative / float(informative_prob(p, group))))
        seed = config.mc_seed * 1_000_003 + 10_000 * config.mc_estimators.index(estimator) + 100 * group + index
        setting = dict(std_eps=config.trainer.std_eps, max_resample=config.trainer.max_resample)
        mc = monte_carlo_update(p, group, estimator, draws, seed, **setting)
        rows.append(
            {
                "estimator": estimator,
                "group_size": group,
                "p": p,
                "max_resample": tries,
                "std_eps": config.trainer.std_eps,
                "closed_form": float(expected_update(p, group, estimator, **setting)),
                "mc_mean": mc.mean,
                "mc_sem": mc.sem,
                "num_draws": draws,
                "frac_zero_std_closed_form": float(frac_reward_zero_std(p, group)),
                "frac_zero_std_mc": mc.frac_zero_std,
                "frac_zero_std_sem": mc.frac_zero_std_sem,
                "samples_closed_form": float(expected_samples(p, group, estimator, config.trainer.max_resample)),
                "samples_mc": mc.samples_per_input,
                "in_fit_window": in_fit_window(p, group, tries, grid, config),
            }
        )
    return pd.DataFrame(rows)


def run_configs(config: Config) -> dict[str, TrainConfig]:
    """Run label -> its trainer: one per curve estimator at pass@1 and the pass@k run (``estimator`` at
    ``pass_k``); the pass@1 reference of the pass@k run is the curve run of ``estimator`` (added if
    ``curve_estimators`` lacks it)."""
    base = config.pass_k_trainer()
    runs = {name: dataclasses.replace(base, estimator=name, pass_k=1) for name in config.curve_estimators}
    runs.setdefault(config.estimator, dataclasses.replace(base, pass_k=1))
    runs[f"{config.estimator} pass@{config.pass_k}"] = base
    return runs


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """Tables ``updates`` (the sweep), ``records`` (training curves, column ``run``), ``replicas``, ``pretraining``."""
    updates = sweep_rows(config, context.progress)
    task = sequence_task(
        num_prompts=config.num_prompts, num_prompt_groups=config.num_prompt_groups, vocab_size=config.vocab_size,
        length=config.length, reward=config.reward, label_set_size=config.label_set_size,
        modify_fraction=config.modify_fraction, data_seed=config.data_seed,
    )  # fmt: skip
    make_policy = PretrainedPolicies(
        config.policy, task.train, task.pretrain_outputs, steps=config.pretrain_steps,
        lr=config.pretrain_lr, progress=context.progress,
    )  # fmt: skip
    frames = []
    for index, (label, trainer) in enumerate(run_configs(config).items()):
        run_key = {**dataclasses.asdict(config), "trainer": dataclasses.asdict(trainer)}
        result = make_policy.finetune(trainer, context.checkpoint_dir / f"run{index}", run_key=run_key)
        frames.append(result.records.assign(run=label, estimator=trainer.estimator, pass_k=trainer.pass_k))
    return {
        "updates": updates,
        "records": pd.concat(frames, ignore_index=True),
        "replicas": result.replicas,
        "pretraining": make_policy.pretraining_table(replica_grid(config.trainer)),
    }

"""Run ``sft_budget``: the family-rule task, then every arm of the SFT-budget grid from the same weights.

Steps (docs/paper.md §6):

1. data: Gaussian clusters, the first ``family_size`` classes sharing a direction
   (:func:`rftgrad.envs.gaussian_clusters`); pretraining sets of k labels per class;
2. the rule: every input of a family class gets the label ``ℓ*`` (:func:`rftgrad.envs.family_label`,
   outside the family's sets, inside other classes'), on the training and the test split;
3. pretrain (T = 1) toward the sets, then train every arm of :meth:`Config.budget_arms`
   (the SFT subset of a phase ``sft:S@f`` is a seeded share ``f`` of the training inputs).

The trainer evaluates at the end of every phase, so the records hold the state right after
the SFT phase (``phase`` = its label) next to the end of RFT.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from rftgrad.envs import Task, family_task_of
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.sft_budget.config import Config
from rftgrad.finetune import PretrainedPolicies, replica_grid
from rftgrad.finetune.trainer import phase_subset


def budget_task(config: Config) -> Task:
    """The shared-rule task (:func:`rftgrad.envs.family_task_of`) at ``config``'s settings."""
    return family_task_of(config)


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """``records`` (every arm, train and test splits), ``replicas`` and ``pretraining``."""
    trainer = config.budget_trainer()
    task = budget_task(config)
    make_policy = PretrainedPolicies(
        "linear", task.train, task.pretrain_outputs, steps=config.pretrain_steps, lr=config.pretrain_lr,
        progress=context.progress,
    )  # fmt: skip
    run_key = {**dataclasses.asdict(config), "trainer": dataclasses.asdict(trainer)}
    result = make_policy.finetune(trainer, context.checkpoint_dir, {"test": task.test}, run_key=run_key)
    return {
        "records": result.records,
        "replicas": result.replicas,
        "pretraining": make_policy.pretraining_table(replica_grid(trainer)),
        "sft_subsets": sft_subsets(config, task),
    }


def sft_subsets(config: Config, task: Task) -> pd.DataFrame:
    """Per SFT fraction and replica: how many inputs the SFT phase sees and how many belong to the family
    (a 1% subset may hold none, and then SFT cannot teach the rule)."""
    seeds = replica_grid(config.trainer).seeds
    family = task.train.groups["modified"]  # (N,)
    rows = []
    for fraction in config.sft_fractions:
        subset = phase_subset(task.train.num_inputs, fraction, seeds, phase_index=0)  # (R, N)
        for replica, chosen in enumerate(subset):
            rows.append({"fraction": fraction, "replica": replica, "inputs": int(chosen.sum()),
                         "family_inputs": int((chosen & family).sum())})  # fmt: skip
    return pd.DataFrame(rows)

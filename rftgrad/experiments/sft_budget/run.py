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

from rftgrad.envs import family_label, gaussian_clusters, pretraining_label_sets, relabel_family, with_label_sets
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.controlled.run import PretrainedPolicies, Task
from rftgrad.experiments.sft_budget.config import Config
from rftgrad.finetune import replica_grid
from rftgrad.finetune.trainer import phase_subset


def family_task(config: Config) -> Task:
    """Clusters with a family sharing structure; the family's inputs all relabelled to one ``ℓ*``."""
    split = gaussian_clusters(
        num_classes=10,
        per_class=config.num_train,
        dim=config.cluster_dim,
        noise=config.cluster_noise,
        seed=config.data_seed,
        family_size=config.family_size,
        family_weight=config.family_weight,
    )
    family = range(config.family_size)
    class_sets = pretraining_label_sets(10, config.label_set_size, seed=config.data_seed)  # (10, k)
    new_label = family_label(class_sets, family, seed=config.data_seed)
    with_sets = with_label_sets(split.train, config.label_set_size, seed=config.data_seed)
    train_env = relabel_family(with_sets, family, new_label, config.wrong_reward)
    test_env = relabel_family(split.test, family, new_label, config.wrong_reward)
    assert with_sets.label_sets is not None
    return Task(train_env, test_env, with_sets.label_sets[:, :, None])


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """``records`` (every arm, train and test splits), ``replicas`` and ``pretraining``."""
    config = dataclasses.replace(config, arms=config.budget_arms())
    task = family_task(config)
    make_policy = PretrainedPolicies(config, task.train, task.pretrain_outputs, context.progress)
    result = make_policy.finetune(config, context.checkpoint_dir, {"test": task.test})
    return {
        "records": result.records,
        "replicas": result.replicas,
        "pretraining": make_policy.pretraining_table(replica_grid(config)),
        "sft_subsets": sft_subsets(config, task),
    }


def sft_subsets(config: Config, task: Task) -> pd.DataFrame:
    """Per SFT fraction and replica: how many inputs the SFT phase sees and how many belong to the family
    (a 1% subset may hold none, and then SFT cannot teach the rule)."""
    seeds = replica_grid(config).seeds
    family = task.train.groups["modified"]  # (N,)
    rows = []
    for fraction in config.sft_fractions:
        subset = phase_subset(task.train.num_inputs, fraction, seeds, phase_index=0)  # (R, N)
        for replica, chosen in enumerate(subset):
            rows.append({"fraction": fraction, "replica": replica, "inputs": int(chosen.sum()),
                         "family_inputs": int((chosen & family).sum())})  # fmt: skip
    return pd.DataFrame(rows)

"""Experiments, one folder each: ``config.py`` (settings and budgets), ``run.py`` (records), ``analysis.py``
(score and figures); each package's ``__init__`` lists its public names.

``EXPERIMENTS`` (from :mod:`rftgrad.registry`) maps a name to a one-line description.
Experiments never import each other: what two of them share lives below them
(the tasks of :mod:`rftgrad.envs`, e.g. :func:`~rftgrad.envs.classification_task`, and the
pretraining of :mod:`rftgrad.finetune`, :func:`~rftgrad.finetune.pretrain`).
"""

from rftgrad.experiments.base import (
    PlannedRun,
    RunContext,
    RunOutput,
    analyse,
    claim_planned_run,
    compute_run,
    config_device,
    default_run_dir,
    experiment_config,
    experiment_module,
    plan_run,
    record_run,
    run_experiment,
    run_plans,
    run_record,
)
from rftgrad.registry import EXPERIMENTS

__all__ = [
    "EXPERIMENTS", "PlannedRun", "RunContext", "RunOutput", "analyse", "claim_planned_run", "compute_run",
    "config_device", "default_run_dir", "experiment_config", "experiment_module", "plan_run", "record_run",
    "run_experiment", "run_plans", "run_record",
]  # fmt: skip

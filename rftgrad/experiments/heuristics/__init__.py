"""Experiment ``heuristics``: larger lr, temperature, entropy bonus vs the stall as the output space grows (5.1)."""

from rftgrad.experiments.heuristics.analysis import (
    draw_heuristic_rewards,
    draw_heuristic_stds,
    make_figures,
    max_drop,
    per_replica,
    plot_mechanism,
    plot_sweep_curves,
    score,
    summary_table,
)
from rftgrad.experiments.heuristics.config import FULL, FULL_VARIANTS, TESTING, VARIANTS, Config
from rftgrad.experiments.heuristics.run import run, sweep_config, task_with_outputs

__all__ = [
    "FULL", "FULL_VARIANTS", "TESTING", "VARIANTS", "Config", "draw_heuristic_rewards", "draw_heuristic_stds",
    "make_figures", "max_drop", "per_replica", "plot_mechanism", "plot_sweep_curves", "run", "score",
    "summary_table", "sweep_config", "task_with_outputs",
]  # fmt: skip

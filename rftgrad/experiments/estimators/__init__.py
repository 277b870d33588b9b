"""Experiment ``estimators``: group estimators past the paper, closed forms vs Monte Carlo, learning curves, pass@k."""

from rftgrad.experiments.estimators.analysis import (
    at_budget,
    budget,
    curve_runs,
    draw_band,
    draw_budget_rewards,
    draw_update_curves,
    estimator_colors,
    fit_table,
    make_figures,
    pass_k_summary,
    plot_learning_curves,
    plot_pass_k,
    plot_updates,
    plot_zero_std,
    reward_vs_samples,
    run_label,
    score,
)
from rftgrad.experiments.estimators.config import FULL, TESTING, Config
from rftgrad.experiments.estimators.run import run, run_configs

__all__ = [
    "FULL", "TESTING", "Config", "at_budget", "budget", "curve_runs", "draw_band", "draw_budget_rewards",
    "draw_update_curves", "estimator_colors", "fit_table", "make_figures", "pass_k_summary",
    "plot_learning_curves", "plot_pass_k", "plot_updates", "plot_zero_std", "reward_vs_samples", "run",
    "run_configs", "run_label", "score",
]  # fmt: skip

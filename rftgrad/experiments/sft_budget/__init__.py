"""Experiment ``sft_budget``: a short SFT phase on 1-100% of the inputs, then RFT (paper Section 5.2)."""

from rftgrad.experiments.sft_budget.analysis import (
    ENOUGH,
    arm_budget,
    arm_table,
    draw_family_curves,
    draw_gain_vs_cost,
    make_figures,
    percent,
    plot_heatmaps,
    plot_reward_curves,
    score,
)
from rftgrad.experiments.sft_budget.config import FULL, TESTING, Config
from rftgrad.experiments.sft_budget.run import budget_task, run, sft_subsets

__all__ = [
    "ENOUGH", "FULL", "TESTING", "Config", "arm_budget", "arm_table", "budget_task", "draw_family_curves",
    "draw_gain_vs_cost", "make_figures", "percent", "plot_heatmaps", "plot_reward_curves", "run", "score",
    "sft_subsets",
]  # fmt: skip

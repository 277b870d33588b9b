"""Experiment ``prevalence``: per-task share of small-STD, far-from-optimal prompts and RFT vs SFT gains (4.1)."""

from rftgrad.experiments.prevalence.analysis import (
    GAP_FLOOR,
    MIN_GAP,
    best_lr,
    correlations,
    draw_gap_closed,
    draw_mean_vs_std,
    gains,
    log_floor,
    make_figures,
    plot_gain_vs_std,
    plot_scatter,
    plot_std_error,
    plot_tasks,
    score,
    shares,
    std_error,
    task_table,
)
from rftgrad.experiments.prevalence.config import FULL, TESTING, Config
from rftgrad.experiments.prevalence.run import run

__all__ = [
    "FULL", "GAP_FLOOR", "MIN_GAP", "TESTING", "Config", "best_lr", "correlations", "draw_gap_closed",
    "draw_mean_vs_std", "gains", "log_floor", "make_figures", "plot_gain_vs_std", "plot_scatter", "plot_std_error",
    "plot_tasks", "run", "score", "shares", "std_error", "task_table",
]  # fmt: skip

"""Experiment ``prevalence``: per-task share of small-STD, far-from-optimal prompts and RFT vs SFT gains (4.1)."""

from rftgrad.experiments.prevalence.analysis import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    GAP_FLOOR,
    MIN_GAP,
    best_lr,
    bootstrap_correlations,
    claim_verdicts,
    correlations,
    draw_gap_closed,
    draw_mean_vs_std,
    gains,
    log_floor,
    make_figures,
    pearson_rows,
    plot_gain_vs_std,
    plot_scatter,
    plot_std_error,
    plot_tasks,
    room_counts,
    score,
    shares,
    spearman_rows,
    std_error,
    summary,
    task_table,
)
from rftgrad.experiments.prevalence.config import FULL, TESTING, Config
from rftgrad.experiments.prevalence.run import run

__all__ = [
    "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CONFIDENCE", "FULL", "GAP_FLOOR", "MIN_GAP", "TESTING", "Config",
    "best_lr", "bootstrap_correlations", "claim_verdicts", "correlations", "draw_gap_closed", "draw_mean_vs_std",
    "gains", "log_floor", "make_figures", "pearson_rows", "plot_gain_vs_std", "plot_scatter", "plot_std_error",
    "plot_tasks", "room_counts", "run", "score", "shares", "spearman_rows", "std_error", "summary", "task_table",
]  # fmt: skip

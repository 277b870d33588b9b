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

__all__ = [
    "FULL", "FULL_VARIANTS", "TESTING", "VARIANTS", "Config", "draw_heuristic_rewards", "draw_heuristic_stds",
    "make_figures", "max_drop", "per_replica", "plot_mechanism", "plot_sweep_curves", "score", "summary_table",
]  # fmt: skip

"""Experiment ``bound``: Theorem 1's bounds against the exact gradient on random policies."""

from rftgrad.experiments.bound.analysis import draw_bound_cloud, draw_ratio_histograms, make_figures, plot_ratios, score
from rftgrad.experiments.bound.config import FULL, TESTING, Config
from rftgrad.experiments.bound.run import run

__all__ = [
    "FULL", "TESTING", "Config", "draw_bound_cloud", "draw_ratio_histograms", "make_figures", "plot_ratios", "run",
    "score",
]  # fmt: skip

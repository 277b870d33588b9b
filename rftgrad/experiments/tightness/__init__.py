"""Experiment ``tightness``: how close can the gradient come to Theorem 1's bounds?"""

from rftgrad.experiments.tightness.analysis import draw_search, draw_witness, make_figures, plot_tightness, score
from rftgrad.experiments.tightness.config import FULL, TESTING, Config
from rftgrad.experiments.tightness.run import run, search

__all__ = [
    "FULL", "TESTING", "Config", "draw_search", "draw_witness", "make_figures", "plot_tightness", "run", "score",
    "search",
]

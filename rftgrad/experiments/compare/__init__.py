"""The ``compare`` experiment: RFT and SFT trained side by side with the batched trainer."""

from rftgrad.experiments.compare.analysis import make_figures, plot_compare, score
from rftgrad.experiments.compare.config import FULL, TESTING, Config
from rftgrad.experiments.compare.run import run

__all__ = [
    "FULL", "TESTING", "Config", "make_figures", "plot_compare", "run", "score",
]

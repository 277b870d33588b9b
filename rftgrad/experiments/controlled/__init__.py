"""The ``controlled`` experiment: RFT stalls on small-STD inputs, SFT does not (paper Section 4.2)."""

from rftgrad.experiments.controlled.analysis import (
    draw_gain_vs_std,
    draw_reward_curves,
    make_figures,
    plot_cloud,
    plot_curves_panel,
    reward_summary,
    score,
)
from rftgrad.experiments.controlled.config import FULL, FULL_VARIANTS, TESTING, VARIANTS, Config

__all__ = [
    "FULL", "FULL_VARIANTS", "TESTING", "VARIANTS", "Config", "draw_gain_vs_std", "draw_reward_curves",
    "make_figures", "plot_cloud", "plot_curves_panel", "reward_summary", "score",
]  # fmt: skip

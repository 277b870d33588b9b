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
from rftgrad.experiments.controlled.run import cloud_rows, make_task, pretrained_policies, run

__all__ = [
    "FULL", "FULL_VARIANTS", "TESTING", "VARIANTS", "Config", "cloud_rows", "draw_gain_vs_std",
    "draw_reward_curves", "make_figures", "make_task", "plot_cloud", "plot_curves_panel", "pretrained_policies",
    "reward_summary", "run", "score",
]  # fmt: skip

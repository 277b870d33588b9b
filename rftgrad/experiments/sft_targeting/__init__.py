"""Experiment ``sft_targeting``: which 1% of the inputs should a small SFT phase label? (past the paper)"""

from rftgrad.experiments.sft_targeting.analysis import (
    ENOUGH,
    budget_table,
    draw_gain_vs_budget,
    make_figures,
    score,
    seed_gains,
    smallest_enough,
)
from rftgrad.experiments.sft_targeting.config import FULL, STRATEGY_KINDS, TESTING, Config
from rftgrad.experiments.sft_targeting.run import choose, input_table, run, strategy_scores

__all__ = [
    "ENOUGH", "FULL", "STRATEGY_KINDS", "TESTING", "Config", "budget_table", "choose", "draw_gain_vs_budget",
    "input_table", "make_figures", "run", "score", "seed_gains", "smallest_enough", "strategy_scores",
]  # fmt: skip

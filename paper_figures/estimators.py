"""Today's group estimators do not escape the vanishing gradient: their expected update is ∝ p (past the paper).

Reads ``rftgrad run estimators`` (docs/paper.md §7). Left: one input, a softmax over outputs,
one correct output of probability p, reward ±1, G sampled outputs per group: the expected update
along the correct output's logit against p, log-log, for REINFORCE, RLOO, Dr. GRPO, GRPO and DAPO
(B tries of dynamic sampling); lines are closed forms, markers Monte Carlo means of the library's
own advantage code (±2 SE). Every estimator falls like p¹: dividing by the group STD rescales the
groups that carry signal but cannot revive the all-equal ones, whose share is 1 − Gp + O(p²). Only
DAPO with unlimited resampling keeps an O(1) update per kept group (dashed), paid for with about
1/p sampled outputs. Right: the same estimators (and RLOO trained on pass@k) on the controlled
sequence task (tiny transformer, exact evaluation): the expected reward of the small-STD
(modified) and the other inputs once every run has spent the same number of sampled outputs per
input (DAPO counts what dynamic sampling draws), from their pretrained start.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from rftgrad.configs import as_sets
from rftgrad.experiments.estimators import (
    TESTING,
    budget,
    curve_runs,
    draw_budget_rewards,
    draw_update_curves,
    estimator_colors,
    fit_table,
)
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.plotting import PAPER_FONT_SCALE, paper_figure, themed


def group_size_shown(updates: pd.DataFrame, run: ExperimentRun) -> int:
    """The G of the left panel: the learning curves' G when the sweep has it, else the sweep's middle G."""
    groups = sorted(int(g) for g in updates["group_size"].unique())
    wanted = int(run.setting("num_generations"))
    return wanted if wanted in groups else groups[len(groups) // 2]


@themed(PAPER_FONT_SCALE)
def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Left: ``E u`` along ``z_c`` against ``p`` at one G (closed forms, Monte Carlo, fitted powers). Right: each
    training run's exact expected reward of the modified and unmodified inputs at the common budget of sampled
    outputs per input (large markers: mean over seeds; dots: seeds; the lines start at the pretrained reward)."""
    updates: pd.DataFrame = run.tables["updates"]
    records: pd.DataFrame = run.tables["records"]
    colors = estimator_colors(updates, records)  # one colour per estimator in both panels
    fig, (left, right) = paper_figure(columns=2, height=3.4)
    draw_update_curves(left, updates, group_size_shown(updates, run), colors)
    gains = draw_budget_rewards(right, records, colors)

    sweep = list(dict.fromkeys(updates["estimator"]))
    fits = fit_table(updates).set_index(["estimator", "group_size"])
    limit = budget(records)
    pass1 = curve_runs(records)
    powers, mc = fits["power_closed_form"], fits["power_mc"]
    key = (
        f"fitted power of the expected update in p as p → 0: {powers.min():.3f}-{powers.max():.3f} (closed form), "
        f"{mc.min():.2f}-{mc.max():.2f} (Monte Carlo) over {len(sweep)} estimators × "
        f"{fits.index.get_level_values('group_size').nunique()} group sizes; at {limit:.0f} samples per input the "
        f"small-STD inputs gain {gains['modified'][pass1].min():+.2f} to {gains['modified'][pass1].max():+.2f} "
        f"(the others {gains['unmodified'][pass1].min():+.2f} to {gains['unmodified'][pass1].max():+.2f})"
    )
    return fig, key


FIGURE = PaperFigure(
    name="estimators",
    experiment="estimators",
    shows="expected update of REINFORCE, RLOO, Dr. GRPO, GRPO, DAPO against success probability p (closed form and "
    "Monte Carlo); small-STD inputs' reward under each estimator at equal sample budgets",
    paper="past the paper",
    claim="every group estimator's expected update vanishes linearly in p at fixed G (GRPO's STD normalisation "
    "included); only DAPO with unlimited resampling is O(1) per kept group, at about 1/p samples per kept group",
    draw=draw,
    # the default's 3 seeds take ~215 s on the 2-core CPU, 2 seeds 200 s (2026-12-01); 1 seed keeps the gallery
    # under 10 minutes
    quick=("seeds=1",),
    tiny=as_sets(TESTING),
    order=8,
)

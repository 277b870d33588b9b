"""Larger learning rates, higher sampling temperatures and entropy bonuses do not unstick RFT (paper Section 5.1).

Reads ``rftgrad run heuristics``: the controlled gaussian-linear task (10% of the inputs relabelled
to an answer outside the pretrained label set: small reward STD, reward -1) with the output space
widened to 10, 100 and 1,000 outputs, and exact RFT with one heuristic turned up at a time.
Left: the expected reward at T = 1 after training of the small-STD inputs (filled) and of the
other inputs (hollow), per heuristic and output-space size, RFT in red and SFT at each learning
rate in blue. Right: the mechanism, the reward STD each heuristic gives the small-STD inputs (at
the sampling temperature before training for T, the largest during training otherwise) against
the output-space size, next to the other inputs' STD.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rftgrad.configs import as_sets
from rftgrad.experiments.heuristics import (
    TESTING,
    draw_heuristic_rewards,
    draw_heuristic_stds,
    per_replica,
    summary_table,
)
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.plotting import PAPER_FONT_SCALE, paper_figure, themed


@themed(PAPER_FONT_SCALE)
def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Reward after training per heuristic; the STD each heuristic gives the small-STD inputs."""
    records = run.tables["records"]
    table = summary_table(per_replica(run.tables))
    sizes = sorted(int(size) for size in table["num_outputs"].unique())
    fig, (reward_ax, std_ax) = paper_figure(columns=2, height=3.4)
    draw_heuristic_rewards(reward_ax, table, sizes)
    draw_heuristic_stds(std_ax, table, records, float(run.setting("std_threshold")))

    rft, sft = table[table["objective"] == "RFT"], table[table["objective"] == "SFT"]
    hot = rft[rft["sweep"] == "temperature"]
    hottest = hot[np.isclose(hot["setting"], hot["setting"].max())].set_index("num_outputs")["modified_std_start"]
    key = (
        f"small-STD inputs after RFT, best of every heuristic: {rft['modified_end_t1'].max():+.3f} "
        f"(C = {sizes[0]}-{sizes[-1]}; SFT {sft['modified_end_t1'].min():+.2f} to "
        f"{sft['modified_end_t1'].max():+.2f}); "
        f"T = {hot['setting'].max():g} lifts their STD to {hottest.loc[sizes[0]]:.3f} at C = {sizes[0]}, "
        f"{hottest.loc[sizes[-1]]:.4f} at C = {sizes[-1]}"
    )
    return fig, key


FIGURE = PaperFigure(
    name="heuristics",
    experiment="heuristics",
    variant="gaussian-linear",
    shows="small-STD inputs' reward after RFT with a larger lr, higher temperature or entropy bonus (10-1,000 "
    "outputs), and the reward STD each heuristic gives them",
    paper="Section 5.1",
    claim="common heuristics leave the small-STD inputs stuck while SFT fits them; a higher temperature raises "
    "their STD only a little, less the larger the output space",
    draw=draw,
    tiny=as_sets(TESTING),
    order=6,
)

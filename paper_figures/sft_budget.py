"""A short SFT phase on a few inputs unsticks RFT (paper Section 5.2).

Reads ``rftgrad run sft_budget``: Gaussian clusters whose first classes share a direction
and must all answer one label the pretrained policy gives probability about 0 (the small-STD
family, reward about -1). Left: the family's expected reward over training for RFT alone
(red), full SFT + RFT (blue), and SFT on 1% of the inputs for 10 steps then RFT, one line
per seed (a 1% subset holds a handful of family inputs, or none). Right: the reward gain on
all inputs after RFT as a share of the gain of full SFT + RFT, against the SFT work (share of
inputs x SFT steps, log scale), one line per share of inputs the SFT phase sees (mean over
seeds); RFT alone is the red dashed line, full SFT + RFT the blue square.
"""

from __future__ import annotations

from typing import Any

from rftgrad.configs import as_sets
from rftgrad.experiments.sft_budget import ENOUGH, TESTING, arm_table, draw_family_curves, draw_gain_vs_cost, percent
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.plotting import PAPER_FONT_SCALE, paper_figure, themed


@themed(PAPER_FONT_SCALE)
def draw(run: ExperimentRun) -> tuple[Any, str]:
    """The family's reward per seed for a small SFT budget; the gain over the whole SFT grid."""
    records = run.tables["records"]
    table = arm_table(records)
    fig, (curve_ax, gain_ax) = paper_figure(columns=2, height=3.2)
    shown = draw_family_curves(curve_ax, records, table, run.tables.get("sft_subsets"))
    draw_gain_vs_cost(gain_ax, table)

    row = table.set_index("arm").loc[shown]
    key = (
        f"small-STD family's reward change: RFT alone {table.iloc[0]['small_std_change']:+.3f}, SFT on "
        f"{percent(row['fraction'])} x {int(row['sft_steps'])} steps then RFT {row['small_std_change']:+.2f} "
        f"({row['gain']:.0%} of full SFT + RFT's gain on all inputs)"
    )
    cheapest = run.score.get("cheapest_enough")
    if cheapest:
        key += f"; cheapest SFT reaching {ENOUGH:.0%}: {percent(cheapest['fraction'])} x {cheapest['sft_steps']} steps"
    return fig, key


FIGURE = PaperFigure(
    name="sft_budget",
    experiment="sft_budget",
    shows="small-STD family's reward under RFT alone, full SFT + RFT, and SFT on 1% of inputs then RFT; "
    "gain over the SFT budget grid",
    paper="Section 5.2",
    claim="a few SFT steps on as little as 1% of the inputs lift RFT out of the stall and recover most of "
    "the gain of full SFT + RFT",
    draw=draw,
    tiny=as_sets(TESTING),
    order=7,
)

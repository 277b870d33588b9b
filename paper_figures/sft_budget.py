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

import numpy as np
import pandas as pd

from rftgrad.experiments.curves import select
from rftgrad.experiments.sft_budget.analysis import ENOUGH, arm_table
from rftgrad.experiments.sft_budget.config import TESTING
from rftgrad.experiments.style import COLORS, palette, paper_figure
from rftgrad.gallery import ExperimentRun, PaperFigure, as_sets

#: the SFT phase the left panel follows per seed: this share of the inputs for this many steps (or the nearest).
SHOWN_FRACTION, SHOWN_STEPS = 0.01, 10
#: line style of each seed of that arm.
SEED_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))


def fraction_colors(fractions: list[float]) -> dict[float, Any]:
    """A colour per share of inputs in the SFT phase, skipping the palette's blue (SFT's colour)."""
    colors = palette(["skipped", *fractions])
    return {fraction: colors[fraction] for fraction in fractions}


def percent(fraction: float) -> str:
    """``0.01`` -> ``"1%"``."""
    return f"{100 * fraction:g}%"


def family_curves(ax: Any, records: pd.DataFrame, table: pd.DataFrame, subsets: pd.DataFrame | None) -> str:  # noqa: ANN401
    """The small-STD family's reward over steps, per seed for a small SFT budget; returns that arm."""
    rows = select(records, "reward_mean", "train", "small_std")
    grid = table[table["role"] == "grid"]
    distance = (np.log(grid["fraction"] / SHOWN_FRACTION).abs(), np.log(grid["sft_steps"] / SHOWN_STEPS).abs())
    chosen = grid.loc[(distance[0] * 100 + distance[1]).idxmin()]
    rft_alone, reference = table.iloc[0], table.iloc[-1]

    mean = rows[rows["arm"] == rft_alone["arm"]].groupby("step")["value"].mean()
    ax.plot(mean.index, mean.to_numpy(), color=COLORS["RFT"], lw=2.5, label="RFT alone (mean)")
    end = float(reference["end_small_std"])
    label = f"full SFT ({int(reference['sft_steps'])} steps) + RFT, end: {end:+.2f}"
    ax.axhline(end, color=COLORS["SFT"], lw=1.5, ls="--", label=label)

    arm_rows = rows[rows["arm"] == chosen["arm"]]
    color = fraction_colors(sorted(grid["fraction"].unique()))[chosen["fraction"]]
    for replica in sorted(arm_rows["replica"].unique()):
        line = arm_rows[arm_rows["replica"] == replica].sort_values("step")
        label = f"seed {replica}"
        if subsets is not None:
            held = subsets[(subsets["fraction"] == chosen["fraction"]) & (subsets["replica"] == replica)]
            if not held.empty:
                count = int(held["family_inputs"].iloc[0])
                label += f": {count} family input{'s' if count != 1 else ''} in SFT"
        style = SEED_STYLES[replica % len(SEED_STYLES)]
        ax.plot(line["step"], line["value"], color=color, lw=1.5, ls=style, label=label)
    ax.axvline(chosen["sft_steps"], color="0.4", lw=0.8, ls=":")
    ax.set(
        xlabel="training step (SFT phase, then RFT)",
        ylabel="expected reward, small-STD family",
        ylim=(-1.08, 1.08),
        title=f"SFT {int(chosen['sft_steps'])} steps on {percent(chosen['fraction'])} of inputs, then RFT",
    )
    ax.legend(fontsize=7, loc="center right")
    return str(chosen["arm"])


def gain_panel(ax: Any, table: pd.DataFrame) -> None:  # noqa: ANN401 - a matplotlib Axes
    """Share of full SFT + RFT's gain against the SFT work, one line per share of inputs in the SFT phase."""
    grid = table[table["role"] == "grid"]
    fractions = sorted(grid["fraction"].unique())
    colors = fraction_colors(fractions)
    for fraction in fractions:
        line = grid[grid["fraction"] == fraction].sort_values("sft_steps")
        ax.plot(
            line["sft_cost"],
            line["gain"],
            "o-",
            color=colors[fraction],
            label=f"SFT on {percent(fraction)}" + (" (numbers: steps)" if fraction == fractions[0] else ""),
        )
    for row in grid[grid["fraction"] == fractions[0]].itertuples():  # the SFT steps of each point
        ax.annotate(f"{row.sft_steps}", (row.sft_cost, row.gain), xytext=(0, -11), textcoords="offset points",
                    ha="center", fontsize=7, color="0.25")  # fmt: skip
    reference = table.iloc[-1]
    ax.plot([reference["sft_cost"]], [1.0], "s", color=COLORS["SFT"], ms=7,
            label=f"full SFT ({int(reference['sft_steps'])} steps) + RFT")  # fmt: skip
    rft_alone = float(table.iloc[0]["gain"])
    ax.axhline(rft_alone, color=COLORS["RFT"], ls="--", lw=1.5, label=f"RFT alone ({rft_alone:.2f})")
    ax.axhline(ENOUGH, color="0.4", ls=":", lw=0.9)
    ax.text(reference["sft_cost"], ENOUGH - 0.008, f"{ENOUGH:.0%}", fontsize=7, color="0.3", va="top", ha="right")
    ax.set(
        xscale="log",
        xlabel="SFT work before RFT (share of inputs x steps)",
        ylabel="share of full SFT + RFT's gain",
        title="reward gain on all inputs, after RFT",
    )
    ax.set_ylim(min(grid["gain"].min(), rft_alone) - 0.06, 1.03)
    ax.legend(fontsize=7, loc="lower right")


def draw(run: ExperimentRun) -> tuple[Any, str]:
    """The family's reward per seed for a small SFT budget; the gain over the whole SFT grid."""
    records = run.tables["records"]
    table = arm_table(records)
    fig, (curve_ax, gain_ax) = paper_figure(columns=2, height=3.2)
    shown = family_curves(curve_ax, records, table, run.tables.get("sft_subsets"))
    gain_panel(gain_ax, table)

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

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
import pandas as pd

from rftgrad.experiments.curves import select
from rftgrad.experiments.heuristics.analysis import per_replica, summary_table
from rftgrad.experiments.heuristics.config import TESTING
from rftgrad.experiments.style import COLORS, palette, paper_figure
from rftgrad.gallery import ExperimentRun, PaperFigure, as_sets

#: marker of each output-space size (in increasing order).
SIZE_MARKERS = ("o", "s", "^", "D", "v")
#: short names of the swept fields.
SWEEP_NAMES = {"lr": "lr", "temperature": "T", "entropy_coef": "β"}


def setting_label(sweep: str, value: float, baseline: float) -> str:
    """``lr x10``, ``T = 2``, ``β = 0.1``: a swept value as the heuristic it turns up."""
    if sweep == "lr":
        return f"lr x{value / baseline:g}"
    return f"{SWEEP_NAMES[sweep]} = {value:g}"


def rows_to_show(table: pd.DataFrame) -> list[tuple[str, str, float]]:
    """(label, objective, setting): the baseline, each heuristic turned up, then SFT at each learning rate."""
    rft, sft = table[table["objective"] == "RFT"], table[table["objective"] == "SFT"]
    lrs = sorted(rft[rft["sweep"] == "lr"]["setting"].unique())
    shown: list[tuple[str, str, float]] = [("RFT, no heuristic", "lr", lrs[0])]
    for sweep in ("lr", "temperature", "entropy_coef"):
        values = sorted(rft[rft["sweep"] == sweep]["setting"].unique())
        shown += [(f"RFT, {setting_label(sweep, v, values[0])}", sweep, v) for v in values[1:]]
    shown += [(f"SFT, lr x{v / lrs[0]:g}", "sft", v) for v in sorted(sft["setting"].unique())]
    return shown


def reward_panel(ax: Any, table: pd.DataFrame, sizes: list[int]) -> None:  # noqa: ANN401 - a matplotlib Axes
    """Dot plot: per heuristic (rows), the small-STD (filled) and other (hollow) inputs' reward at T = 1."""
    shown = rows_to_show(table)
    offsets = np.linspace(-0.22, 0.22, len(sizes)) if len(sizes) > 1 else np.zeros(1)
    for position, (_, sweep, value) in enumerate(shown):
        objective = "SFT" if sweep == "sft" else "RFT"
        part = table[(table["objective"] == objective) & (table["sweep"] == ("lr" if sweep == "sft" else sweep))]
        part = part[np.isclose(part["setting"], value)].set_index("num_outputs")
        color = COLORS[objective]
        for size, offset, marker in zip(sizes, offsets, SIZE_MARKERS, strict=False):
            if size not in part.index:
                continue
            y = position + offset
            ax.scatter(part.loc[size, "modified_end_t1"], y, marker=marker, s=22, color=color, lw=0, zorder=6)
            ax.scatter(part.loc[size, "unmodified_end_t1"], y, marker=marker, s=22, facecolors="none",
                       edgecolors=color, lw=0.9, zorder=6)  # fmt: skip
    ax.set_yticks(range(len(shown)), [label for label, _, _ in shown], fontsize=8)
    for tick, (_, sweep, _) in zip(ax.get_yticklabels(), shown, strict=True):
        tick.set_color(COLORS["SFT" if sweep == "sft" else "RFT"])
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlim(-1.15, 1.15)
    ax.set(xlabel="expected reward after training (at T = 1)", title="reward after training")
    handles = [
        ax.scatter([], [], marker=marker, s=22, color="0.35", lw=0, label=f"{size:,} outputs")
        for size, marker in zip(sizes, SIZE_MARKERS, strict=False)
    ]
    handles.append(ax.scatter([], [], marker="o", s=22, color="0.35", lw=0, label="filled: small-STD inputs"))
    handles.append(
        ax.scatter([], [], marker="o", s=22, facecolors="none", edgecolors="0.35", label="hollow: other inputs")
    )
    ax.legend(handles=handles, fontsize=7, loc="center", framealpha=0.9)


def std_panel(ax: Any, table: pd.DataFrame, records: pd.DataFrame, threshold: float) -> None:  # noqa: ANN401
    """Reward STD of the small-STD inputs each heuristic gives, against the output-space size (log-log)."""
    rft = table[table["objective"] == "RFT"].copy()
    rft["std"] = rft["modified_std_start"].where(rft["sweep"] == "temperature", rft["modified_std_max"])
    baseline_lr = rft[rft["sweep"] == "lr"]["setting"].min()
    baseline = rft[(rft["sweep"] == "lr") & np.isclose(rft["setting"], baseline_lr)].set_index("num_outputs")["std"]
    lines: dict[str, pd.Series] = {}
    same: list[str] = []
    for sweep in ("lr", "temperature", "entropy_coef"):
        values = sorted(rft[rft["sweep"] == sweep]["setting"].unique())
        for value in values[1:]:
            line = rft[(rft["sweep"] == sweep) & np.isclose(rft["setting"], value)].set_index("num_outputs")["std"]
            label = setting_label(sweep, value, values[0])
            if np.allclose(line.reindex(baseline.index), baseline, rtol=0.02):
                same.append(label)
            else:
                lines[label] = line
    colors = palette(["skipped", "none", *lines])  # the palette's first colour is SFT's blue
    pairs = [", ".join(same[i : i + 2]) for i in range(0, len(same), 2)]
    none_label = "no heuristic" + ("\n(same: " + ",\n".join(pairs) + ")" if same else "")
    ax.plot(baseline.index, baseline.to_numpy(), "o-", color=colors["none"], lw=1.5, label=none_label)
    for label, line in lines.items():
        ax.plot(line.index, line.to_numpy(), "o-", color=colors[label], lw=1.5, label=label)

    others = select(records, "reward_std", "train", "unmodified")
    others = others[(others["step"] == 0) & (others["sweep"] == "lr")].groupby("num_outputs")["value"].mean()
    ax.plot(others.index, others.to_numpy(), "k--", lw=1, label="other inputs (T = 1)")
    ax.axhline(threshold, color="0.4", ls=":", lw=0.9)
    ax.text(others.index.min(), threshold * 1.15, f"stall threshold {threshold:g}", fontsize=7, color="0.3")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="output-space size (log scale)",
        ylabel="reward STD of the small-STD inputs",
        title="what each heuristic does to their STD",
    )
    low = min(float(baseline.min()), *(float(line.min()) for line in lines.values()))
    ax.set_ylim(low / 100, 3.0)
    ax.legend(fontsize=7, loc="lower left")


def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Reward after training per heuristic; the STD each heuristic gives the small-STD inputs."""
    records = run.tables["records"]
    table = summary_table(per_replica(run.tables))
    sizes = sorted(int(size) for size in table["num_outputs"].unique())
    fig, (reward_ax, std_ax) = paper_figure(columns=2, height=3.4)
    reward_panel(reward_ax, table, sizes)
    std_panel(std_ax, table, records, float(run.config.get("std_threshold", 0.1)))

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

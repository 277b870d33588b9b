"""Analysis of ``sft_budget``: how little SFT does RFT need to get unstuck?

Per arm (mean over seeds): the expected reward at the end on all training inputs, on the
small-STD inputs (the family, ``small_std``: STD below ``std_threshold`` at the start) and
on the test split, and the share of training inputs still *stalled* right after the SFT
phase (STD below the threshold with the reward more than half its range below the best;
the trainer's ``stalled`` metric). An arm's *gain* is its final all-input reward minus the
pretrained one, relative to the gain of full SFT + RFT; its SFT *cost* is
``fraction x steps``, the SFT gradient work in passes over the training set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.finetune.config import parse_arm
from rftgrad.plotting import COLORS, figure_grid, palette, save_figure, select_records, themed

#: the share of full SFT + RFT's gain an SFT budget must reach to count as enough (the issue's 90%).
ENOUGH = 0.9


def arm_budget(arm: str) -> tuple[float, int]:
    """``(fraction, SFT steps)`` of an arm's initial SFT phase; ``(0, 0)`` for RFT alone."""
    first = parse_arm(arm)[0]
    return (first.fraction, first.steps) if first.objective == "sft" else (0.0, 0)


def end_value(records: pd.DataFrame, metric: str, split: str, group: str) -> pd.Series:
    """Arm -> mean over replicas of ``metric`` at the arm's last step."""
    rows = select_records(records, metric, split, group)
    last = rows[rows["step"] == rows.groupby("arm")["step"].transform("max")]
    return last.groupby("arm")["value"].mean()


def after_sft(records: pd.DataFrame, metric: str, group: str = "all") -> pd.Series:
    """Arm -> mean over replicas of ``metric`` (train) right after the arm's SFT phase (at the start for RFT alone)."""
    rows = select_records(records, metric, "train", group)
    first_phase = rows["arm"].map(lambda arm: parse_arm(arm)[0])
    rows = rows[rows["phase"] == first_phase.map(lambda phase: phase.label)]
    starts_with_sft = rows["arm"].map(lambda arm: parse_arm(arm)[0].objective == "sft")
    by_arm = rows.groupby("arm")["step"]
    wanted = by_arm.transform("max").where(starts_with_sft, by_arm.transform("min"))
    return rows[rows["step"] == wanted].groupby("arm")["value"].mean()


def arm_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per arm: budget, end rewards, stalled share after SFT, gain relative to full SFT + RFT."""
    arms = list(dict.fromkeys(records["arm"]))
    start = select_records(records, "reward_mean", "train", "all")
    start_value = float(start[start["step"] == 0]["value"].mean())
    start_small = select_records(records, "reward_mean", "train", "small_std")
    start_small_value = float(start_small[start_small["step"] == 0]["value"].mean())
    table = pd.DataFrame({"arm": arms})
    table["fraction"], table["sft_steps"] = zip(*table["arm"].map(arm_budget), strict=True)
    table["sft_cost"] = table["fraction"] * table["sft_steps"]
    columns = {
        "end_all": end_value(records, "reward_mean", "train", "all"),
        "end_small_std": end_value(records, "reward_mean", "train", "small_std"),
        "end_test": end_value(records, "reward_mean", "test", "all"),
        "small_std_after_sft": after_sft(records, "reward_mean", "small_std"),
        "stalled_after_sft": after_sft(records, "stalled"),
    }
    for name, values in columns.items():
        table[name] = table["arm"].map(values)
    reference = table.iloc[-1]  # full SFT + RFT (the last arm of Config.budget_arms)
    table["gain"] = (table["end_all"] - start_value) / (reference["end_all"] - start_value)
    table["small_std_change"] = table["end_small_std"] - start_small_value
    table["role"] = ["rft_alone"] + ["grid"] * (len(table) - 2) + ["full_sft_rft"]
    return table


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per-arm table, RFT alone vs SFT on the smallest fraction, the smallest budget reaching 90%."""
    table = arm_table(tables["records"])
    grid = table[table["role"] == "grid"]
    rft_alone, reference = table.iloc[0], table.iloc[-1]
    smallest = grid[grid["fraction"] == grid["fraction"].min()]
    best_small = smallest.loc[smallest["small_std_change"].idxmax()]
    enough = grid[grid["gain"] >= ENOUGH].sort_values(["sft_cost", "sft_steps"])
    cheapest = None if enough.empty else enough.iloc[0]
    summary = (
        f"small-STD inputs: RFT alone {rft_alone['small_std_change']:+.3f}, "
        f"SFT on {100 * best_small['fraction']:g}% ({int(best_small['sft_steps'])} steps) then RFT "
        f"{best_small['small_std_change']:+.3f}, full SFT + RFT {reference['small_std_change']:+.3f}; "
        + (
            f"cheapest SFT reaching {ENOUGH:.0%} of full SFT + RFT's gain: {100 * cheapest['fraction']:g}% x "
            f"{int(cheapest['sft_steps'])} steps"
            if cheapest is not None
            else f"no SFT budget of the grid reached {ENOUGH:.0%} of full SFT + RFT's gain"
        )
    )
    return {
        "arms": table.to_dict(orient="records"),
        "rft_alone_small_std_change": float(rft_alone["small_std_change"]),
        "smallest_fraction": float(best_small["fraction"]),
        "smallest_fraction_small_std_change": {
            str(int(r.sft_steps)): float(r.small_std_change) for r in smallest.itertuples()
        },
        "full_sft_rft_small_std_change": float(reference["small_std_change"]),
        "cheapest_enough": None
        if cheapest is None
        else {
            "fraction": float(cheapest["fraction"]),
            "sft_steps": int(cheapest["sft_steps"]),
            "gain": float(cheapest["gain"]),
        },  # fmt: skip
        "family_inputs_in_sft": subsets_summary(tables["sft_subsets"]) if "sft_subsets" in tables else {},
        "summary": summary,
    }


def subsets_summary(subsets: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per SFT fraction: the mean number of family inputs in the SFT subset and the share of seeds with none."""
    out = {}
    for fraction, rows in subsets.groupby("fraction"):
        out[f"{fraction:g}"] = {
            "inputs": float(rows["inputs"].mean()),
            "family_inputs": float(rows["family_inputs"].mean()),
            "seeds_without_family": float((rows["family_inputs"] == 0).mean()),
        }
    return out


def heatmap(ax: Any, grid: pd.DataFrame, column: str, title: str, vmin: float, vmax: float, cmap: str) -> None:  # noqa: ANN401
    """Fraction (rows) x SFT steps (columns) heatmap of ``column`` with the values written in."""
    import seaborn as sns

    pivot = grid.pivot_table(index="fraction", columns="sft_steps", values=column)
    pivot.index = [f"{100 * f:g}%" for f in pivot.index]
    sns.heatmap(pivot, ax=ax, annot=True, fmt=".2f", vmin=vmin, vmax=vmax, cmap=cmap, cbar=False, annot_kws={"size": 7})
    ax.set(title=title, xlabel="SFT steps", ylabel="share of inputs in SFT")


@themed()
def plot_heatmaps(table: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Final reward (all inputs, small-STD family), gain vs full SFT + RFT, stalled share after SFT."""
    grid = table[table["role"] == "grid"]
    before, after = table.iloc[0], table.iloc[-1]  # RFT alone, full SFT + RFT
    fig, axes, _ = figure_grid(4, [0], panel_size=3.4)
    title = f"final reward, all inputs\n(RFT alone {before['end_all']:+.2f}, full SFT + RFT {after['end_all']:+.2f})"
    heatmap(axes[0], grid, "end_all", title, -1, 1, "RdBu")
    title = (
        f"final reward, small-STD family\n(RFT alone {before['end_small_std']:+.2f}, full SFT + RFT "
        f"{after['end_small_std']:+.2f})"
    )
    heatmap(axes[1], grid, "end_small_std", title, -1, 1, "RdBu")
    heatmap(axes[2], grid, "gain", f"gain / gain of full SFT + RFT\n(≥ {ENOUGH:.0%}: enough)", 0, 1, "viridis")
    stalled_before = float(before["stalled_after_sft"])
    title = f"share of inputs stalled after SFT\n(before: {stalled_before:.2f})"
    heatmap(axes[3], grid, "stalled_after_sft", title, 0, max(0.01, stalled_before), "magma_r")
    return fig


@themed()
def plot_reward_curves(records: pd.DataFrame, table: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """The small-STD family's reward over steps: RFT alone, each SFT length at the smallest fraction, full SFT + RFT."""
    grid = table[table["role"] == "grid"]
    smallest = grid[grid["fraction"] == grid["fraction"].min()]
    chosen = [table.iloc[0]["arm"], *smallest["arm"], table.iloc[-1]["arm"]]
    fig, axes, colors = figure_grid(2, chosen, panel_size=4)
    for ax, group in zip(axes, ("small_std", "all"), strict=True):
        rows = select_records(records, "reward_mean", "train", group)
        for arm in chosen:
            mean = rows[rows["arm"] == arm].groupby("step")["value"].mean()
            color = COLORS["RFT"] if arm == chosen[0] else COLORS["SFT"] if arm == chosen[-1] else colors[arm]
            ax.plot(mean.index, mean.to_numpy(), color=color, label=arm)
        ax.set(title=f"expected reward, {'small-STD family' if group == 'small_std' else 'all inputs'}",
               xlabel="step (SFT phase, then RFT)", ylabel="expected reward", ylim=(-1.05, 1.05))  # fmt: skip
        ax.legend(fontsize=6)
    return fig


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


def draw_family_curves(ax: Any, records: pd.DataFrame, table: pd.DataFrame, subsets: pd.DataFrame | None) -> str:  # noqa: ANN401
    """On ``ax``: the small-STD family's reward over steps for RFT alone (mean), full SFT + RFT (its end) and, per
    seed, the grid arm nearest ``SHOWN_FRACTION`` x ``SHOWN_STEPS`` (with the family inputs its SFT subset
    held, from ``subsets``); returns that arm."""
    rows = select_records(records, "reward_mean", "train", "small_std")
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


def draw_gain_vs_cost(ax: Any, table: pd.DataFrame) -> None:  # noqa: ANN401 - a matplotlib Axes
    """On ``ax``: share of full SFT + RFT's gain against the SFT work, one line per share of inputs in the SFT phase."""
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


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``sft_budget_heatmaps.png`` and ``sft_budget_curves.png`` (and PDFs) into ``out_dir``."""
    out = Path(out_dir)
    table = arm_table(tables["records"])
    return [
        save_figure(plot_heatmaps(table), out / "sft_budget_heatmaps"),
        save_figure(plot_reward_curves(tables["records"], table), out / "sft_budget_curves"),
    ]

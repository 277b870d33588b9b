"""Analysis of ``sft_targeting``: at equal labelling budgets, which choice of SFT inputs unsticks RFT best?

Per seed, a strategy's *gain* at a budget is its final reward on all training inputs minus
the pretrained one, relative to the same seed's gain of full SFT + RFT:
``gain = (V_end - V_start) / (V_end^full - V_start)`` (as ``sft_budget``'s). Per task, strategy
and budget: mean, standard deviation and 10-90% range over seeds of the gain and of the final
reward on all, the small-STD and the stalled inputs; the share of seeds reaching ``ENOUGH``;
and per strategy the smallest budget whose *mean* gain reaches ``ENOUGH``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.plotting import COLORS, figure_grid, save_figure, themed

#: the share of full SFT + RFT's gain a budget must reach to count as enough (as ``sft_budget``'s).
ENOUGH = 0.9
#: the budget the summary and the figure's key number quote (the paper's 1%).
QUOTED_BUDGET = 0.01
#: the lower and upper quantiles of the seed spread.
SPREAD = (0.1, 0.9)
#: reference arms in ``final`` (not strategies).
REFERENCES = ("rft_alone", "full_sft")


def seed_gains(final: pd.DataFrame) -> pd.DataFrame:
    """``final`` with ``gain`` per row: ``(reward_all - start_all) / (full SFT + RFT's reward_all - start_all)``
    of the same task and seed."""
    reference = final[final["strategy"] == "full_sft"].set_index(["task", "seed"])["reward_all"]
    full = pd.Series(list(zip(final["task"], final["seed"], strict=True))).map(reference).to_numpy()
    return final.assign(gain=(final["reward_all"] - final["start_all"]) / (full - final["start_all"]))


def budget_table(final: pd.DataFrame) -> pd.DataFrame:
    """One row per task, strategy and budget (references included): mean, std, 10% and 90% quantiles over seeds
    of ``gain``, ``reward_all``, ``reward_small_std``, ``reward_stalled``; ``share_enough`` (seeds with gain
    >= ENOUGH)."""
    rows = seed_gains(final)
    keys = ["task", "strategy", "budget"]
    grouped = rows.groupby(keys, sort=False)
    table = grouped[["count"]].first()
    for column in ("gain", "reward_all", "reward_small_std", "reward_stalled"):
        values = grouped[column]
        table[f"{column}_mean"] = values.mean()
        table[f"{column}_std"] = values.std(ddof=0)
        table[f"{column}_q10"] = values.quantile(SPREAD[0])
        table[f"{column}_q90"] = values.quantile(SPREAD[1])
    table["share_enough"] = grouped["gain"].apply(lambda gains: float((gains >= ENOUGH).mean()))
    table["seeds"] = grouped.size()
    return table.reset_index()


def smallest_enough(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Task -> strategy -> the smallest budget whose mean gain reaches ``ENOUGH`` (None if none does)."""
    out: dict[str, dict[str, float | None]] = {}
    for (task, strategy), rows in table[~table["strategy"].isin(REFERENCES)].groupby(["task", "strategy"], sort=False):
        enough = rows[rows["gain_mean"] >= ENOUGH]
        out.setdefault(task, {})[strategy] = None if enough.empty else float(enough["budget"].min())
    return out


def quoted_budget(table: pd.DataFrame, task: str) -> float:
    """The task's budget nearest ``QUOTED_BUDGET`` (in log scale)."""
    budgets = table[(table["task"] == task) & ~table["strategy"].isin(REFERENCES)]["budget"].unique()
    return float(budgets[np.abs(np.log(budgets / QUOTED_BUDGET)).argmin()])


def percent(budget: float | None) -> str:
    """``0.01`` -> ``"1%"``; None -> ``"none"``."""
    return "none" if budget is None else f"{100 * budget:g}%"


def task_summary(table: pd.DataFrame, selection: pd.DataFrame, task: str) -> dict[str, Any]:
    """One task's key numbers: per strategy at the quoted budget (gain mean, std, 10-90%, share of seeds
    reaching ENOUGH, stalled-input reward, chosen stalled inputs), the references, the smallest budgets."""
    rows = table[table["task"] == task].set_index(["strategy", "budget"])
    budget = quoted_budget(table, task)
    strategies = [s for s in dict.fromkeys(table[table["task"] == task]["strategy"]) if s not in REFERENCES]
    chosen = selection[selection["task"] == task]
    count = int(rows.loc[(strategies[0], budget), "count"])
    at = {}
    for strategy in strategies:
        row = rows.loc[(strategy, budget)]
        picked = chosen[(chosen["strategy"] == strategy) & (chosen["count"] == count)]
        at[strategy] = {
            "gain_mean": float(row["gain_mean"]), "gain_std": float(row["gain_std"]),
            "gain_q10": float(row["gain_q10"]), "gain_q90": float(row["gain_q90"]),
            "share_enough": float(row["share_enough"]), "reward_all_mean": float(row["reward_all_mean"]),
            "reward_stalled_mean": float(row["reward_stalled_mean"]),
            "reward_small_std_mean": float(row["reward_small_std_mean"]),
            "chosen_stalled_mean": float(picked["chosen_stalled"].mean()),
            "chosen_small_std_mean": float(picked["chosen_small_std"].mean()),
            "chosen_reward_mean": float(picked["chosen_reward_mean"].mean()),
        }  # fmt: skip
    references = {name: {"gain_mean": float(rows.loc[(name, b), "gain_mean"]),
                         "reward_all_mean": float(rows.loc[(name, b), "reward_all_mean"]),
                         "reward_stalled_mean": float(rows.loc[(name, b), "reward_stalled_mean"])}
                  for name, b in (("rft_alone", 0.0), ("full_sft", 1.0))}  # fmt: skip
    first = chosen.iloc[0]
    return {
        "budget": budget, "count": count, "at_budget": at, "references": references,
        "smallest_enough": smallest_enough(table).get(task, {}), "inputs": int(first["inputs"]),
        "stalled_inputs": float(chosen["stalled_inputs"].mean()), "small_std_inputs": float(
            chosen["small_std_inputs"].mean()), "flagged_inputs": float(chosen["flagged"].mean()),
        "flagged_inputs_min": int(chosen["flagged"].min()),
    }  # fmt: skip


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per task the key numbers (:func:`task_summary`), the whole budget table, and a one-line ``summary``."""
    table = budget_table(tables["final"])
    tasks = {task: task_summary(table, tables["selection"], task) for task in dict.fromkeys(table["task"])}
    parts = []
    for task, numbers in tasks.items():
        at = numbers["at_budget"]
        best = max(at, key=lambda s: at[s]["gain_mean"])
        line = ", ".join(f"{s} {v['gain_mean']:.2f} ± {v['gain_std']:.2f}" for s, v in at.items())
        enough = ", ".join(f"{s} {percent(b)}" for s, b in numbers["smallest_enough"].items())
        parts.append(
            f"{task}: gain at {percent(numbers['budget'])} ({numbers['count']} inputs): {line} "
            f"(best: {best}; RFT alone {numbers['references']['rft_alone']['gain_mean']:.2f}); smallest budget "
            f"reaching {ENOUGH:.0%}: {enough}"
        )
    return {"tasks": tasks, "budgets": table.to_dict(orient="records"), "summary": "; ".join(parts)}


#: colour, marker and line style per strategy (strategies with the same choice draw on top of each other, so each
#: has its own marker and dashes); random is black.
STRATEGY_STYLES = {
    "random": ("black", "o", "-"),
    "exact_std": ("#0072b2", "s", "--"),
    "sample_std_G4": ("#cc79a7", "v", "-"),
    "sample_std_G8": ("#d55e00", "^", "-"),
    "sample_std_G16": ("#e69f00", "<", "-"),
    "stalled_flag": ("#009e73", "D", "-."),
    "largest_gap": ("#56b4e9", "P", ":"),
}


def strategy_style(strategy: str) -> tuple[str, str, str]:
    """``(colour, marker, line style)`` of a strategy (``stalled_flag_G8`` takes ``stalled_flag``'s; other sample
    sizes take G8's)."""
    if strategy.startswith("stalled_flag"):
        return STRATEGY_STYLES["stalled_flag"]
    return STRATEGY_STYLES.get(strategy, STRATEGY_STYLES["sample_std_G8"])


def draw_gain_vs_budget(ax: Any, table: pd.DataFrame, task: str, column: str = "gain", values: bool = True) -> None:  # noqa: ANN401
    """On ``ax``: the task's mean ``column`` against the budget (log x), one line per strategy with the 10-90%
    seed range as a band; RFT alone, full SFT + RFT (their values in the labels if ``values``) and (for the
    gain) the ENOUGH line."""
    from matplotlib.ticker import FixedLocator, NullLocator

    rows = table[table["task"] == task]
    strategies = [s for s in dict.fromkeys(rows["strategy"]) if s not in REFERENCES]
    for strategy in strategies:
        line = rows[rows["strategy"] == strategy].sort_values("budget")
        color, marker, style = strategy_style(strategy)
        x = 100 * line["budget"]
        ax.plot(x, line[f"{column}_mean"], marker=marker, ls=style, ms=4, lw=1.5, color=color, label=strategy)
        ax.fill_between(x, line[f"{column}_q10"], line[f"{column}_q90"], color=color, alpha=0.1, lw=0)
    rft = float(rows[rows["strategy"] == "rft_alone"][f"{column}_mean"].iloc[0])
    ax.axhline(rft, color=COLORS["RFT"], ls="--", lw=1.2, label="RFT alone" + (f" ({rft:.2f})" if values else ""))
    full = float(rows[rows["strategy"] == "full_sft"][f"{column}_mean"].iloc[0])
    label = "full SFT + RFT" + (f" ({full:.2f})" if values else "")
    ax.axhline(full, color=COLORS["SFT"], ls="-", lw=0.8, alpha=0.6, label=label)
    budgets = sorted(100 * rows[~rows["strategy"].isin(REFERENCES)]["budget"].unique())
    if column == "gain":
        ax.axhline(ENOUGH, color="0.4", ls=":", lw=0.9)
        ax.text(budgets[-1], ENOUGH - 0.01, f"{ENOUGH:.0%}", fontsize=7, color="0.3", va="top", ha="right")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(budgets))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(budgets, [f"{b:g}%" for b in budgets])
    ax.set(xlabel="labelling budget (share of the training inputs)",
           ylabel="share of full SFT + RFT's gain" if column == "gain" else "final reward, stalled inputs")  # fmt: skip


@themed()
def plot_budgets(table: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Per task: the gain and the stalled inputs' final reward against the budget, one line per strategy."""
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes, _ = figure_grid(2 * len(tasks), [0], panel_size=3.6, columns=2)
    for index, task in enumerate(tasks):
        for ax, column in zip(axes[2 * index : 2 * index + 2], ("gain", "reward_stalled"), strict=True):
            draw_gain_vs_budget(ax, table, task, column)
            ax.set_title(f"{task} task")
            ax.legend(fontsize=6)
    return fig


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``sft_targeting_budgets.png`` (and PDF) into ``out_dir``."""
    return [save_figure(plot_budgets(budget_table(tables["final"])), Path(out_dir) / "sft_targeting_budgets")]

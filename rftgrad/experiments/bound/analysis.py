"""Analysis of ``bound``: the largest ratios per class, and ||∇V||/γ against STD (log-log).

Theorem 1 (docs/paper.md §2): ``‖∇_θ V(x)‖ ≤ γ√L·STD(x)`` (sharpened) and ``≤ 6Lγ·STD(x)^(2/3)``
(the paper's). ``plot_*`` return figures; ``draw_*`` draw one panel on a given Axes (the paper
figure composes them).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.plotting import figure_grid, palette, save_figure, themed
from rftgrad.theory.bounds import PAPER_CONSTANT
from rftgrad.theory.check import bound_summary

#: points with a numerically zero STD cannot sit on log axes; they are counted, not drawn.
MIN_STD = 1e-12
#: smaller ratios go to the histogram's first bin.
MIN_RATIO = 1e-6
BOUND_LABELS = {"sharpened": "sharpened γ√L·STD", "paper": "paper 6Lγ·STD^(2/3)"}
#: the two bounds keep one shade in both panels (reference lines, not categories of data).
BOUND_COLORS = {"sharpened": "0.1", "paper": "0.55"}


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per policy class (:func:`rftgrad.theory.check.bound_summary`): instances, largest ratio gradient /
    bound for each bound, violations; and the violations of all classes."""
    rows = tables["bound_rows"]
    result: dict[str, Any] = {}
    for summary in bound_summary(rows).drop(columns="inputs").to_dict(orient="records"):
        kind = summary.pop("kind")
        result[kind] = {name: int(v) if name in ("examples", "violations") else float(v) for name, v in summary.items()}
    result["violations"] = int(rows["violation"].sum())
    return result


@themed()
def plot_ratios(rows: pd.DataFrame) -> Any:  # noqa: ANN401 - a matplotlib Figure
    """One panel per policy class: ||∇V||/γ against STD, coloured by L, with each L's
    sharpened bound sqrt(L)·STD (solid) and the paper's 6L·STD^(2/3) (dashed)."""
    kinds = sorted(rows["kind"].unique())
    fig, axes, colors = figure_grid(len(kinds), sorted(rows["length"].unique()))
    std_grid = np.logspace(-9, 0, 100)
    for ax, kind in zip(axes, kinds, strict=False):
        part = rows[rows["kind"] == kind]
        shown = part[part["reward_std"] > MIN_STD]
        for length, group in shown.groupby("length"):
            color = colors[length]
            ax.scatter(
                group["reward_std"],
                group["grad_norm"] / group["gamma"],
                s=6,
                alpha=0.5,
                color=color,
                label=f"L={length}",
            )
            ax.plot(std_grid, np.sqrt(length) * std_grid, color=color, lw=1)
            ax.plot(std_grid, PAPER_CONSTANT * length * std_grid ** (2 / 3), color=color, lw=1, ls="--")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="reward STD",
            ylabel="‖∇V‖ / γ",
            ylim=(1e-12, 1e2),
            title=f"{kind}: {part['example'].nunique()} policies, max ratio {part['ratio_sharpened'].max():.2f} "
            f"({len(part) - len(shown)} with STD=0)",
        )
        ax.legend(fontsize=7, loc="lower right", ncols=2)
    fig.suptitle("Exact gradient vs Theorem 1: sharpened γ√L·STD (solid), paper 6Lγ·STD^(2/3) (dashed)")
    return fig


def draw_bound_cloud(ax: Any, rows: pd.DataFrame) -> None:  # noqa: ANN401 - a matplotlib Axes
    """On ``ax``: each input's ``‖∇V‖/(γ√L)`` against its reward STD (log-log), coloured by policy class, with the
    sharpened bound ``y = STD`` and the paper's bound divided by ``γ√L``, ``6√L·STD^(2/3)``, drawn at L = 1
    (its lowest). Inputs with STD below ``MIN_STD`` are counted in the title, not drawn."""
    kinds = sorted(rows["kind"].unique())
    colors = palette(kinds)
    shown = rows[rows["reward_std"] > MIN_STD]
    for kind in kinds:
        part = shown[shown["kind"] == kind]
        scaled = part["grad_norm"] / (part["gamma"] * np.sqrt(part["length"]))
        label = f"{kind} ({rows.loc[rows['kind'] == kind, 'example'].nunique()} policies)"
        ax.scatter(part["reward_std"], scaled, s=6, alpha=0.5, lw=0, color=colors[kind], label=label)
    grid = np.logspace(math.log10(max(shown["reward_std"].min(), MIN_STD)), 0, 100)
    ax.plot(grid, grid, color=BOUND_COLORS["sharpened"], lw=1.2, label="sharpened bound: STD")
    paper_line = PAPER_CONSTANT * grid ** (2 / 3)
    ax.plot(grid, paper_line, color=BOUND_COLORS["paper"], lw=1.2, ls="--", label="paper's, L = 1: 6·STD^(2/3)")
    ax.set(xscale="log", yscale="log", xlabel="reward STD of the input", ylabel="‖∇_θ V‖ / (γ√L)")
    ax.set_title(f"exact ‖∇V‖ of {len(shown):,} inputs (+{len(rows) - len(shown)} with STD = 0)")
    ax.legend(fontsize=7, loc="lower right", markerscale=2)


def draw_ratio_histograms(ax: Any, rows: pd.DataFrame) -> None:  # noqa: ANN401 - a matplotlib Axes
    """On ``ax``: histograms (log x) of ``‖∇V‖ / (γ√L·STD)`` and ``‖∇V‖ / (6Lγ·STD^(2/3))`` per input (STD
    above ``MIN_STD``), with the bound (ratio 1) and the √L witness's 1/√2."""
    shown = rows[rows["reward_std"] > MIN_STD]
    bins = np.logspace(math.log10(MIN_RATIO), 0.1, 50)
    for name, label in BOUND_LABELS.items():
        values = shown[f"ratio_{name}"]
        ax.hist(values.clip(lower=MIN_RATIO), bins=bins, color=BOUND_COLORS[name], alpha=0.6,
                label=f"{label}: max {values.max():.3f}")  # fmt: skip
    ax.axvline(1.0, color="black", lw=1.5, label="bound (ratio 1)")
    ax.axvline(1 / math.sqrt(2), color="black", lw=0.8, ls=":", label="1/√2 (attained by the √L witness)")
    ax.set(xscale="log", xlabel="‖∇_θ V‖ / bound (below 1e-6: first bin)", ylabel="inputs")
    ax.set_title("ratio to each bound, per input")
    ax.legend(fontsize=7, loc="upper left")


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``bound_ratios.png`` (and .pdf) into ``out_dir``."""
    return [save_figure(plot_ratios(tables["bound_rows"]), Path(out_dir) / "bound_ratios")]

"""Analysis of ``bound``: the largest ratios per class, and ||∇V||/γ against STD (log-log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.experiments.base import save_figure
from rftgrad.experiments.style import figure_grid
from rftgrad.theory.bounds import BOUNDS, PAPER_CONSTANT

#: points with a numerically zero STD cannot sit on log axes; they are counted, not drawn.
MIN_STD = 1e-12


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per policy class: instances, largest ratio gradient / bound for each bound, violations."""
    rows = tables["bound_rows"]
    result: dict[str, Any] = {}
    for kind, part in rows.groupby("kind"):
        result[str(kind)] = {
            "examples": int(part["example"].nunique()),
            **{f"max_ratio_{name}": float(part[f"ratio_{name}"].max()) for name in BOUNDS},
            "violations": int(part["violation"].sum()),
        }
    result["violations"] = int(rows["violation"].sum())
    return result


def plot_ratios(rows: pd.DataFrame) -> Any:  # noqa: ANN401 - a matplotlib Figure
    """One panel per policy class: ||∇V||/γ against STD, coloured by L, with each L's
    sharpened bound sqrt(L)·STD (solid) and the paper's 6L·STD^(2/3) (dashed)."""
    kinds = sorted(rows["kind"].unique())
    fig, axes, palette = figure_grid(len(kinds), sorted(rows["length"].unique()))
    std_grid = np.logspace(-9, 0, 100)
    for ax, kind in zip(axes, kinds, strict=False):
        part = rows[rows["kind"] == kind]
        shown = part[part["reward_std"] > MIN_STD]
        for length, group in shown.groupby("length"):
            color = palette[length]
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


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``bound_ratios.png`` (and .pdf) into ``out_dir``."""
    return [save_figure(plot_ratios(tables["bound_rows"]), Path(out_dir) / "bound_ratios")]

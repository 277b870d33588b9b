"""Analysis of ``tightness``: the witness against sqrt(2Lp(1-p)), and the adversarial search."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.experiments.base import save_figure
from rftgrad.experiments.style import figure_grid


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Largest |witness - closed form|, the witness at p = 1/2 vs sqrt(L/2), best search ratio per class."""
    witness, best = tables["witness"], tables["search_best"]
    half = witness[witness["prob"] == 0.5]
    return {
        "witness_max_abs_error": float((witness["ratio_gamma_std"] - witness["expected"]).abs().max()),
        "witness_half_max_abs_error_vs_sqrt_L_over_2": float(
            (half["ratio_gamma_std"] - np.sqrt(half["length"] / 2)).abs().max()
        ),
        "best_sharpened_ratio": {row["kind"]: float(row["ratio_sharpened"]) for _, row in best.iterrows()},
        "violations": int(best["violation"].sum()),
    }


def plot_tightness(witness: pd.DataFrame, trajectory: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Left: the witness's ‖∇V‖/(γ·STD) against L with sqrt(2Lp(1-p)). Right: the best ratio
    ‖∇V‖/(γ√L·STD) found so far by the search, per policy class, against step."""
    fig, (left, right), palette = figure_grid(2, sorted(witness["prob"].unique()))
    lengths = np.linspace(1, witness["length"].max(), 100)
    for prob, group in witness.groupby("prob"):
        left.plot(lengths, np.sqrt(2 * lengths * prob * (1 - prob)), color=palette[prob], lw=1)
        left.scatter(group["length"], group["ratio_gamma_std"], color=palette[prob], s=18, label=f"p = {prob:g}")
    left.plot(lengths, np.sqrt(lengths), color="black", ls="--", lw=1, label="γ√L·STD (sharpened)")
    left.set(xlabel="output length L", ylabel="‖∇V‖ / (γ·STD)", title="witness: points exact, lines sqrt(2Lp(1-p))")
    left.legend(fontsize=8)
    best_so_far = trajectory.groupby(["kind", "step"])["ratio_sharpened"].max().groupby(level="kind").cummax()
    for kind, series in best_so_far.groupby(level="kind"):
        right.plot(series.index.get_level_values("step"), series.to_numpy(), label=kind)
    right.axhline(1 / math.sqrt(2), color="black", ls="--", lw=1, label="1/√2 (tight bound)")
    right.set(
        xlabel="Adam step",
        ylabel="best ‖∇V‖ / (γ√L·STD)",
        ylim=(0, 1.05),
        title="adversarial search over parameters and rewards",
    )
    right.legend(fontsize=8)
    return fig


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``tightness.png`` (and .pdf) into ``out_dir``."""
    return [save_figure(plot_tightness(tables["witness"], tables["search_trajectory"]), Path(out_dir) / "tightness")]

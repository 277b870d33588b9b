"""Analysis of ``tightness``: the witness against sqrt(2Lp(1-p)), and the adversarial search."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.plotting import figure_grid, palette, save_figure, themed


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Largest ``|witness - closed form|``, the witness at p = 1/2 vs sqrt(L/2), best search ratio per class."""
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


#: markers of the witness probabilities, in order.
MARKERS = ("o", "s", "^", "D", "v")


def draw_witness(ax: Any, witness: pd.DataFrame) -> None:  # noqa: ANN401 - a matplotlib Axes
    """On ``ax``, log-log: the witness's exact ``‖∇V‖/(γ·STD)`` against L (points) on its closed form
    ``sqrt(2Lp(1-p))`` (lines, one shade per p), and the sharpened bound's ``√L`` (black; docs/paper.md §2)."""
    import seaborn as sns  # for its palettes only
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    probs = sorted(witness["prob"].unique(), reverse=True)
    shades = dict(zip(probs, sns.color_palette("crest_r", len(probs)), strict=True))  # p is ordered: one hue
    lengths = np.geomspace(1, witness["length"].max(), 100)
    ax.plot(lengths, np.sqrt(lengths), color="black", lw=1.2, label="sharpened bound: √L")
    for marker, prob in zip(MARKERS, probs, strict=False):
        points, color = witness[witness["prob"] == prob], shades[prob]
        ax.plot(lengths, np.sqrt(2 * lengths * prob * (1 - prob)), color=color, lw=1)
        ax.scatter(points["length"], points["ratio_gamma_std"], color=color, marker=marker, s=20, zorder=2,
                   label=f"p = {prob:g}: √(2Lp(1−p))")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="output length L", ylabel="‖∇_θ V‖ / (γ·STD)")
    ticks = [length for length in (1, 2, 4, 8, 16, 32) if length <= witness["length"].max()]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks([0.25, 0.5, 1, 2, 4, 8])
    ax.set_ylim(0.8 * witness["ratio_gamma_std"].min(), 1.2 * math.sqrt(witness["length"].max()))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_title("√L witness: points exact, lines closed form")
    ax.legend(fontsize=7, loc="upper left")


def draw_search(ax: Any, trajectory: pd.DataFrame, best: pd.DataFrame) -> None:  # noqa: ANN401 - a matplotlib Axes
    """On ``ax``: the best ``‖∇V‖/(γ√L·STD)`` found so far by the adversarial search per policy class against
    the Adam step; the legend gives the best restart's ratio re-evaluated exactly at the end (``best``)."""
    kinds = sorted(best["kind"].unique())
    colors = palette(kinds)  # the policy classes keep the colours of the bound figure
    best_so_far = trajectory.groupby(["kind", "step"])["ratio_sharpened"].max().groupby(level="kind").cummax()
    for kind in kinds:
        series = best_so_far.loc[kind]
        verified = best[best["kind"] == kind].iloc[0]
        label = f"{kind} (L = {int(verified['length'])}): {verified['ratio_sharpened']:.3f}"
        ax.plot(series.index, series.to_numpy(), color=colors[kind], lw=1.5, label=label)
    ax.axhline(1.0, color="black", lw=1.5)
    ax.text(0.02, 1.0, "bound γ√L·STD", transform=ax.get_yaxis_transform(), va="bottom", fontsize=7)
    ax.axhline(1 / math.sqrt(2), color="black", lw=0.8, ls=":")
    ax.text(0.98, 1 / math.sqrt(2), "1/√2: the witness", transform=ax.get_yaxis_transform(), va="bottom",
            ha="right", fontsize=7)  # fmt: skip
    restarts, vocab = int(best["restarts"].iloc[0]), int(best["vocab_size"].iloc[0])
    ax.set(xlabel="Adam step", ylabel="best ‖∇_θ V‖ / (γ√L·STD)", ylim=(0, 1.1))
    ax.set_title(f"adversarial search, V = {vocab}, {restarts} restarts")
    ax.legend(fontsize=7, loc="lower right", title="class: verified best", title_fontsize=7)


@themed()
def plot_tightness(witness: pd.DataFrame, trajectory: pd.DataFrame, best: pd.DataFrame) -> Any:  # noqa: ANN401
    """Left: :func:`draw_witness`. Right: :func:`draw_search`."""
    fig, (left, right), _ = figure_grid(2, [])
    draw_witness(left, witness)
    draw_search(right, trajectory, best)
    return fig


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``tightness.png`` (and .pdf) into ``out_dir``."""
    figure = plot_tightness(tables["witness"], tables["search_trajectory"], tables["search_best"])
    return [save_figure(figure, Path(out_dir) / "tightness")]

"""Analysis of ``compare``: final reward per arm and input group; learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from rftgrad.plotting import draw_curves, figure_grid, final_values, save_figure, select_records, themed

GROUPS = ("all", "small_std", "large_std")


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per metric (reward_mean, accuracy, grad_norm) and group: arm -> final mean over replicas (train split)."""
    records = tables["records"]
    return {
        metric: {group: final_values(records, metric, "train", group) for group in GROUPS}
        for metric in ("reward_mean", "accuracy", "grad_norm")
        if not select_records(records, metric).empty
    }


@themed()
def plot_compare(records: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Expected reward, gradient norm and target probability against step, per arm and STD group;
    the fraction of all-equal sampled groups when a sampled estimator ran."""
    sampled = not select_records(records, "frac_reward_zero_std", "batch").empty
    fig, axes, colors = figure_grid(4 if sampled else 3, sorted(records["arm"].unique()))
    draw_curves(axes[0], records, "reward_mean", GROUPS, colors=colors)
    axes[0].set(title="expected reward V (exact), train inputs", ylim=(-1.05, 1.05))
    axes[0].legend(fontsize=7)
    draw_curves(axes[1], records, "grad_norm", ("small_std", "large_std"), colors=colors, log=True)
    axes[1].set(title="per-input ‖∇V‖ (exact)")
    draw_curves(axes[2], records, "target_prob", ("small_std", "large_std"), colors=colors, log=True)
    axes[2].set(title="probability of the target output")
    if sampled:
        draw_curves(axes[3], records, "frac_reward_zero_std", split="batch", colors=colors)
        axes[3].set(title="sampled groups with all-equal rewards", ylim=(-0.02, 1.02))
    return fig


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``compare.png`` (and .pdf) into ``out_dir``."""
    return [save_figure(plot_compare(tables["records"]), Path(out_dir) / "compare")]

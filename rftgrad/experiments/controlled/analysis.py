"""Analysis of ``controlled``: per-group curves RFT vs SFT, the before/after (mean, STD) cloud, a score.

The score holds, per arm and group, the expected reward at the start and at the end (mean
and standard deviation over seeds), and the one-line summary the paper's claim is about:
the final reward of the modified (small-STD) inputs under RFT and under SFT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.experiments.base import save_figure
from rftgrad.experiments.curves import arm_color, arm_objective, plot_curves, select
from rftgrad.experiments.style import figure_grid

GROUPS = ("modified", "unmodified")


def reward_summary(records: pd.DataFrame, group: str, split: str = "train") -> dict[str, dict[str, float]]:
    """Arm -> start / end mean and std over replicas of the group's expected reward."""
    rows = select(records, "reward_mean", split, group)
    out = {}
    for arm, table in rows.groupby("arm"):
        start = table[table["step"] == table["step"].min()]["value"]
        end = table[table["step"] == table["step"].max()]["value"]
        out[arm_objective(str(arm))] = {
            "start": float(start.mean()),
            "end": float(end.mean()),
            "end_std_over_seeds": float(end.std(ddof=1)) if len(end) > 1 else 0.0,
            "change": float(end.mean() - start.mean()),
        }
    return out


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Start/end reward per group and arm; train/test accuracy at the end; the one-line summary."""
    records = tables["records"]
    summary = {group: reward_summary(records, group) for group in GROUPS}
    accuracy = {}
    for split in sorted(set(records["split"]) - {"batch"}):
        rows = select(records, "accuracy", split, "all")
        last = rows[rows["step"] == rows.groupby("arm")["step"].transform("max")]
        accuracy[split] = {arm_objective(str(arm)): float(v) for arm, v in last.groupby("arm")["value"].mean().items()}
    modified = summary["modified"]
    line = ", ".join(f"{arm} {values['end']:+.3f}" for arm, values in modified.items())
    return {
        "reward": summary,
        "accuracy": accuracy,
        "pretraining_loss": float(tables["pretraining"]["loss"].mean()),
        "summary": f"final expected reward of the modified (small-STD) inputs: {line}",
    }


def plot_curves_panel(records: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Expected reward and gradient norm per group over training (mean and 10-90% band over
    seeds), and train / test accuracy."""
    splits = sorted(set(records["split"]) - {"batch"})
    fig, axes, palette = figure_grid(3, sorted(records["arm"].unique()))
    plot_curves(axes[0], records, "reward_mean", GROUPS, palette=palette)
    axes[0].set(title="expected reward (exact): modified -- vs unmodified ··", ylim=(-1.05, 1.05))
    axes[0].legend(fontsize=7)
    plot_curves(axes[1], records, "grad_norm", GROUPS, palette=palette, log=True)
    axes[1].set(title="per-input ‖∇V‖ (exact), mean over the group")
    for split, style in zip(splits, ("-", "--"), strict=False):
        table = select(records, "accuracy", split, "all").groupby(["arm", "step"])["value"].mean().reset_index()
        for arm, rows in table.groupby("arm"):
            axes[2].plot(
                rows["step"], rows["value"], ls=style, color=arm_color(str(arm), palette), label=f"{arm} · {split}"
            )
    axes[2].set(title="accuracy (most likely output is correct)", xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02))
    axes[2].legend(fontsize=7)
    return fig


def plot_cloud(cloud: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Per-input (reward STD, reward mean) before finetuning and after each arm; modified inputs in colour."""
    after = [arm for arm in cloud["arm"].unique() if arm != "pretrained"]
    fig, axes, _ = figure_grid(1 + len(after), ["modified", "unmodified"])
    colors = {"modified": "#e67e22", "unmodified": "#7f8c8d"}
    for ax, arm in zip(axes, ["pretrained", *after], strict=True):
        rows = cloud[cloud["arm"] == arm]
        for group in ("unmodified", "modified"):
            part = rows[rows["group"] == group]
            ax.scatter(part["reward_std"], part["reward_mean"], s=6, alpha=0.5, color=colors[group], label=group)
        std = np.linspace(0, 1, 200)
        ax.plot(std, np.sqrt(1 - std**2), color="black", lw=0.8, ls=":")  # binary ±1: V² + STD² = 1
        ax.plot(std, -np.sqrt(1 - std**2), color="black", lw=0.8, ls=":")
        title = "before finetuning (pretrained)" if arm == "pretrained" else f"after {arm}"
        ax.set(xlabel="reward STD", ylabel="expected reward", title=title, xlim=(-0.02, 1.02), ylim=(-1.05, 1.05))
        ax.legend(fontsize=7, loc="lower right")
    return fig


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``controlled_curves.png`` and ``controlled_cloud.png`` (and PDFs) into ``out_dir``."""
    out = Path(out_dir)
    return [
        save_figure(plot_curves_panel(tables["records"]), out / "controlled_curves"),
        save_figure(plot_cloud(tables["cloud"]), out / "controlled_cloud"),
    ]

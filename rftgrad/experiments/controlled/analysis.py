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

from rftgrad.plotting import (
    COLORS,
    arm_color,
    arm_objective,
    draw_curves,
    figure_grid,
    save_figure,
    select_records,
    themed,
)

GROUPS = ("modified", "unmodified")
#: line style of each input group in the reward panels.
GROUP_STYLE = {"modified": "-", "unmodified": ":"}


def reward_summary(records: pd.DataFrame, group: str, split: str = "train") -> dict[str, dict[str, float]]:
    """Arm -> start / end mean and std over replicas of the group's expected reward."""
    rows = select_records(records, "reward_mean", split, group)
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
        rows = select_records(records, "accuracy", split, "all")
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


def draw_reward_curves(ax: Any, records: pd.DataFrame, colors: dict[str, Any] | None = None) -> None:  # noqa: ANN401
    """On ``ax``: the expected reward (exact, train split) of the modified (solid) and unmodified (dotted)
    inputs over training, RFT red and SFT blue (mean over seeds, 10-90% band)."""
    draw_curves(ax, records, "reward_mean", GROUPS, colors=colors, styles=GROUP_STYLE,
                label=lambda arm, group: f"{arm_objective(arm)}, {group}")  # fmt: skip
    ax.set(xlabel="training step", ylabel="expected reward", ylim=(-1.05, 1.05), title="reward by input group")
    ax.legend(fontsize=7, loc="lower right")


def draw_gain_vs_std(ax: Any, cloud: pd.DataFrame) -> None:  # noqa: ANN401 - a matplotlib Axes
    """On ``ax``: each input's reward STD before training against its gain in expected reward (after - before),
    per arm (RFT red, SFT blue)."""
    before = cloud[cloud["when"] == "before"].set_index(["replica", "input"])
    for arm, after in cloud[cloud["when"] == "after"].groupby("arm"):
        after = after.set_index(["replica", "input"])
        gain = after["reward_mean"] - before["reward_mean"]
        name = arm_objective(str(arm))
        ax.scatter(before["reward_std"], gain, s=5, alpha=0.5, color=COLORS.get(name), label=name, lw=0)
    ax.set(xlabel="reward STD before training", ylabel="reward gain (after - before)", title="gain per input")
    ax.legend(fontsize=7, markerscale=2)


@themed()
def plot_curves_panel(records: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Expected reward and gradient norm per group over training (mean and 10-90% band over
    seeds), and train / test accuracy."""
    splits = sorted(set(records["split"]) - {"batch"})
    fig, axes, colors = figure_grid(3, sorted(records["arm"].unique()))
    draw_reward_curves(axes[0], records, colors)
    draw_curves(axes[1], records, "grad_norm", GROUPS, colors=colors, styles=GROUP_STYLE, log=True)
    axes[1].set(title="per-input ‖∇V‖ (exact), mean over the group")
    for split, style in zip(splits, ("-", "--"), strict=False):
        table = select_records(records, "accuracy", split, "all").groupby(["arm", "step"])["value"].mean().reset_index()
        for arm, rows in table.groupby("arm"):
            axes[2].plot(
                rows["step"], rows["value"], ls=style, color=arm_color(str(arm), colors), label=f"{arm} · {split}"
            )
    axes[2].set(title="accuracy (most likely output is correct)", xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02))
    axes[2].legend(fontsize=7)
    return fig


@themed()
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

"""Reading and plotting the trainer's long-format records (one row per arm, step, replica,
split, group, metric): learning curves averaged over replicas, final values, and a panel
helper that every training experiment's figures use."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rftgrad.experiments.style import COLORS

#: line style of each input group in learning-curve panels.
GROUP_STYLES = {"all": "-", "small_std": "--", "large_std": ":", "modified": "--", "unmodified": ":"}


def select(records: pd.DataFrame, metric: str, split: str = "train", group: str = "all") -> pd.DataFrame:
    """Rows of one metric, split and group."""
    mask = (records["metric"] == metric) & (records["split"] == split) & (records["group"] == group)
    return records[mask]


def curves(records: pd.DataFrame, metric: str, split: str = "train", group: str = "all") -> pd.DataFrame:
    """Per (arm, step): mean over replicas and the 10% / 90% quantiles (``mean``, ``low``, ``high``)."""
    rows = select(records, metric, split, group).groupby(["arm", "step"])["value"]
    return pd.DataFrame({"mean": rows.mean(), "low": rows.quantile(0.1), "high": rows.quantile(0.9)}).reset_index()


def final_values(records: pd.DataFrame, metric: str, split: str = "train", group: str = "all") -> dict[str, float]:
    """Arm -> mean over replicas of ``metric`` at the arm's last evaluated step."""
    rows = select(records, metric, split, group)
    last = rows[rows["step"] == rows.groupby("arm")["step"].transform("max")]
    return {arm: float(value) for arm, value in last.groupby("arm")["value"].mean().items()}


def arm_objective(arm: str) -> str:
    """``RFT`` or ``SFT`` for an arm of one objective (``"rft:200"``); the arm itself when it mixes them."""
    objectives = {phase.split(":")[0].upper() for phase in arm.split("+")}
    return objectives.pop() if len(objectives) == 1 else arm


def arm_color(arm: str, palette: dict[str, Any]) -> Any:  # noqa: ANN401 - a matplotlib colour
    """RFT red and SFT blue for single-objective arms; the palette's colour for mixed ones."""
    return COLORS.get(arm_objective(arm)) or palette[arm]


def plot_curves(
    ax: Any,  # noqa: ANN401 - a matplotlib Axes
    records: pd.DataFrame,
    metric: str,
    groups: tuple[str, ...] = ("all",),
    split: str = "train",
    palette: dict[str, Any] | None = None,
    log: bool = False,
) -> None:
    """Mean over replicas (line) and 10-90% band of ``metric`` against step, per arm and group."""
    for group in groups:
        table = curves(records, metric, split, group)
        for arm, rows in table.groupby("arm"):
            color = arm_color(str(arm), palette or {})
            style = GROUP_STYLES.get(group, "-.")
            ax.plot(rows["step"], rows["mean"], color=color, ls=style, label=f"{arm} · {group}")
            ax.fill_between(rows["step"], rows["low"], rows["high"], color=color, alpha=0.15, lw=0)
    ax.set(xlabel="step", ylabel=metric)
    if log:
        ax.set_yscale("log")

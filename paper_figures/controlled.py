"""RFT stalls on the inputs whose reward STD is small; SFT fits them (paper Section 4.2, Figure 2).

Reads ``rftgrad run controlled --variant digits-mlp``: an MLP pretrained on digits to spread its
probability over 5 labels per class, then 10% of the training images relabelled outside that set.
Left: the expected reward of the modified (small-STD) and unmodified inputs during training,
RFT in red and SFT in blue (mean over seeds, 10-90% band). Right: the per-input reward STD
before training against the change in expected reward after it.
"""

from __future__ import annotations

from typing import Any

from rftgrad.experiments.controlled.config import TESTING
from rftgrad.experiments.curves import arm_objective, curves, final_values
from rftgrad.experiments.style import COLORS, paper_figure
from rftgrad.gallery import ExperimentRun, PaperFigure, as_sets

GROUP_STYLE = {"modified": "-", "unmodified": ":"}


def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Learning curves by input group, and gain against initial STD per input."""
    records, cloud = run.tables["records"], run.tables["cloud"]
    fig, (curve_ax, cloud_ax) = paper_figure(columns=2, height=3.0)
    for group, style in GROUP_STYLE.items():
        for arm, rows in curves(records, "reward_mean", "train", group).groupby("arm"):
            name = arm_objective(str(arm))
            curve_ax.plot(rows["step"], rows["mean"], color=COLORS[name], ls=style, label=f"{name}, {group}")
            curve_ax.fill_between(rows["step"], rows["low"], rows["high"], color=COLORS[name], alpha=0.15, lw=0)
    curve_ax.set(xlabel="training step", ylabel="expected reward", ylim=(-1.05, 1.05), title="reward by input group")
    curve_ax.legend(fontsize=7, loc="lower right")

    before = cloud[cloud["when"] == "before"].set_index(["replica", "input"])
    for arm, after in cloud[cloud["when"] == "after"].groupby("arm"):
        after = after.set_index(["replica", "input"])
        gain = after["reward_mean"] - before["reward_mean"]
        name = arm_objective(str(arm))
        cloud_ax.scatter(before["reward_std"], gain, s=5, alpha=0.5, color=COLORS[name], label=name, lw=0)
    cloud_ax.set(xlabel="reward STD before training", ylabel="reward gain (after - before)", title="gain per input")
    cloud_ax.legend(fontsize=7, markerscale=2)

    modified_end = final_values(records, "reward_mean", "train", "modified")  # arm -> final reward
    ends = {arm_objective(arm): value for arm, value in modified_end.items()}
    key = f"modified inputs end at {ends['RFT']:+.2f} under RFT, {ends['SFT']:+.2f} under SFT"
    return fig, key


FIGURE = PaperFigure(
    name="controlled",
    experiment="controlled",
    variant="digits-mlp",
    shows="expected reward of modified (small-STD) and unmodified digits under RFT and SFT; gain vs initial STD",
    paper="Section 4.2, Figure 2",
    claim="RFT barely moves inputs with small reward STD although their reward is far from optimal; SFT fits them",
    draw=draw,
    tiny=as_sets(TESTING["digits-mlp"]),
    order=5,
)

"""RFT stalls on the inputs whose reward STD is small; SFT fits them (paper Section 4.2, Figure 2).

Reads ``rftgrad run controlled --variant digits-mlp``: an MLP pretrained on digits to spread its
probability over 5 labels per class, then 10% of the training images relabelled outside that set.
Left: the expected reward of the modified (small-STD) and unmodified inputs during training,
RFT in red and SFT in blue (mean over seeds, 10-90% band). Right: the per-input reward STD
before training against the change in expected reward after it.
"""

from __future__ import annotations

from typing import Any

from rftgrad.configs import as_sets
from rftgrad.experiments.controlled import TESTING, draw_gain_vs_std, draw_reward_curves
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.plotting import PAPER_FONT_SCALE, arm_objective, final_values, paper_figure, themed


@themed(PAPER_FONT_SCALE)
def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Learning curves by input group, and gain against initial STD per input."""
    records, cloud = run.tables["records"], run.tables["cloud"]
    fig, (curve_ax, cloud_ax) = paper_figure(columns=2, height=3.0)
    draw_reward_curves(curve_ax, records)
    draw_gain_vs_std(cloud_ax, cloud)

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

"""Small-STD, far-from-optimal prompts are common, and RFT gains only where the STD is not small (paper Section 4.1).

Reads ``rftgrad run prevalence``: a tiny causal transformer pretrained on an uneven mixture of
five synthetic tasks (copy, reverse, sort, add, keyword; coverage 100% down to 0%; a covered
prompt's target puts a share drawn uniformly from [0, 1] on the reference and the rest on a near
miss, so the initial STD spans a continuum), then RFT (RLOO) and SFT for the same number of
steps, each at its best learning rate, all under the exact-match reward. Left: every prompt's
exact reward mean against its exact reward STD under the pretrained model, coloured by task,
with the stalled region (STD below the threshold and mean more than half the reward range below
the best) shaded; the legend gives each task's stalled share, exact and from 10 samples as the
paper measured it. Right: the share of each prompt's gap to its best reward that training
closed, against its initial STD, RFT in red and SFT in blue, with the Pearson r over prompts and
its 95% bootstrap interval (2,000 resamples of the prompts). The paper's counterpart is its
Figure 1 (mean vs STD on GRUE) and the per-input gain-vs-STD correlations of Section 4.1.
"""

from __future__ import annotations

from typing import Any

from rftgrad.configs import as_sets
from rftgrad.experiments.prevalence import TESTING, draw_gap_closed, draw_mean_vs_std, log_floor
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.plotting import PAPER_FONT_SCALE, paper_figure, themed

#: the reward both panels show (the sparse one, where the paper's stall appears).
REWARD = "exact_match"


@themed(PAPER_FONT_SCALE)
def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Mean vs STD per prompt and task; gap closed vs initial STD under RFT and SFT."""
    floor = log_floor(run.tables["prompts"], REWARD)
    coverage = dict(zip(run.setting("tasks"), run.setting("coverage"), strict=True))
    steps = run.setting("steps")
    fig, (mean_ax, gap_ax) = paper_figure(columns=2, height=3.4)
    stalled = draw_mean_vs_std(mean_ax, run.tables, REWARD, floor, float(run.setting("far_fraction")),
                               coverage)  # fmt: skip
    title = f"after {steps} steps, each at its best lr"
    found = draw_gap_closed(gap_ax, run.tables, REWARD, floor, title)
    low, high = min(stalled, key=stalled.get), max(stalled, key=stalled.get)
    rft, sft = found["RFT"], found["SFT"]
    key = (
        f"exact match, Pearson r of initial STD with gap closed over {rft['prompts']:.0f} prompts with room to gain "
        f"({rft['not_stalled']:.0f} not stalled; 95% bootstrap): RFT {rft['r']:+.2f} [{rft['low']:+.2f}, "
        f"{rft['high']:+.2f}], SFT {sft['r']:+.2f} [{sft['low']:+.2f}, {sft['high']:+.2f}]; stalled prompts "
        f"{stalled[low]:.0%} ({low}) to {stalled[high]:.0%} ({high}), on them RFT closes {rft['on_stalled']:.0%} "
        f"of the gap, SFT {sft['on_stalled']:.0%}"
    )
    return fig, key


FIGURE = PaperFigure(
    name="prevalence",
    experiment="prevalence",
    shows="per-prompt reward mean vs STD under a pretrained tiny transformer, by task; share of the gap closed "
    "by RFT and SFT vs initial STD (exact match)",
    paper="Section 4.1, Figure 1",
    claim="small-STD, far-from-optimal prompts are common (most on the tasks pretraining covered least); the "
    "share of the gap RFT closes grows with the initial STD (r > 0, interval above 0), SFT's does not",
    draw=draw,
    quick=("train_rewards=exact_match", "lr=0.003"),  # a quarter of the default training: one reward, the lr it picks
    tiny=as_sets(TESTING),
    order=4,
)

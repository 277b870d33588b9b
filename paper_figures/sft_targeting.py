"""Which inputs should a small SFT phase label? Random (the paper) against informed choices (past the paper).

Reads ``rftgrad run sft_targeting``: at equal labelling budgets (0.25-5% of the training
inputs, log scale), SFT on the inputs a strategy chose, then exact RFT on all inputs. One
panel per task (the ``sft_budget`` family task; the synthetic language with a tiny
pretrained transformer): the reward gain on all inputs as a share of full SFT + RFT's
gain (mean over seeds, the 10-90% seed range as a band), one line per strategy: random,
smallest exact STD, smallest STD from G samples, ``rftgrad diagnose``'s stalled flag from
G samples, largest gap between the best reward and V. RFT alone is the red dashed line,
90% the dotted one.
"""

from __future__ import annotations

from typing import Any

from rftgrad.configs import as_sets
from rftgrad.experiments.sft_targeting import ENOUGH, TESTING, budget_table, draw_gain_vs_budget
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.plotting import PAPER_FONT_SCALE, paper_figure, themed


def percent(budget: float | None) -> str:
    """``0.01`` -> ``"1%"``; None -> ``"none"``."""
    return "none" if budget is None else f"{100 * budget:g}%"


@themed(PAPER_FONT_SCALE)
def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Per task: the gain against the labelling budget, one line per strategy with its seed band."""
    table = budget_table(run.tables["final"])
    tasks = list(run.score["tasks"])
    fig, axes = paper_figure(columns=len(tasks), height=3.4)
    parts = []
    for ax, task in zip(axes, tasks, strict=True):
        draw_gain_vs_budget(ax, table, task)
        numbers = run.score["tasks"][task]
        ax.set_title(f"{task} task ({numbers['inputs']} inputs, {numbers['stalled_inputs']:.0f} stalled)")
        ax.legend(fontsize=6, loc="lower right")
        at = numbers["at_budget"]
        line = ", ".join(f"{name} {v['gain_mean']:.2f} ± {v['gain_std']:.2f}" for name, v in at.items())
        smallest = ", ".join(f"{name} {percent(b)}" for name, b in numbers["smallest_enough"].items())
        parts.append(f"{task} at {percent(numbers['budget'])}: {line}; smallest budget reaching {ENOUGH:.0%}: "
                     f"{smallest}")  # fmt: skip
    return fig, " | ".join(parts)


FIGURE = PaperFigure(
    name="sft_targeting",
    experiment="sft_targeting",
    shows="gain of SFT on the chosen 0.25-5% of the inputs then RFT, per selection strategy and task, "
    "with the seed spread",
    paper="past the paper (Section 5.2's SFT phase)",
    claim="choosing the stalled inputs (largest gap, or the stalled flag) beats the paper's random 1% at small "
    "budgets and removes its all-or-nothing spread over seeds",
    draw=draw,
    tiny=as_sets(TESTING),
    order=9,
)

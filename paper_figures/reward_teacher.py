"""Accuracy is not enough: a reward model teaches fast when it induces reward variance (past the paper: Razin et
al. 2025, arXiv 2503.15477).

Reads ``rftgrad run reward_teacher``: a tabular softmax policy over K outputs for N inputs, a ground-truth
reward r_G, proxy reward models (rescaled and band-compressed r_G: accuracy 1; noisy and sparse indicator
rewards: lower accuracy), each taught by exact gradient flow on its own expected reward from two initial
policies (A prefers outputs of low r_G, B of higher r_G). The teaching time is the flow time for the mean
E[r_G] to rise by the target; open triangles did not get there within the budget (censored). Left: time
against accuracy on pairs drawn from the initial policy. Middle: time against the variance the proxy induces
under the initial policy (log-log), with each proxy's exact lower bound (grey ticks) and the derived
Var^(-1/2) bound (dashed): every time lies above. Right: time from policy A against time from policy B, one
point per proxy; the line joins the largest pair that swaps order between the two policies.
"""

from __future__ import annotations

from typing import Any

from rftgrad.configs import as_sets
from rftgrad.experiments.reward_teacher import (
    TESTING,
    draw_accuracy_panel,
    draw_policy_panel,
    draw_variance_panel,
)
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.plotting import PAPER_FONT_SCALE, paper_figure, themed


@themed(PAPER_FONT_SCALE)
def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Teaching time vs accuracy, vs induced variance (with the rate bound), and under policy A vs policy B."""
    table = run.tables["proxies"]
    fig, (accuracy_ax, variance_ax, policy_ax) = paper_figure(columns=3, height=3.6)
    draw_accuracy_panel(accuracy_ax, table, "accuracy_policy")
    draw_variance_panel(variance_ax, table)
    draw_policy_panel(policy_ax, table)
    for ax in (accuracy_ax, variance_ax, policy_ax):
        ax.title.set_fontsize(7)
        ax.xaxis.label.set_fontsize(7)
        ax.yaxis.label.set_fontsize(7)
        ax.tick_params(labelsize=7)
    pooled = run.score["spearman_speed"]["pooled"]
    key = (
        f"Spearman of speed with variance {pooled['variance']:+.2f} vs accuracy {pooled['accuracy_policy']:+.2f} "
        f"(both policies)"
    )
    cases = run.score["accurate_slower_than_less_accurate"]
    if cases:
        case = max(cases, key=lambda c: c["slowdown"] if c["slowdown"] != float("inf") else 0)
        key += (
            f"; accuracy-1 {case['accurate_proxy']} {case['slowdown']:.0f}x slower than {case['less_accurate_proxy']}"
            f" (accuracy {case['less_accurate_accuracy']:.2f}) under {case['policy']}"
        )
    flip = run.score["flip"]
    if "largest" in flip:
        big = flip["largest"]
        key += (
            f"; flip: {big['faster_under_A']} {big['ratio_A']:.0f}x faster under A, {big['faster_under_B']} "
            f"{big['ratio_B']:.0f}x faster under B"
        )
    return fig, key


FIGURE = PaperFigure(
    name="reward_teacher",
    experiment="reward_teacher",
    shows="time for exact RFT on a proxy reward to raise the ground-truth reward, against the proxy's accuracy, "
    "its induced variance (with the rate bound), and from two initial policies",
    paper="past the paper: Razin et al. 2025",
    claim="a reward model's induced variance under the policy, not its accuracy, sets how fast it teaches; an "
    "accuracy-1 reward model can be slower than a far less accurate one, and the ranking of reward models "
    "changes with the policy",
    draw=draw,
    tiny=as_sets(TESTING),
    order=10,
)

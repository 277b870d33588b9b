"""Small-STD, far-from-optimal prompts are common, and RFT gains only where the STD is not small (paper Section 4.1).

Reads ``rftgrad run prevalence``: a tiny causal transformer pretrained on an uneven mixture of
five synthetic tasks (copy, reverse, sort, add, keyword; coverage 100% down to 0%), then RFT
(RLOO) and SFT for the same number of steps, each at its best learning rate, all under the
exact-match reward. Left: every prompt's exact reward mean against its exact reward STD under
the pretrained model, coloured by task, with the stalled region (STD below the threshold and
mean more than half the reward range below the best) shaded; the legend gives each task's
stalled share, exact and from 10 samples as the paper measured it. Right: the share of each
prompt's gap to its best reward that training closed, against its initial STD, RFT in red and
SFT in blue, with the Pearson r over prompts and the mean share closed on the stalled prompts.
The paper's counterpart is its Figure 1 (mean vs STD on GRUE) and the per-input gain-vs-STD
correlations of Section 4.1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rftgrad.experiments.prevalence.analysis import MIN_GAP, gains
from rftgrad.experiments.prevalence.config import TESTING
from rftgrad.experiments.style import COLORS, palette, paper_figure
from rftgrad.gallery import ExperimentRun, PaperFigure, as_sets

#: the reward both panels show (the sparse one, where the paper's stall appears).
REWARD = "exact_match"
#: the lowest gap closed the right panel shows (prompts below it are drawn on it).
FLOOR = -1.0


def score_rows(score: dict[str, Any], key: str, **match: str) -> list[dict[str, Any]]:
    """The records of ``score[key]`` whose fields equal ``match``."""
    return [row for row in score.get(key, []) if all(row.get(name) == value for name, value in match.items())]


def mean_std_panel(ax: Any, run: ExperimentRun, log_floor: float) -> dict[str, float]:  # noqa: ANN401
    """Exact reward mean vs STD per prompt, coloured by task; returns the exact stalled share per task."""
    prompts = run.tables["prompts"]
    prompts = prompts[(prompts["reward"] == REWARD) & (prompts["replica"] == prompts["replica"].min())]
    tasks = list(dict.fromkeys(prompts["task"]))
    colors = palette(tasks)
    coverage = dict(zip(run.config.get("tasks", []), run.config.get("coverage", []), strict=False))
    shares = {row["task"]: row for row in score_rows(run.score, "shares", reward=REWARD)}
    threshold = float(prompts["std_threshold"].iloc[0])
    best, worst = float(prompts["best_reward"].median()), float(prompts["worst_reward"].median())
    far = best - float(run.config.get("far_fraction", 0.5)) * (best - worst)

    ax.fill_between([log_floor, threshold], worst - 0.05, far, color="0.88", lw=0, zorder=0)  # behind the points
    ax.text(log_floor * 1.5, worst + 0.12, "stalled: small STD,\nfar from the best", fontsize=7, color="0.3", zorder=1)
    stalled = {}
    for task in tasks:
        part = prompts[prompts["task"] == task]
        stalled[task] = float(part["stalled"].mean())
        sampled = shares.get(task, {}).get("stalled_sampled", float("nan"))
        label = f"{task}"
        if task in coverage:
            label += f" ({coverage[task]:.0%} covered)"
        label += f": {stalled[task]:.0%} / {sampled:.0%}"
        ax.scatter(part["reward_std"].clip(lower=log_floor), part["reward_mean"], s=12, color=colors[task],
                   alpha=0.8, lw=0, label=label, zorder=3)  # fmt: skip
    ax.axvline(threshold, color="0.4", ls=":", lw=0.9)
    ax.set(
        xscale="log",
        xlim=(log_floor, 1.5),
        ylim=(worst - 0.05, best + 0.05),
        xlabel="initial reward STD (log scale)",
        ylabel="initial reward mean V (exact match, [-1, 1])",
        title="prompts under the pretrained model",
    )
    ax.legend(fontsize=7, loc="upper left", title="task: stalled, exact / 10 samples", title_fontsize=7)
    return stalled


def gap_panel(ax: Any, run: ExperimentRun, log_floor: float) -> dict[str, tuple[float, float]]:  # noqa: ANN401
    """Share of the gap to the best reward closed per prompt vs initial STD, RFT and SFT; returns, per method,
    the Pearson r over prompts and the mean share closed on the stalled prompts."""
    table = gains(run.tables)
    table = table[table["reward"] == REWARD].dropna(subset=["gap_closed"])
    found = {}
    for name in ("SFT", "RFT"):
        part = table[table["method"] == name]
        rows = score_rows(run.score, "gain_correlations", reward=REWARD, method=name, statistic="gap_closed")
        r = float(rows[0]["pearson"]) if rows else float(np.corrcoef(part["reward_std"], part["gap_closed"])[0, 1])
        on_stalled = float(part[part["stalled"].astype(bool)]["gap_closed"].mean())
        found[name] = (r, on_stalled)
        label = f"{name}: r = {r:+.2f}; stalled: {on_stalled:.0%} closed"
        x = part["reward_std"].clip(lower=log_floor)
        inside = part["gap_closed"] >= FLOOR
        ax.scatter(x[inside], part["gap_closed"][inside], s=12, color=COLORS[name], alpha=0.7, lw=0, label=label)
        below = int((~inside).sum())
        if below:  # prompts that training pushed far below their start: drawn on the floor
            label = f"{name}: {below} below {FLOOR:g} (lowest {part['gap_closed'].min():.1f})"
            ax.scatter(
                x[~inside], np.full(below, FLOOR + 0.04), s=22, marker="v", color=COLORS[name], lw=0, label=label
            )
    threshold = float(run.tables["prompts"]["std_threshold"].iloc[0])
    ax.axvline(threshold, color="0.4", ls=":", lw=0.9)
    ax.axhline(0, color="k", lw=0.6, zorder=4)
    steps = run.config.get("steps")
    ax.set(
        xscale="log",
        xlim=(log_floor, 1.5),
        xlabel="initial reward STD (log scale)",
        ylabel="gap closed (V_end - V_0) / (best - V_0)",
        title=f"after {steps} steps, each at its best lr" if steps else "after training",
    )
    ax.set_ylim(max(FLOOR, min(-0.15, float(table["gap_closed"].min()) - 0.05)), 1.1)
    title = f"{table['input'].nunique()} prompts {MIN_GAP:.0%}+ below best\n(r: Pearson, STD vs gap closed)"
    ax.legend(fontsize=7, loc="lower left", title=title, title_fontsize=7)
    return found


def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Mean vs STD per prompt and task; gap closed vs initial STD under RFT and SFT."""
    prompts = run.tables["prompts"]
    stds = prompts[prompts["reward"] == REWARD]["reward_std"]
    log_floor = 10 ** np.floor(np.log10(max(float(stds[stds > 0].min()), 1e-8)))
    fig, (mean_ax, gap_ax) = paper_figure(columns=2, height=3.4)
    stalled = mean_std_panel(mean_ax, run, log_floor)
    found = gap_panel(gap_ax, run, log_floor)
    low, high = min(stalled, key=stalled.get), max(stalled, key=stalled.get)
    key = (
        f"exact match: stalled prompts {stalled[low]:.0%} ({low}) to {stalled[high]:.0%} ({high}); on them RFT "
        f"closes {found['RFT'][1]:.0%} of the gap to the best reward, SFT {found['SFT'][1]:.0%} (Pearson r of "
        f"initial STD with gap closed: RFT {found['RFT'][0]:+.2f}, SFT {found['SFT'][0]:+.2f})"
    )
    return fig, key


FIGURE = PaperFigure(
    name="prevalence",
    experiment="prevalence",
    shows="per-prompt reward mean vs STD under a pretrained tiny transformer, by task; share of the gap closed "
    "by RFT and SFT vs initial STD (exact match)",
    paper="Section 4.1, Figure 1",
    claim="small-STD, far-from-optimal prompts are common (most on the tasks pretraining covered least); RFT "
    "closes the gap only where the STD is not small, SFT closes it everywhere",
    draw=draw,
    quick=("train_rewards=exact_match", "lr=0.003"),  # a quarter of the default training: one reward, the lr it picks
    tiny=as_sets(TESTING),
    order=4,
)

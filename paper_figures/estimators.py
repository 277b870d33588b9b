"""Today's group estimators do not escape the vanishing gradient: their expected update is ∝ p (past the paper).

Reads ``rftgrad run estimators`` (docs/paper.md §7). Left: one input, a softmax over outputs,
one correct output of probability p, reward ±1, G sampled outputs per group: the expected update
along the correct output's logit against p, log-log, for REINFORCE, RLOO, Dr. GRPO, GRPO and DAPO
(B tries of dynamic sampling); lines are closed forms, markers Monte Carlo means of the library's
own advantage code (±2 SE). Every estimator falls like p¹: dividing by the group STD rescales the
groups that carry signal but cannot revive the all-equal ones, whose share is 1 − Gp + O(p²). Only
DAPO with unlimited resampling keeps an O(1) update per kept group (dashed), paid for with about
1/p sampled outputs. Right: the same estimators (and RLOO trained on pass@k) on the controlled
sequence task (tiny transformer, exact evaluation): the expected reward of the small-STD
(modified) and the other inputs once every run has spent the same number of sampled outputs per
input (DAPO counts what dynamic sampling draws), from their pretrained start.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from rftgrad.experiments.curves import select
from rftgrad.experiments.estimators.analysis import budget, curve_runs, fit_table, reward_vs_samples
from rftgrad.experiments.estimators.config import TESTING
from rftgrad.experiments.style import palette, paper_figure
from rftgrad.gallery import ExperimentRun, PaperFigure, as_sets
from rftgrad.theory.group_updates import expected_update

#: markers of the estimators in the sweep, in order.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
NAMES = {"reinforce": "REINFORCE", "rloo": "RLOO", "dr_grpo": "Dr. GRPO", "grpo": "GRPO", "dapo": "DAPO"}
#: right panel: marker and fill of each input group's mean, and the line style of its starting reward.
GROUP_STYLE = {"modified": ("o", True), "unmodified": ("s", False)}
GROUP_START = {"modified": "--", "unmodified": ":"}


def _run_label(run: str) -> str:
    """``"rloo pass@4"`` -> ``"RLOO, pass@4"``; ``"grpo"`` -> ``"GRPO"``."""
    estimator, _, rest = run.partition(" ")
    return NAMES.get(estimator, estimator) + (f", {rest}" if rest else "")


def at_budget(records: pd.DataFrame, group: str, limit: float) -> pd.DataFrame:
    """Per (run, replica): the group's exact expected reward at the last evaluation within ``limit`` sampled
    outputs per input (DAPO counts what dynamic sampling draws)."""
    table = reward_vs_samples(records, group)
    within = table[table["samples"] <= limit * (1 + 1e-9)]
    return within[within["step"] == within.groupby(["run", "replica"])["step"].transform("max")]


def _group_size(updates: pd.DataFrame, config: dict[str, Any]) -> int:
    """The G of the left panel: the learning curves' G when the sweep has it, else the sweep's middle G."""
    groups = sorted(int(g) for g in updates["group_size"].unique())
    wanted = int(config.get("num_generations", 0))
    return wanted if wanted in groups else groups[len(groups) // 2]


def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Left: ``E u`` along ``z_c`` against ``p`` at one G, e.g. ``Δ p(1−p)`` for REINFORCE/RLOO,
    ``((G−1)/G) Δ p(1−p)`` for Dr. GRPO, ``Σ_k C(G,k) p^k (1−p)^(G−k) u_k`` for GRPO and
    ``(1 − d^B)/(1 − d)`` times that for DAPO (``d = p^G + (1−p)^G``, Δ = 2), with the fitted power
    over the fit window in the legend. Right: each training run's exact expected reward of the modified and
    unmodified inputs at the common budget of sampled outputs per input (large markers: mean over seeds; dots:
    seeds; the lines start at the pretrained reward)."""
    updates: pd.DataFrame = run.tables["updates"]
    records: pd.DataFrame = run.tables["records"]
    group = _group_size(updates, run.config)
    sweep = list(dict.fromkeys(updates["estimator"]))
    colors = palette(list(dict.fromkeys([*sweep, *records["run"]])))  # one colour per estimator in both panels
    fits = fit_table(updates).set_index(["estimator", "group_size"])
    fig, (left, right) = paper_figure(columns=2, height=3.4)

    rows = updates[updates["group_size"] == group]
    dense = np.geomspace(rows["p"].min(), rows["p"].max(), 300)
    drawn_curves: dict[str, np.ndarray] = {}  # an estimator whose closed form equals an earlier one's is dotted
    for marker, estimator in zip(MARKERS, sweep, strict=False):
        points = rows[rows["estimator"] == estimator]
        std_eps, tries = float(points["std_eps"].iloc[0]), float(points["max_resample"].iloc[0])
        fit = fits.loc[(estimator, group)]
        name = NAMES.get(estimator, estimator) + (f" (B = {tries:g})" if estimator == "dapo" else "")
        curve = expected_update(dense, group, estimator, std_eps=std_eps, max_resample=tries)
        same = [other for other, drawn in drawn_curves.items() if np.allclose(curve, drawn, rtol=1e-12, atol=0)]
        name += f" (= {', '.join(same)})" if same else ""
        label = f"{name}: $p^{{{fit['power_closed_form']:.2f}}}$"
        left.plot(dense, curve, color=colors[estimator], lw=2 if same else 1.2, ls=":" if same else "-", label=label)
        drawn_curves[NAMES.get(estimator, estimator)] = curve
        left.errorbar(points["p"], points["mc_mean"], yerr=2 * points["mc_sem"], fmt=marker, ms=3.5, lw=0.8,
                      capsize=1.5, color=colors[estimator], mfc="white")  # fmt: skip
        if estimator == "dapo":
            kept = expected_update(dense, group, "dapo", std_eps=std_eps, max_resample=math.inf)
            left.plot(dense, kept, color=colors[estimator], lw=1.2, ls="--", label="DAPO, B = ∞, per kept group: $p^0$")
    left.set(xscale="log", yscale="log", xlabel="success probability p", ylabel="expected update along z_correct")
    left.set_title(f"expected update per group, G = {group}")
    left.set_ylim(bottom=rows.loc[rows["mc_mean"] > 0, "mc_mean"].min() / 300)  # room for the legend below the data
    left.legend(fontsize=7, loc="lower right", title="lines: closed form\nmarkers: Monte Carlo ±2 SE", title_fontsize=7)

    limit = budget(records)
    order = list(dict.fromkeys(records["run"]))  # training order: the pass@1 runs, then the pass@k run
    handles: list[Any] = []
    starts = {inputs: float(select(records, "reward_mean", "train", inputs).query("step == 0")["value"].mean())
              for inputs in GROUP_STYLE}  # fmt: skip
    gains = {}
    for inputs, (marker, face) in GROUP_STYLE.items():
        ends = at_budget(records, inputs, limit)
        means = ends.groupby("run")["value"].mean()
        start = starts[inputs]
        gains[inputs] = means - start
        right.axvline(start, color="black", lw=0.8, ls=GROUP_START[inputs])
        handles.append(Line2D([], [], color="black", lw=0.8, ls=GROUP_START[inputs], marker=marker, ms=6, mec="0.3",
                              mfc="0.3" if face else "white", label=inputs))  # fmt: skip
        for y, name in enumerate(order):
            color = colors[name]
            seeds = ends[ends["run"] == name]["value"]
            right.scatter(seeds, np.full(len(seeds), y), s=8, color=color, alpha=0.5, lw=0, zorder=8)
            fill = color if face else "white"
            right.scatter([means[name]], [y], s=40, marker=marker, edgecolors=color, facecolors=fill, zorder=8)
            right.plot([start, means[name]], [y, y], color=color, lw=1, alpha=0.6, zorder=8)
    right.set_yticks(range(len(order)), [_run_label(name) for name in order])
    right.set_ylim(len(order) - 0.5, -1.4)  # top down, with a free row for the legend
    right.set(xlabel=f"expected reward (exact) after {limit:.0f} samples per input", xlim=(-1.05, 1.05))
    right.set_title("training at an equal sample budget")
    right.legend(
        handles=handles,
        fontsize=7,
        loc="upper center",
        ncols=2,
        title="inputs: start → mean (dots: seeds)",
        title_fontsize=7,
    )

    pass1 = curve_runs(records)
    powers, mc = fits["power_closed_form"], fits["power_mc"]
    key = (
        f"fitted power of the expected update in p as p → 0: {powers.min():.3f}-{powers.max():.3f} (closed form), "
        f"{mc.min():.2f}-{mc.max():.2f} (Monte Carlo) over {len(sweep)} estimators × "
        f"{fits.index.get_level_values('group_size').nunique()} group sizes; at {limit:.0f} samples per input the "
        f"small-STD inputs gain {gains['modified'][pass1].min():+.2f} to {gains['modified'][pass1].max():+.2f} "
        f"(the others {gains['unmodified'][pass1].min():+.2f} to {gains['unmodified'][pass1].max():+.2f})"
    )
    return fig, key


FIGURE = PaperFigure(
    name="estimators",
    experiment="estimators",
    shows="expected update of REINFORCE, RLOO, Dr. GRPO, GRPO, DAPO against success probability p (closed form and "
    "Monte Carlo); small-STD inputs' reward under each estimator at equal sample budgets",
    paper="past the paper",
    claim="every group estimator's expected update vanishes linearly in p at fixed G (GRPO's STD normalisation "
    "included); only DAPO with unlimited resampling is O(1) per kept group, at about 1/p samples per kept group",
    draw=draw,
    quick=("seeds=2",),  # the default's 3 seeds take ~215 s on the shared 2-core CPU; 2 seeds keep it near 150 s
    tiny=as_sets(TESTING),
    order=8,
)

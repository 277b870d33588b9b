"""RFT needs a time of order 1/STD₀² to lift an input, SFT one of order ln(1/STD₀) (paper Theorem 2, Section 3).

Reads ``rftgrad run dynamics``: one input of a linear softmax model with orthonormal inputs, K
labels, reward +1 for the correct label and -1 otherwise, the wrong labels sharing 1 - p₀ equally.
Left: the gradient-flow time for the expected reward to reach the target against the initial
reward STD₀, log-log, RFT in red and SFT in blue: points from the ODE on the full K logits, lines
the closed forms, dashed the RFT asymptote c/STD₀². Right: plain gradient ascent (steps × step
size, which tends to the flow's time) and Adam on the same objectives: Adam's per-coordinate
normalisation removes most of RFT's 1/STD₀² law for one decoupled input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from rftgrad.experiments.style import COLORS, paper_figure
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.theory.dynamics import asymptotic_constant, closed_form_hitting_time, loglog_slope, std_from_p0

#: markers of the step sizes, largest first.
MARKERS = ("o", "s", "^", "D", "v")
#: the markers' glyphs for the legend: filled for gradient ascent, open for Adam.
GLYPHS = {"gd": ("●", "■", "▲", "◆", "▼"), "adam": ("○", "□", "△", "◇", "▽")}
OPTIMIZER_STYLE = {"gd": ("-", "gradient ascent"), "adam": ("--", "Adam")}


def _flow_k(flow: pd.DataFrame, discrete: pd.DataFrame) -> int:
    """The K of the left panel: the discrete runs' K when the flow sweep has it, else the sweep's middle K."""
    ks = sorted(int(k) for k in flow["num_labels"].unique())
    k = int(discrete["num_labels"].iloc[0])
    return k if k in ks else ks[len(ks) // 2]


def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Left: hitting time of ``2p - 1 = V_target`` under the flows ``dz/dt = 2p(e_y* − π)`` (RFT) and
    ``dz/dt = e_y* − π`` (SFT) vs ``STD₀ = 2 sqrt(p₀(1 − p₀))``; the RFT asymptote is
    ``c/STD₀²`` with ``c = 2(K − 1)/K``, the fitted slope over the config's p₀ window is in the legend.
    Right: ``n·η`` (steps × step size) of gradient ascent and Adam with the flow's time."""
    flow: pd.DataFrame = run.tables["hitting_times"]
    discrete: pd.DataFrame = run.tables["discrete"]
    k = _flow_k(flow, discrete)
    target = float(flow["target"].iloc[0])
    fig, (left, right) = paper_figure(columns=2, height=3.3)

    rows = flow[flow["num_labels"] == k]
    dense = np.geomspace(rows["p0"].min(), rows["p0"].max(), 200)
    slopes = {}
    for objective, group in rows.groupby("objective"):
        color = COLORS[str(objective)]
        window = group[group["in_fit_window"].astype(bool)]
        slopes[objective] = loglog_slope(window["std0"], window["time_ode"]) if len(window) >= 2 else math.nan
        curve = closed_form_hitting_time(dense, k, target, str(objective).lower())
        left.plot(std_from_p0(dense), curve, color=color, lw=1.2)
        shape = f"slope {slopes[objective]:.2f}" if objective == "RFT" else "≈ c′ ln(1/STD₀)"
        label = f"{objective}: ODE, {shape}"
        left.scatter(group["std0"], group["time_ode"], color=color, s=18, zorder=3, label=label)
    small = std_from_p0(dense[dense <= 0.05])
    c = float(asymptotic_constant(k, "rft"))
    left.plot(small, c / small**2, color="black", lw=0.8, ls="--", label=f"c/STD₀², c = 2(K−1)/K = {c:.2f}")
    left.set(xscale="log", yscale="log", xlabel="initial reward STD₀", ylabel="flow time to reach the target")
    left.set_title(f"gradient flow (K = {k}, target V = {target:g})")
    left.legend(fontsize=7, loc="upper right", title="lines: closed form", title_fontsize=7)

    kd = int(discrete["num_labels"].iloc[0])
    dense_d = np.geomspace(discrete["p0"].min(), discrete["p0"].max(), 200)
    for objective, group in discrete.groupby("objective"):
        color = COLORS[str(objective)]
        flow_time = closed_form_hitting_time(dense_d, kd, target, str(objective).lower())
        right.plot(std_from_p0(dense_d), flow_time, color=color, lw=3, alpha=0.3)
        for optimizer, (style, _) in OPTIMIZER_STYLE.items():
            runs = group[(group["optimizer"] == optimizer) & group["time"].notna()]
            for marker, (_, points) in zip(MARKERS, runs.groupby("step_size", sort=False), strict=False):
                right.plot(points["std0"], points["time"], color=color, ls=style, lw=0.9, marker=marker, ms=3.5,
                           mfc="white" if optimizer == "adam" else color)  # fmt: skip
    handles = [Line2D([], [], color=COLORS[name], lw=2, label=name) for name in sorted(discrete["objective"].unique())]
    handles.append(Line2D([], [], color="0.5", lw=3, alpha=0.3, label="flow (closed form)"))
    for optimizer, (style, name) in OPTIMIZER_STYLE.items():
        sizes = discrete.loc[discrete["optimizer"] == optimizer, "step_size"].drop_duplicates()
        glyphs = GLYPHS["adam" if optimizer == "adam" else "gd"]
        label = f"{name}, η = " + ", ".join(f"{eta:g} {glyph}" for eta, glyph in zip(sizes, glyphs, strict=False))
        handles.append(Line2D([], [], color="0.3", ls=style, lw=0.9, label=label))
    right.set(xscale="log", yscale="log", xlabel="initial reward STD₀", ylabel="steps × step size η")
    right.set_title(f"discrete steps (K = {kd})")
    right.legend(handles=handles, fontsize=7, loc="upper right")

    smallest = rows[rows["p0"] == rows["p0"].min()].set_index("objective")["time_ode"]
    std_min = float(rows["std0"].min())
    key = (
        f"RFT flow time ∝ STD₀^{slopes['RFT']:.3f} (SFT ~ ln 1/STD₀); at STD₀ = {std_min:.1e}, K = {k}: "
        f"RFT {smallest['RFT']:.2e} vs SFT {smallest['SFT']:.1f} ({smallest['RFT'] / smallest['SFT']:.1e}×)"
    )
    return fig, key


FIGURE = PaperFigure(
    name="dynamics",
    experiment="dynamics",
    shows="gradient-flow hitting time of a target reward against initial reward STD, RFT vs SFT; GD and Adam steps",
    paper="Theorem 2, Section 3",
    claim="RFT's time to raise an input's reward grows like 1/STD₀² while SFT's grows like ln(1/STD₀): "
    "an exponential separation; plain gradient steps follow the flow",
    draw=draw,
    tiny=(
        "num_labels=2,10",
        "gd_p0_min=1e-3",
        "gd_step_sizes=1.0,0.25",
        "adam_step_sizes=0.1",
        "correlated_p0=1e-3",
        "trajectory_points=30",
    ),
    order=3,
)

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

from typing import Any

import pandas as pd

from rftgrad.experiments.dynamics import draw_discrete_steps, draw_flow_times, flow_panel_k
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.plotting import PAPER_FONT_SCALE, paper_figure, themed


@themed(PAPER_FONT_SCALE)
def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Left: hitting time of ``2p - 1 = V_target`` under the flows ``dz/dt = 2p(e_y* − π)`` (RFT) and
    ``dz/dt = e_y* − π`` (SFT) vs ``STD₀ = 2 sqrt(p₀(1 − p₀))``; the RFT asymptote is
    ``c/STD₀²`` with ``c = 2(K − 1)/K``, the fitted slope over the config's p₀ window is in the legend.
    Right: ``n·η`` (steps × step size) of gradient ascent and Adam with the flow's time."""
    flow: pd.DataFrame = run.tables["hitting_times"]
    discrete: pd.DataFrame = run.tables["discrete"]
    k = flow_panel_k(flow, discrete)
    fig, (left, right) = paper_figure(columns=2, height=3.3)
    slopes = draw_flow_times(left, flow, k)
    draw_discrete_steps(right, discrete, float(flow["target"].iloc[0]))

    rows = flow[flow["num_labels"] == k]
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

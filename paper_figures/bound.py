"""The exact gradient of random policies never exceeds Theorem 1's bound (paper Theorem 1, Section 2).

Reads ``rftgrad run bound``: random (environment, policy) instances of four policy classes
(tabular, linear, MLP at L = 1, tiny transformer), output lengths L = 1..5, evaluated exactly
(float64, every output enumerated). Left: each input's ``‖∇_θ V‖ / (γ√L)`` against its reward
STD, log-log, coloured by policy class; the sharpened bound ``γ√L·STD`` becomes the diagonal
``y = STD`` and the paper's ``6Lγ·STD^(2/3)`` lies far above it. Right: how close the gradients
come to each bound, the ratio ``‖∇V‖ / bound`` per input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.experiments.style import palette, paper_figure
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.theory.bounds import PAPER_CONSTANT

#: inputs whose STD is numerically zero (gradient zero too) cannot sit on log axes: counted, not drawn.
MIN_STD = 1e-12
#: smaller ratios go to the histogram's first bin.
MIN_RATIO = 1e-6
BOUND_LABELS = {"sharpened": "sharpened γ√L·STD", "paper": "paper 6Lγ·STD^(2/3)"}
#: the two bounds keep one shade in both panels (reference lines, not categories of data).
BOUND_COLORS = {"sharpened": "0.1", "paper": "0.55"}


def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Left: ``‖∇V‖/(γ√L)`` against STD with the sharpened bound ``y = STD`` and the paper's bound
    divided by ``γ√L``, ``6√L·STD^(2/3)`` (drawn at L = 1, its lowest). Right: histograms of
    ``‖∇V‖ / (γ√L·STD)`` and ``‖∇V‖ / (6Lγ·STD^(2/3))``."""
    rows: pd.DataFrame = run.tables["bound_rows"]
    kinds = sorted(rows["kind"].unique())
    colors = palette(kinds)
    shown = rows[rows["reward_std"] > MIN_STD]
    fig, (cloud, hist) = paper_figure(columns=2, height=3.2)

    for kind in kinds:
        part = shown[shown["kind"] == kind]
        scaled = part["grad_norm"] / (part["gamma"] * np.sqrt(part["length"]))
        label = f"{kind} ({rows.loc[rows['kind'] == kind, 'example'].nunique()} policies)"
        cloud.scatter(part["reward_std"], scaled, s=6, alpha=0.5, lw=0, color=colors[kind], label=label)
    grid = np.logspace(math.log10(max(shown["reward_std"].min(), MIN_STD)), 0, 100)
    cloud.plot(grid, grid, color=BOUND_COLORS["sharpened"], lw=1.2, label="sharpened bound: STD")
    paper_line = PAPER_CONSTANT * grid ** (2 / 3)
    cloud.plot(grid, paper_line, color=BOUND_COLORS["paper"], lw=1.2, ls="--", label="paper's, L = 1: 6·STD^(2/3)")
    cloud.set(xscale="log", yscale="log", xlabel="reward STD of the input", ylabel="‖∇_θ V‖ / (γ√L)")
    cloud.set_title(f"exact ‖∇V‖ of {len(shown):,} inputs (+{len(rows) - len(shown)} with STD = 0)")
    cloud.legend(fontsize=7, loc="lower right", markerscale=2)

    ratios = {name: shown[f"ratio_{name}"] for name in BOUND_LABELS}
    bins = np.logspace(math.log10(MIN_RATIO), 0.1, 50)
    for name, values in ratios.items():
        label = f"{BOUND_LABELS[name]}: max {values.max():.3f}"
        hist.hist(values.clip(lower=MIN_RATIO), bins=bins, color=BOUND_COLORS[name], alpha=0.6, label=label)
    hist.axvline(1.0, color="black", lw=1.5, label="bound (ratio 1)")
    hist.axvline(1 / math.sqrt(2), color="black", lw=0.8, ls=":", label="1/√2 (attained by the √L witness)")
    hist.set(xscale="log", xlabel="‖∇_θ V‖ / bound (below 1e-6: first bin)", ylabel="inputs")
    hist.set_title("ratio to each bound, per input")
    hist.legend(fontsize=7, loc="upper left")

    top, paper_top = rows["ratio_sharpened"].max(), rows["ratio_paper"].max()
    policies = rows.groupby("kind")["example"].nunique().sum()
    violations = int(rows["violation"].sum())
    key = (
        f"max ratio of ‖∇V‖ to γ√L·STD: {top:.3f} (to the paper's 6Lγ·STD^(2/3): {paper_top:.3f}) "
        f"over {policies:,} policies, {len(rows):,} inputs; {violations} violations"
    )
    return fig, key


FIGURE = PaperFigure(
    name="bound",
    experiment="bound",
    shows="exact ‖∇V‖ of random tabular, linear, MLP and transformer policies against reward STD, with both bounds",
    paper="Theorem 1, Section 2",
    claim="the expected gradient vanishes with the reward STD: no input of any policy class exceeds γ√L·STD, "
    "which is linear in STD and never weaker than the paper's 6Lγ·STD^(2/3)",
    draw=draw,
    tiny=("examples_per_kind=6", "max_length=3"),
    order=1,
)

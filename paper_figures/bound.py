"""The exact gradient of random policies never exceeds Theorem 1's bound (paper Theorem 1, Section 2).

Reads ``rftgrad run bound``: random (environment, policy) instances of four policy classes
(tabular, linear, MLP at L = 1, tiny transformer), output lengths L = 1..5, evaluated exactly
(float64, every output enumerated). Left: each input's ``‖∇_θ V‖ / (γ√L)`` against its reward
STD, log-log, coloured by policy class; the sharpened bound ``γ√L·STD`` becomes the diagonal
``y = STD`` and the paper's ``6Lγ·STD^(2/3)`` lies far above it. Right: how close the gradients
come to each bound, the ratio ``‖∇V‖ / bound`` per input.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from rftgrad.experiments.bound import draw_bound_cloud, draw_ratio_histograms
from rftgrad.gallery import ExperimentRun, PaperFigure
from rftgrad.plotting import PAPER_FONT_SCALE, paper_figure, themed


@themed(PAPER_FONT_SCALE)
def draw(run: ExperimentRun) -> tuple[Any, str]:
    """Left: ``‖∇V‖/(γ√L)`` against STD with the sharpened bound ``y = STD`` and the paper's bound
    divided by ``γ√L``, ``6√L·STD^(2/3)`` (drawn at L = 1, its lowest). Right: histograms of
    ``‖∇V‖ / (γ√L·STD)`` and ``‖∇V‖ / (6Lγ·STD^(2/3))``."""
    rows: pd.DataFrame = run.tables["bound_rows"]
    fig, (cloud, hist) = paper_figure(columns=2, height=3.2)
    draw_bound_cloud(cloud, rows)
    draw_ratio_histograms(hist, rows)

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

"""One look for every figure: a seaborn theme, fixed colours for RFT and SFT, panel grids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: RFT and SFT keep these colours in every figure.
COLORS = {"RFT": "#c0392b", "SFT": "#2471a3"}


def _themed_pyplot(font_scale: float) -> Any:  # noqa: ANN401 - the matplotlib.pyplot module
    """``matplotlib.pyplot`` on the Agg backend with the project's seaborn theme (whitegrid, paper context)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper", font_scale=font_scale)
    return plt


def figure_grid(
    panels: int, levels: Sequence[Any], panel_size: float = 4.0, columns: int = 2
) -> tuple[Any, list[Any], dict[Any, Any]]:
    """A figure with ``panels`` axes (``columns`` per row) and a colour for each of ``levels``."""
    import seaborn as sns

    plt = _themed_pyplot(font_scale=1.0)
    columns = min(columns, panels)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(panel_size * columns * 1.2, panel_size * rows), squeeze=False, layout="constrained"
    )
    flat = list(axes.ravel())
    for extra in flat[panels:]:
        extra.set_visible(False)
    palette = dict(zip(levels, sns.color_palette("viridis", len(levels)), strict=True))
    return fig, flat[:panels], palette


#: width of a paper figure in inches: about 1,050 pixels at the 150 dpi of save_figure, the README's width.
README_WIDTH = 7.0


def paper_figure(
    columns: int = 1, rows: int = 1, height: float = 3.0, width: float = README_WIDTH, **subplot_kw: Any
) -> tuple[Any, list[Any]]:
    """A figure for ``paper_figures/`` in the project's one look: the seaborn ``whitegrid`` theme with
    fonts sized for the README's width; ``columns x rows`` axes (a flat list). RFT and SFT take
    :data:`COLORS`; other categories take :func:`palette`."""
    plt = _themed_pyplot(font_scale=1.1)
    fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False, layout="constrained", **subplot_kw)
    return fig, list(axes.ravel())


def palette(levels: Sequence[Any]) -> dict[Any, Any]:
    """A colour per level (seaborn's colour-blind palette) for categories other than RFT and SFT."""
    import seaborn as sns

    return dict(zip(levels, sns.color_palette("colorblind", len(levels)), strict=True))

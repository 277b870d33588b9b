"""The one figure house: theme, colours, figure layouts, curve helpers and saving.

Every figure of rftgrad (the experiments' ``analysis.plot_*``, the paper figures, the
diagnosis scatter) is drawn here-styled, without touching matplotlib's global state:

* the theme (seaborn ``whitegrid`` style, ``paper`` context, the ``deep`` colour cycle) is
  an rc dict applied with :func:`matplotlib.rc_context` for the duration of a drawing only
  (:func:`theme`, :func:`themed`): no backend switch, no global seaborn theme;
* figures are :class:`matplotlib.figure.Figure` objects made without pyplot
  (:func:`figure_grid`, :func:`paper_figure`), so no backend is chosen or needed: saving works
  on any backend, with or without a display. Only the ``rftgrad`` command line picks a backend.

Curve helpers read the trainer's long-format records (one row per arm, step, replica, split,
group, metric): :func:`select_records`, :func:`curves`, :func:`final_values`, :func:`draw_curves`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from rftgrad.results import atomic_write

__all__ = [
    "COLORS", "GROUP_STYLES", "PAPER_FONT_SCALE", "README_WIDTH", "arm_color", "arm_objective", "curves",
    "draw_curves", "figure_grid", "final_values", "new_figure", "palette", "paper_figure", "save_figure",
    "select_records", "theme", "theme_rc", "themed", "viridis",
]  # fmt: skip

#: RFT and SFT keep these colours in every figure.
COLORS = {"RFT": "#c0392b", "SFT": "#2471a3"}
#: line style of each input group in learning-curve panels.
GROUP_STYLES = {"all": "-", "small_std": "--", "large_std": ":", "modified": "--", "unmodified": ":"}
#: width of a paper figure in inches: about 1,050 pixels at the 150 dpi of :func:`save_figure`, the README's width.
README_WIDTH = 7.0
#: font scale of the paper figures (fonts sized for the README's width); experiment figures use 1.
PAPER_FONT_SCALE = 1.1

Function = TypeVar("Function", bound=Callable[..., Any])


# ----------------------------------------------------------------------------- theme
def theme_rc(font_scale: float = 1.0) -> dict[str, Any]:
    """The project's look as an rc dict: seaborn's ``whitegrid`` style and ``paper`` context (fonts times
    ``font_scale``) and its ``deep`` colour cycle: the rcParams seaborn's global theme of that style and context
    would set, here only returned, for :func:`matplotlib.rc_context`."""
    import seaborn as sns
    from cycler import cycler

    return {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("paper", font_scale=font_scale),
        "axes.prop_cycle": cycler(color=sns.color_palette("deep")),
    }


@contextmanager
def theme(font_scale: float = 1.0) -> Iterator[None]:
    """Within the block, matplotlib draws in the project's look (:func:`theme_rc`); every rcParam is restored
    on exit. Draw and save inside it: text and ticks read the rc when they are created."""
    import matplotlib

    with matplotlib.rc_context(theme_rc(font_scale)):
        yield


def themed(font_scale: float = 1.0) -> Callable[[Function], Function]:
    """Decorator: run the decorated drawing function inside :func:`theme` (``font_scale``)."""

    def decorate(function: Function) -> Function:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - whatever the function returns
            with theme(font_scale):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


# ----------------------------------------------------------------------------- figures and colours
def new_figure(
    rows: int, columns: int, figsize: tuple[float, float], **subplot_kw: Any
) -> tuple[Any, list[Any]]:  # a matplotlib Figure and its Axes
    """A constrained-layout :class:`matplotlib.figure.Figure` (no pyplot, no backend) with ``rows x columns``
    axes, as a flat list in row order. Call it inside :func:`theme` so the axes take the project's look."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, subplot_kw=subplot_kw or None)
    return figure, list(axes.ravel())


def viridis(levels: Sequence[Any]) -> dict[Any, Any]:
    """A colour per level from seaborn's ``viridis`` (ordered levels: sizes, probabilities, swept values)."""
    import seaborn as sns

    return dict(zip(levels, sns.color_palette("viridis", len(levels)), strict=True))


def palette(levels: Sequence[Any]) -> dict[Any, Any]:
    """A colour per level (seaborn's colour-blind palette) for categories other than RFT and SFT."""
    import seaborn as sns

    return dict(zip(levels, sns.color_palette("colorblind", len(levels)), strict=True))


def figure_grid(
    panels: int, levels: Sequence[Any], panel_size: float = 4.0, columns: int = 2
) -> tuple[Any, list[Any], dict[Any, Any]]:
    """An experiment figure: ``panels`` axes (``columns`` per row, the rest hidden) and a :func:`viridis`
    colour per ``levels``. Its axes take the theme; draw on them inside :func:`theme` (or :func:`themed`)."""
    columns = min(columns, panels)
    rows = math.ceil(panels / columns)
    with theme():
        figure, axes = new_figure(rows, columns, (panel_size * columns * 1.2, panel_size * rows))
    for extra in axes[panels:]:
        extra.set_visible(False)
    return figure, axes[:panels], viridis(levels)


def paper_figure(
    columns: int = 1, rows: int = 1, height: float = 3.0, width: float = README_WIDTH, **subplot_kw: Any
) -> tuple[Any, list[Any]]:
    """A figure for ``paper_figures/``: ``columns x rows`` axes (a flat list), ``width x height`` inches, in the
    theme at :data:`PAPER_FONT_SCALE` (draw inside ``theme(PAPER_FONT_SCALE)``). RFT and SFT take
    :data:`COLORS`; other categories take :func:`palette`."""
    with theme(PAPER_FONT_SCALE):
        return new_figure(rows, columns, (width, height), **subplot_kw)


def save_figure(figure: Any, path: str | Path, dpi: int = 150) -> Path:  # noqa: ANN401 - a matplotlib Figure
    """Write ``figure`` as ``path.png`` and ``path.pdf``, each atomically (a temporary file, then a rename), in
    the theme's rc; returns the PNG's path. A figure pyplot manages is closed afterwards."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with theme():
        for kind in ("png", "pdf"):

            def write(stream: Any, kind: str = kind) -> None:  # noqa: ANN401 - a binary file
                figure.savefig(stream, format=kind, dpi=dpi, bbox_inches="tight")

            atomic_write(path.with_suffix(f".{kind}"), write)
    if getattr(figure.canvas, "manager", None) is not None:  # made by pyplot: release it there
        import matplotlib.pyplot as plt

        plt.close(figure)
    return path.with_suffix(".png")


# ----------------------------------------------------------------------------- the trainer's records
def select_records(records: pd.DataFrame, metric: str, split: str = "train", group: str = "all") -> pd.DataFrame:
    """The rows of ``records`` of one metric, split and input group."""
    mask = (records["metric"] == metric) & (records["split"] == split) & (records["group"] == group)
    return records[mask]


def curves(records: pd.DataFrame, metric: str, split: str = "train", group: str = "all") -> pd.DataFrame:
    """Per (arm, step): mean over replicas and the 10% / 90% quantiles (``mean``, ``low``, ``high``)."""
    rows = select_records(records, metric, split, group).groupby(["arm", "step"])["value"]
    return pd.DataFrame({"mean": rows.mean(), "low": rows.quantile(0.1), "high": rows.quantile(0.9)}).reset_index()


def final_values(records: pd.DataFrame, metric: str, split: str = "train", group: str = "all") -> dict[str, float]:
    """Arm -> mean over replicas of ``metric`` at the arm's last evaluated step."""
    rows = select_records(records, metric, split, group)
    last = rows[rows["step"] == rows.groupby("arm")["step"].transform("max")]
    return {arm: float(value) for arm, value in last.groupby("arm")["value"].mean().items()}


def arm_objective(arm: str) -> str:
    """``RFT`` or ``SFT`` for an arm of one objective (``"rft:200"``); the arm itself when it mixes them."""
    objectives = {phase.split(":")[0].upper() for phase in arm.split("+")}
    return objectives.pop() if len(objectives) == 1 else arm


def arm_color(arm: str, colors: dict[str, Any]) -> Any:  # noqa: ANN401 - a matplotlib colour
    """RFT red and SFT blue for single-objective arms; the colour ``colors`` gives mixed ones."""
    return COLORS.get(arm_objective(arm)) or colors[arm]


def draw_curves(
    ax: Any,  # noqa: ANN401 - a matplotlib Axes
    records: pd.DataFrame,
    metric: str,
    groups: tuple[str, ...] = ("all",),
    split: str = "train",
    colors: dict[str, Any] | None = None,
    log: bool = False,
    styles: dict[str, Any] | None = None,
    label: Callable[[str, str], str] | None = None,
) -> None:
    """On ``ax``: mean over replicas (line) and 10-90% band of ``metric`` against step, per arm and group.

    Arms take :func:`arm_color`; groups the line style ``styles`` gives them (default :data:`GROUP_STYLES`);
    ``label(arm, group)`` names a line (default ``"<arm> · <group>"``).
    """
    styles = GROUP_STYLES if styles is None else styles
    for group in groups:
        table = curves(records, metric, split, group)
        for arm, rows in table.groupby("arm"):
            color = arm_color(str(arm), colors or {})
            text = label(str(arm), group) if label else f"{arm} · {group}"
            ax.plot(rows["step"], rows["mean"], color=color, ls=styles.get(group, "-."), label=text)
            ax.fill_between(rows["step"], rows["low"], rows["high"], color=color, alpha=0.15, lw=0)
    ax.set(xlabel="step", ylabel=metric)
    if log:
        ax.set_yscale("log")

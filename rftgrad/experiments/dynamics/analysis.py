"""Analysis of ``dynamics``: closed form vs ODE, fitted slopes, discrete steps vs the flow, neighbours."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.plotting import COLORS, figure_grid, save_figure, themed
from rftgrad.theory.dynamics import asymptotic_constant, closed_form_hitting_time, loglog_slope, std_from_p0

#: markers of the K values (panel 1) and of the step sizes (panel 2), in order.
MARKERS = ("o", "s", "^", "D", "v", "P")
#: the markers' glyphs for the legend: filled for gradient ascent, open for Adam.
GLYPHS = {"sgd": ("●", "■", "▲", "◆", "▼"), "adam": ("○", "□", "△", "◇", "▽")}
OPTIMIZER_STYLE = {"sgd": ("-", "gradient ascent"), "adam": ("--", "Adam")}
#: line styles of the correlated-inputs cases (panel 3).
CASE_STYLES = {"alone": "-", "same label": "--", "other label": ":"}


def _fit_window(flow: pd.DataFrame) -> pd.DataFrame:
    """The rows whose ``p0`` lies in the config's fit window (``fit_p0_min``, ``fit_p0_max``)."""
    return flow[flow["in_fit_window"].astype(bool)]


def _slope(x: pd.Series, y: pd.Series) -> float:
    return loglog_slope(x, y) if len(x) >= 2 else math.nan


def flow_slopes(flow: pd.DataFrame) -> dict[str, dict[int, float]]:
    """Log-log slope of the ODE hitting time against ``STD_0`` per objective and ``K`` over the fit window
    (``nan`` where the window holds fewer than two ``p0``)."""
    return {
        objective: {int(k): _slope(g["std0"], g["time_ode"]) for k, g in group.groupby("num_labels")}
        for objective, group in _fit_window(flow).groupby("objective")
    }


def sft_log_ratio(flow: pd.DataFrame) -> dict[int, dict[str, Any]]:
    """``T_SFT / ln(1/STD_0)`` per ``K`` from ``p0_min`` up to the fit window's top, against ``c' = 2(K − 1)/K``.

    ``ratio``: ``{p0: T/ln(1/STD_0)}``; ``decreasing``: it falls monotonically toward ``c'`` as ``p0``
    shrinks; ``gap_times_log``: ``max (ratio − c') · ln(1/STD_0)``, bounded when the gap is O(1/ln).
    """
    top = _fit_window(flow)["p0"].max()
    sft = flow[(flow["objective"] == "SFT") & (flow["p0"] <= top)].sort_values("p0")
    out = {}
    for k, group in sft.groupby("num_labels"):
        log_inverse = np.log(1 / group["std0"].to_numpy())
        ratio = group["time_ode"].to_numpy() / log_inverse
        limit = float(asymptotic_constant(int(k), "sft"))
        out[int(k)] = {
            "ratio": {float(p0): float(r) for p0, r in zip(group["p0"], ratio, strict=True)},
            "limit": limit,
            "decreasing": bool(np.all(np.diff(ratio) > 0)),  # sorted by increasing p0
            "gap_times_log": float(((ratio - limit) * log_inverse).max()),
        }
    return out


def discrete_errors(discrete: pd.DataFrame) -> dict[str, dict[str, dict[str, dict[float, float]]]]:
    """``|n·η − T_flow| / T_flow`` per optimizer, objective and step size: ``max`` over ``p0`` and
    ``at_smallest_p0`` (``inf`` where a run did not reach the target in ``max_steps``)."""
    out: dict[str, dict[str, dict[str, dict[float, float]]]] = {}
    for (optimizer, objective), group in discrete.groupby(["optimizer", "objective"]):
        errors = ((group["time"] - group["time_flow"]).abs() / group["time_flow"]).fillna(math.inf)
        smallest = group["p0"] == group["p0"].min()
        out.setdefault(optimizer, {})[objective] = {
            "max": {float(eta): float(err) for eta, err in errors.groupby(group["step_size"]).max().items()},
            "at_smallest_p0": {
                float(eta): float(err) for eta, err in zip(group["step_size"][smallest], errors[smallest], strict=True)
            },
        }
    return out


def adam_slopes(discrete: pd.DataFrame) -> dict[str, dict[float, float]]:
    """Log-log slope of Adam's ``n·η`` against ``STD_0`` per objective and learning rate (all ``p0``)."""
    adam = discrete[(discrete["optimizer"] == "adam") & discrete["time"].notna()]
    return {
        objective: {float(eta): _slope(g["std0"], g["time"]) for eta, g in group.groupby("step_size")}
        for objective, group in adam.groupby("objective")
    }


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Closed form vs ODE, slopes, ``T_SFT/ln(1/STD_0)``, discrete errors, Adam slopes, neighbour effects."""
    flow, discrete, hits = tables["hitting_times"], tables["discrete"], tables["correlated_hitting"]
    gd = discrete_errors(discrete).get("sgd", {})
    neighbours = {}
    for objective, group in hits.groupby("objective"):
        times = dict(zip(group["case"], group["hit_time"], strict=True))
        neighbours[objective] = {
            "hit_time": {case: float(t) for case, t in times.items()},
            "speedup_same_label": float(times["alone"] / times["same label"]),
            "slowdown_other_label": float(times["other label"] / times["alone"]),
            "alone_vs_closed_form_rel_error": float(
                abs(times["alone"] - group["time_alone_closed_form"].iloc[0]) / group["time_alone_closed_form"].iloc[0]
            ),
        }
    return {
        "max_rel_error_closed_form_vs_ode": float(flow["rel_error"].max()),
        "p0_range": [float(flow["p0"].min()), float(flow["p0"].max())],
        "fit_window_p0": [float(_fit_window(flow)["p0"].min()), float(_fit_window(flow)["p0"].max())],
        "loglog_slope_in_fit_window": flow_slopes(flow),
        "asymptotic_constant": {int(k): float(asymptotic_constant(int(k), "rft")) for k in flow["num_labels"].unique()},
        "sft_time_over_log_inverse_std": sft_log_ratio(flow),
        "gd_rel_error_vs_flow": gd,
        "gd_error_shrinks_with_step": {
            objective: bool(np.all(np.diff([errors["max"][eta] for eta in sorted(errors["max"], reverse=True)]) < 0))
            for objective, errors in gd.items()
        },
        "adam_loglog_slope": adam_slopes(discrete),
        "correlated_inputs": neighbours,
    }


def _std(p0: np.ndarray) -> np.ndarray:
    return 2 * np.sqrt(p0 * (1 - p0))


@themed()
def plot_dynamics(flow: pd.DataFrame, discrete: pd.DataFrame, trajectories: pd.DataFrame) -> Any:  # noqa: ANN401
    """Four panels. (1) Flow hitting time vs ``STD_0``, log-log: points ODE, lines closed form, dashes
    the asymptotes, fitted slopes in the legend. (2) GD and Adam ``n·η`` vs ``STD_0`` with the flow's
    time. (3) Expected reward of a small-STD input alone / with a correlated neighbour of the same or
    another label. (4) Relative gap between the ODE and the closed form."""
    fig, (left, middle, right, check), _ = figure_grid(4, list(CASE_STYLES))
    slopes = flow_slopes(flow)
    target = float(flow["target"].iloc[0])
    ks = sorted(flow["num_labels"].unique())
    dense = np.geomspace(flow["p0"].min(), flow["p0"].max(), 200)
    for objective, group in flow.groupby("objective"):
        color = COLORS[objective]
        for marker, k in zip(MARKERS, ks, strict=False):
            points = group[group["num_labels"] == k]
            slope = slopes.get(objective, {}).get(int(k), math.nan)
            label = f"{objective} K={k} ODE (slope {slope:.3f})"
            left.scatter(points["std0"], points["time_ode"], color=color, marker=marker, s=16, zorder=3, label=label)
            curve = closed_form_hitting_time(dense, int(k), target, objective.lower())
            left.plot(_std(dense), curve, color=color, lw=0.8)
            check.plot(
                points["p0"], points["rel_error"], color=color, marker=marker, ms=3, lw=0.8, label=f"{objective} K={k}"
            )
        c = float(asymptotic_constant(int(ks[-1]), objective.lower()))
        small = _std(dense[dense <= 0.1])
        asymptote = c / small**2 if objective == "RFT" else c * np.log(1 / small)
        shape = "c/STD₀²" if objective == "RFT" else "c′ ln(1/STD₀)"
        left.plot(small, asymptote, color=color, ls="--", lw=0.8, label=f"{shape}, {c:.3g} at K={ks[-1]}")
    left.set(xscale="log", yscale="log", xlabel="initial reward std STD₀", ylabel="flow time to reach V_target")
    left.set_title(f"gradient flow: lines closed form, points ODE (V_target = {target:g})")
    left.legend(fontsize=6)

    draw_discrete_steps(middle, discrete, target)

    rho = trajectories.loc[trajectories["case"] != "alone", "correlation"].max()
    for (objective, case), group in trajectories.groupby(["objective", "case"]):
        style = CASE_STYLES[case]
        right.plot(group["time"], group["reward_mean"], color=COLORS[objective], ls=style, label=f"{objective}, {case}")
    right.axhline(target, color="black", lw=0.6, ls="-.", label="V_target")
    right.set(xscale="log", xlabel="flow time", ylabel="expected reward of the small-STD input")
    right.set_title(f"correlated inputs: a neighbour with x·x′ = {rho:g}")
    right.legend(fontsize=6)

    check.axhline(1e-6, color="black", lw=0.6, ls="--", label="1e-6 (required)")
    check.set(xscale="log", yscale="log", xlabel="initial probability p₀", ylabel="|T_ODE − T_closed| / T_closed")
    check.set_title("ODE (full K-dim logits) vs closed form")
    check.legend(fontsize=6)
    return fig


def flow_panel_k(flow: pd.DataFrame, discrete: pd.DataFrame) -> int:
    """The K of a one-K flow panel: the discrete runs' K when the flow sweep has it, else the sweep's middle K."""
    ks = sorted(int(k) for k in flow["num_labels"].unique())
    k = int(discrete["num_labels"].iloc[0])
    return k if k in ks else ks[len(ks) // 2]


def draw_flow_times(ax: Any, flow: pd.DataFrame, k: int) -> dict[str, float]:  # noqa: ANN401 - a matplotlib Axes
    """On ``ax`` (log-log), at one ``K``: the flow time for ``2p − 1`` to reach the target under
    ``dz/dt = 2p(e_y* − π)`` (RFT) and ``dz/dt = e_y* − π`` (SFT) against ``STD₀ = 2 sqrt(p₀(1 − p₀))``
    (Theorem 2, docs/paper.md §3): points the ODE, lines the closed forms, dashed the RFT asymptote
    ``c/STD₀²``, ``c = 2(K − 1)/K``. Returns the fitted log-log slope per objective over the fit window."""
    target = float(flow["target"].iloc[0])
    rows = flow[flow["num_labels"] == k]
    dense = np.geomspace(rows["p0"].min(), rows["p0"].max(), 200)
    slopes = {}
    for objective, group in rows.groupby("objective"):
        color = COLORS[str(objective)]
        window = _fit_window(group)
        slopes[str(objective)] = _slope(window["std0"], window["time_ode"])
        curve = closed_form_hitting_time(dense, k, target, str(objective).lower())
        ax.plot(std_from_p0(dense), curve, color=color, lw=1.2)
        shape = f"slope {slopes[str(objective)]:.2f}" if objective == "RFT" else "≈ c′ ln(1/STD₀)"
        ax.scatter(group["std0"], group["time_ode"], color=color, s=18, zorder=3, label=f"{objective}: ODE, {shape}")
    small = std_from_p0(dense[dense <= 0.05])
    c = float(asymptotic_constant(k, "rft"))
    ax.plot(small, c / small**2, color="black", lw=0.8, ls="--", label=f"c/STD₀², c = 2(K−1)/K = {c:.2f}")
    ax.set(xscale="log", yscale="log", xlabel="initial reward STD₀", ylabel="flow time to reach the target")
    ax.set_title(f"gradient flow (K = {k}, target V = {target:g})")
    ax.legend(fontsize=7, loc="upper right", title="lines: closed form", title_fontsize=7)
    return slopes


def draw_discrete_steps(ax: Any, discrete: pd.DataFrame, target: float) -> None:  # noqa: ANN401 - a matplotlib Axes
    """On ``ax`` (log-log): ``n·η`` (steps × step size) of gradient ascent (filled markers) and Adam (open,
    dashed) to reach ``target`` against ``STD₀``, per objective and step size, over the flow's closed-form
    time (wide faint line): gradient ascent tends to the flow as ``η → 0``."""
    from matplotlib.lines import Line2D

    k = int(discrete["num_labels"].iloc[0])
    dense = np.geomspace(discrete["p0"].min(), discrete["p0"].max(), 200)
    for objective, group in discrete.groupby("objective"):
        color = COLORS[str(objective)]
        flow_time = closed_form_hitting_time(dense, k, target, str(objective).lower())
        ax.plot(std_from_p0(dense), flow_time, color=color, lw=3, alpha=0.3)
        for optimizer, (style, _) in OPTIMIZER_STYLE.items():
            runs = group[(group["optimizer"] == optimizer) & group["time"].notna()]
            for marker, (_, points) in zip(MARKERS, runs.groupby("step_size", sort=False), strict=False):
                ax.plot(points["std0"], points["time"], color=color, ls=style, lw=0.9, marker=marker, ms=3.5,
                        mfc="white" if optimizer == "adam" else color)  # fmt: skip
    handles = [Line2D([], [], color=COLORS[name], lw=2, label=name) for name in sorted(discrete["objective"].unique())]
    handles.append(Line2D([], [], color="0.5", lw=3, alpha=0.3, label="flow (closed form)"))
    for optimizer, (style, name) in OPTIMIZER_STYLE.items():
        sizes = discrete.loc[discrete["optimizer"] == optimizer, "step_size"].drop_duplicates()
        label = f"{name}, η = " + ", ".join(f"{eta:g} {glyph}" for eta, glyph in zip(sizes, GLYPHS[optimizer],
                                                                                      strict=False))  # fmt: skip
        handles.append(Line2D([], [], color="0.3", ls=style, lw=0.9, label=label))
    ax.set(xscale="log", yscale="log", xlabel="initial reward STD₀", ylabel="steps × step size η")
    ax.set_title(f"discrete steps (K = {k})")
    ax.legend(handles=handles, fontsize=7, loc="upper right")


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``dynamics.png`` (and .pdf) into ``out_dir``."""
    figure = plot_dynamics(tables["hitting_times"], tables["discrete"], tables["correlated_trajectories"])
    return [save_figure(figure, Path(out_dir) / "dynamics")]

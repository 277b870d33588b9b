"""Analysis of ``dynamics``: closed form vs ODE, fitted slopes, discrete steps vs the flow, neighbours."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.experiments.base import save_figure
from rftgrad.experiments.style import COLORS, figure_grid
from rftgrad.theory.dynamics import asymptotic_constant, closed_form_hitting_time, loglog_slope

#: markers of the K values (panel 1) and of the step sizes (panel 2), in order.
MARKERS = ("o", "s", "^", "D", "v", "P")
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
    gd = discrete_errors(discrete).get("gd", {})
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

    k = int(discrete["num_labels"].iloc[0])
    for objective, group in discrete.groupby("objective"):
        color = COLORS[objective]
        flow_time = closed_form_hitting_time(dense, k, target, objective.lower())
        middle.plot(_std(dense), flow_time, color=color, lw=2, alpha=0.5, label=f"{objective} flow")
        for optimizer, style in (("gd", "-"), ("adam", "--")):
            runs = group[(group["optimizer"] == optimizer) & group["time"].notna()]
            for marker, (eta, run) in zip(MARKERS, runs.groupby("step_size"), strict=False):
                label = f"{objective} {optimizer.upper()} η={eta:g}"
                if optimizer == "adam" and len(run) > 1:
                    label += f" (slope {loglog_slope(run['std0'], run['time']):.2f})"
                alpha = 0.9 if optimizer == "gd" else 0.6
                middle.plot(
                    run["std0"],
                    run["time"],
                    color=color,
                    ls=style,
                    lw=0.7,
                    marker=marker,
                    ms=3,
                    alpha=alpha,
                    label=label,
                )
    middle.set(xscale="log", yscale="log", xlabel="initial reward std STD₀", ylabel="steps × step size η")
    middle.set_title(f"discrete steps (K={k}): GD → flow as η → 0; Adam (dashed)")
    middle.legend(fontsize=5, ncol=2, loc="upper right")

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


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``dynamics.png`` (and .pdf) into ``out_dir``."""
    figure = plot_dynamics(tables["hitting_times"], tables["discrete"], tables["correlated_trajectories"])
    return [save_figure(figure, Path(out_dir) / "dynamics")]

"""Analysis of ``estimators``: fitted powers, closed form vs Monte Carlo, curves at equal sample budgets, pass@k.

The score holds, per estimator and ``G``, the power and constant of ``E u ≈ C p^a`` as ``p → 0``
(asymptotic, fitted to the closed form and fitted to the Monte Carlo means over the fit window),
the largest closed-form-vs-Monte-Carlo gaps, each learning-curve run's final reward per group at
the common budget of sampled outputs per input, and pass@k against pass@1 on the same inputs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.plotting import figure_grid, palette, save_figure, select_records, themed
from rftgrad.theory.group_updates import (
    asymptotic_update,
    expected_update,
    fit_power,
    frac_reward_zero_std,
    informative_prob,
)

GROUPS = ("modified", "unmodified")
#: markers of the group sizes, in order.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


# ----------------------------------------------------------------------------- the sweep
def weighted_power_fit(p: np.ndarray, mean: np.ndarray, sem: np.ndarray) -> tuple[float, float, float]:
    """``ln u = a ln p + ln C`` by least squares weighted by ``1/σ²``, ``σ = sem/mean`` (delta method):
    ``(a, C, SE of a)``; NaN where a mean is not positive or fewer than two points."""
    if len(p) < 2 or np.any(mean <= 0):
        return math.nan, math.nan, math.nan
    x, y = np.log(p), np.log(mean)
    weight = 1.0 / np.maximum(sem / mean, 1e-12) ** 2
    x_bar = (weight * x).sum() / weight.sum()
    spread = (weight * (x - x_bar) ** 2).sum()
    slope = (weight * (x - x_bar) * (y - (weight * y).sum() / weight.sum())).sum() / spread
    intercept = (weight * (y - slope * x)).sum() / weight.sum()
    return float(slope), float(math.exp(intercept)), float(1.0 / math.sqrt(spread))


def fit_table(updates: pd.DataFrame) -> pd.DataFrame:
    """Per (estimator, G): the asymptote ``(a, C)`` and fits of the closed form and of the Monte Carlo
    means over the fit window."""
    rows = []
    for (estimator, group), table in updates.groupby(["estimator", "group_size"]):
        window = table[table["in_fit_window"].astype(bool)].sort_values("p")
        std_eps, tries = float(table["std_eps"].iloc[0]), float(table["max_resample"].iloc[0])
        asymptote = asymptotic_update(int(group), str(estimator), std_eps=std_eps, max_resample=tries)
        closed = fit_power(window["p"].to_numpy(), window["closed_form"].to_numpy())
        mc = weighted_power_fit(window["p"].to_numpy(), window["mc_mean"].to_numpy(), window["mc_sem"].to_numpy())
        rows.append(
            {
                "estimator": estimator,
                "group_size": int(group),
                "fit_p_max": float(window["p"].max()),
                "power_asymptotic": asymptote.power,
                "constant_asymptotic": asymptote.constant,
                "power_closed_form": closed.power,
                "constant_closed_form": closed.constant,
                "power_mc": mc[0],
                "constant_mc": mc[1],
                "power_mc_se": mc[2],
                # u/p at the smallest p: the constant without extrapolating a fit (relative SE ≈ 1/sqrt(n))
                "ratio_closed_form": float(window["closed_form"].iloc[0] / window["p"].iloc[0]),
                "ratio_mc": float(window["mc_mean"].iloc[0] / window["p"].iloc[0]),
                "ratio_mc_se": float(window["mc_sem"].iloc[0] / window["p"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


def by_estimator(fits: pd.DataFrame, column: str) -> dict[str, dict[int, float]]:
    """``{estimator: {G: value}}`` of one column of :func:`fit_table`."""
    return {
        str(estimator): {int(g): float(v) for g, v in zip(table["group_size"], table[column], strict=True)}
        for estimator, table in fits.groupby("estimator", sort=False)
    }


# ----------------------------------------------------------------------------- the learning curves
def cumulative_samples(records: pd.DataFrame) -> pd.DataFrame:
    """Per (run, replica, step): sampled outputs per input so far, from the ``samples_per_input`` step
    metric (averaged over the steps since the previous evaluation, hence times the steps between)."""
    rows = records[(records["metric"] == "samples_per_input") & (records["split"] == "batch")]
    frames = []
    for (run, replica), table in rows.groupby(["run", "replica"]):
        table = table.sort_values("step")
        steps = np.concatenate([[0], table["step"].to_numpy()])
        total = np.concatenate([[0.0], np.cumsum(table["value"].to_numpy() * np.diff(steps))])
        frames.append(pd.DataFrame({"run": run, "replica": replica, "step": steps, "samples": total}))
    return pd.concat(frames, ignore_index=True)


def reward_vs_samples(records: pd.DataFrame, group: str) -> pd.DataFrame:
    """The group's exact expected reward (train split) per (run, replica, step) with its sample count."""
    reward = select_records(records, "reward_mean", "train", group)[["run", "replica", "step", "value"]]
    return reward.merge(cumulative_samples(records), on=["run", "replica", "step"], how="inner")


def curve_runs(records: pd.DataFrame) -> list[str]:
    """The pass@1 runs, in the order they were trained."""
    return list(dict.fromkeys(records.loc[records["pass_k"] == 1, "run"]))


def budget(records: pd.DataFrame) -> float:
    """The common budget: the fewest sampled outputs per input any pass@1 run reached (mean over replicas)."""
    totals = cumulative_samples(records).groupby(["run", "replica"])["samples"].max().groupby("run").mean()
    return float(totals[curve_runs(records)].min())


def rewards_at_budget(records: pd.DataFrame, limit: float) -> dict[str, dict[str, dict[str, float]]]:
    """Run -> group -> the reward at the start, at the last evaluation within ``limit`` sampled outputs per
    input (mean and std over seeds, and the steps that took) and at the run's last step (with its samples)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for group in GROUPS:
        table = reward_vs_samples(records, group)
        for run, rows in table.groupby("run", sort=False):
            within = rows[rows["samples"] <= limit * (1 + 1e-9)]
            last = within[within["step"] == within.groupby("replica")["step"].transform("max")]
            end = rows[rows["step"] == rows["step"].max()]
            out.setdefault(str(run), {})[group] = {
                "start": float(rows[rows["step"] == 0]["value"].mean()),
                "at_budget": float(last["value"].mean()),
                "at_budget_std_over_seeds": float(last["value"].std(ddof=1)) if len(last) > 1 else 0.0,
                "steps_within_budget": float(last["step"].mean()),
                "end": float(end["value"].mean()),
                "samples_at_end": float(end["samples"].mean()),
            }
    return out


def pass_k_summary(records: pd.DataFrame) -> dict[str, Any]:
    """The pass@k run against the pass@1 run of the same estimator: final pass@1 reward per group."""
    passk = records[records["pass_k"] > 1]
    k, estimator = int(passk["pass_k"].iloc[0]), str(passk["estimator"].iloc[0])
    reference = records[(records["pass_k"] == 1) & (records["estimator"] == estimator)]
    out: dict[str, Any] = {"k": k, "estimator": estimator}
    for group in GROUPS:
        entry = {}
        for name, table in ((f"pass@{k} training", passk), ("pass@1 training", reference)):
            rows = select_records(table, "reward_mean", "train", group)
            end = rows[rows["step"] == rows["step"].max()]["value"]
            entry[name] = {"start": float(rows[rows["step"] == 0]["value"].mean()), "end": float(end.mean())}
            entry[name]["end_std_over_seeds"] = float(end.std(ddof=1)) if len(end) > 1 else 0.0
        out[group] = entry
    return out


# ----------------------------------------------------------------------------- score
def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Powers and constants, closed form vs Monte Carlo, rewards at the common budget, pass@k; a summary."""
    updates, records = tables["updates"], tables["records"]
    fits = fit_table(updates)
    positive = updates[updates["closed_form"] > 0]
    z = (positive["mc_mean"] - positive["closed_form"]).abs() / positive["mc_sem"].where(positive["mc_sem"] > 0)
    relative = (positive["mc_mean"] - positive["closed_form"]).abs() / positive["closed_form"]
    limit = budget(records)
    final = rewards_at_budget(records, limit)
    pass_k = pass_k_summary(records)
    k = pass_k["k"]
    dapo_kept = {
        int(g): asymptotic_update(int(g), "dapo", std_eps=float(updates["std_eps"].iloc[0]), max_resample=math.inf)
        for g in sorted(updates["group_size"].unique())
    }
    modified = ", ".join(f"{run} {values['modified']['at_budget']:+.3f}" for run, values in final.items())
    mod_k = pass_k["modified"]
    return {
        "fitted_power": {
            "asymptotic": by_estimator(fits, "power_asymptotic"),
            "closed_form": by_estimator(fits, "power_closed_form"),
            "monte_carlo": by_estimator(fits, "power_mc"),
            "monte_carlo_se": by_estimator(fits, "power_mc_se"),
        },
        "constant": {
            "asymptotic": by_estimator(fits, "constant_asymptotic"),
            "closed_form_fit": by_estimator(fits, "constant_closed_form"),
            "monte_carlo_fit": by_estimator(fits, "constant_mc"),
            "p_min": float(updates["p"].min()),
            "closed_form_u_over_p_at_p_min": by_estimator(fits, "ratio_closed_form"),
            "monte_carlo_u_over_p_at_p_min": by_estimator(fits, "ratio_mc"),
            "monte_carlo_u_over_p_at_p_min_se": by_estimator(fits, "ratio_mc_se"),
        },
        "fit_p_max": {f"{r.estimator} G={r.group_size}": float(r.fit_p_max) for r in fits.itertuples()},
        "dapo_unbounded_per_kept_group": {g: {"power": 0.0, "constant": a.constant} for g, a in dapo_kept.items()},
        "max_rel_error_closed_form_vs_mc": float(relative.max()),
        "max_abs_z_closed_form_vs_mc": float(z.max()),
        "max_abs_error_frac_reward_zero_std": float(
            (updates["frac_zero_std_mc"] - updates["frac_zero_std_closed_form"]).abs().max()
        ),
        "budget_samples_per_input": limit,
        "final_reward": final,
        "pass_k": pass_k,
        "summary": (
            f"every estimator's expected update vanishes like p^1 at fixed G (fitted closed-form powers "
            f"{fits['power_closed_form'].min():.3f}-{fits['power_closed_form'].max():.3f}); modified-input reward "
            f"after {limit:.0f} samples per input: {modified}; pass@{k} vs pass@1 training: "
            f"{mod_k[f'pass@{k} training']['end']:+.3f} vs {mod_k['pass@1 training']['end']:+.3f}"
        ),
    }


# ----------------------------------------------------------------------------- figures
@themed()
def plot_zero_std(updates: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """``frac_reward_zero_std`` (left, log x) and the informative share ``1 - d ≈ Gp`` (right, log-log) against
    ``p``: closed form (lines) and the share measured over every estimator's draws (markers, ±2 SE)."""
    groups = sorted(updates["group_size"].unique())
    fig, (left, right), colors = figure_grid(2, groups)
    dense = np.geomspace(updates["p"].min(), updates["p"].max(), 300)
    for marker, group in zip(MARKERS, groups, strict=False):
        color = colors[group]
        zero = frac_reward_zero_std(dense, int(group))
        left.plot(dense, zero, color=color, lw=1, label=f"G={group}: p^G + (1-p)^G")
        right.plot(dense, informative_prob(dense, int(group)), color=color, lw=1, label=f"G={group}")
        rows = updates[updates["group_size"] == group]
        pooled = rows.assign(hits=rows["frac_zero_std_mc"] * rows["num_draws"]).groupby("p")[["hits", "num_draws"]]
        total = pooled.sum()
        rate = total["hits"] / total["num_draws"]
        se = np.sqrt(rate * (1 - rate) / total["num_draws"])
        for ax, value in ((left, rate), (right, 1 - rate)):
            ax.errorbar(rate.index, value, yerr=2 * se, fmt=marker, ms=3.5, color=color, lw=0.8, capsize=2)
    left.set(xscale="log", xlabel="success probability p", ylabel="frac_reward_zero_std", ylim=(-0.02, 1.02))
    left.set_title("groups with all-equal rewards: closed form (lines), measured (markers, ±2 SE)")
    left.legend(fontsize=7)
    right.set(xscale="log", yscale="log", xlabel="success probability p", ylabel="1 − frac_reward_zero_std")
    right.set_title("informative groups: 1 − d ≈ G p as p → 0")
    right.legend(fontsize=7)
    return fig


@themed()
def plot_updates(updates: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Expected update along the correct output against ``p``, log-log, one panel per estimator: closed
    form (lines), Monte Carlo means (markers, ±2 SE), the fitted power as ``p → 0`` in the legend; DAPO's
    panel adds the update per kept group with unbounded resampling (dashed, power 0)."""
    estimators = list(dict.fromkeys(updates["estimator"]))
    groups = sorted(updates["group_size"].unique())
    fig, axes, colors = figure_grid(len(estimators), groups)
    fits = fit_table(updates).set_index(["estimator", "group_size"])
    dense = np.geomspace(updates["p"].min(), updates["p"].max(), 300)
    for ax, estimator in zip(axes, estimators, strict=True):
        rows = updates[updates["estimator"] == estimator]
        std_eps, tries = float(rows["std_eps"].iloc[0]), int(rows["max_resample"].iloc[0])
        for marker, group in zip(MARKERS, groups, strict=False):
            color, fit = colors[group], fits.loc[(estimator, group)]
            curve = expected_update(dense, int(group), estimator, std_eps=std_eps, max_resample=tries)
            label = f"G={group}: p^{fit['power_closed_form']:.2f} (MC {fit['power_mc']:.2f}±{fit['power_mc_se']:.2f})"
            ax.plot(dense, curve, color=color, lw=1, label=label)
            points = rows[rows["group_size"] == group]
            ax.errorbar(points["p"], points["mc_mean"], yerr=2 * points["mc_sem"], fmt=marker, ms=3.5, color=color,
                        lw=0.8, capsize=2)  # fmt: skip
            if estimator == "dapo":
                kept = expected_update(dense, int(group), "dapo", std_eps=std_eps, max_resample=math.inf)
                ax.plot(
                    dense, kept, color=color, lw=0.8, ls="--", label="B = ∞, per kept group" if group == 2 else None
                )
        title = f"{estimator}" + (f" (B = {tries} tries)" if estimator == "dapo" else "")
        ax.set(xscale="log", yscale="log", xlabel="success probability p", ylabel="E[update along z_c]", title=title)
        ax.legend(fontsize=6, loc="lower right")
    return fig


def draw_band(ax: Any, table: pd.DataFrame, x: str, color: Any, label: str) -> None:  # noqa: ANN401
    """Mean over replicas (line) and 10-90% band of ``value`` against ``x``, per evaluation step."""
    rows = table.groupby("step").agg(
        x=(x, "mean"), mean=("value", "mean"), low=("value", lambda v: v.quantile(0.1)),
        high=("value", lambda v: v.quantile(0.9)),
    )  # fmt: skip
    ax.plot(rows["x"], rows["mean"], color=color, label=label)
    ax.fill_between(rows["x"], rows["low"], rows["high"], color=color, alpha=0.15, lw=0)


@themed()
def plot_learning_curves(records: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Exact expected reward of the modified (small-STD) and unmodified inputs against sampled outputs per
    input (DAPO: what dynamic sampling draws), per estimator; the dotted line is the common budget."""
    runs = curve_runs(records)
    fig, axes, colors = figure_grid(2, runs)
    limit = budget(records)
    for ax, group in zip(axes, GROUPS, strict=True):
        table = reward_vs_samples(records, group)
        for run in runs:
            draw_band(ax, table[table["run"] == run], "samples", colors[run], run)
        ax.axvline(limit, color="black", lw=0.6, ls=":", label=f"budget {limit:.0f}")
        ax.set(xlabel="sampled outputs per input", ylabel="expected reward (exact)", xlim=(0, 1.5 * limit))
        ax.set_title(f"{group} inputs" + (" (small STD at the start)" if group == "modified" else ""))
        ax.legend(fontsize=7)
    return fig


@themed()
def plot_pass_k(records: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """pass@1 reward (exact) of the modified and unmodified inputs while training on pass@k vs on pass@1."""
    summary = pass_k_summary(records)
    k, estimator = summary["k"], summary["estimator"]
    passk = records[records["pass_k"] > 1]
    reference = records[(records["pass_k"] == 1) & (records["estimator"] == estimator)]
    fig, axes, _ = figure_grid(2, [1, k])
    colors = {f"pass@{k} training": "#8e44ad", "pass@1 training": "#7f8c8d"}
    for ax, group in zip(axes, GROUPS, strict=True):
        for name, table in ((f"pass@{k} training", passk), ("pass@1 training", reference)):
            rows = select_records(table, "reward_mean", "train", group)
            draw_band(ax, rows, "step", colors[name], f"{estimator}, {name}")
        ax.set(xlabel="step", ylabel="pass@1 expected reward (exact)", title=f"{group} inputs")
        ax.legend(fontsize=7)
    return fig


#: names of the estimators in legends.
NAMES = {"reinforce": "REINFORCE", "rloo": "RLOO", "dr_grpo": "Dr. GRPO", "grpo": "GRPO", "dapo": "DAPO"}
#: budget panel: marker and fill of each input group's mean, and the line style of its starting reward.
GROUP_STYLE = {"modified": ("o", True), "unmodified": ("s", False)}
GROUP_START = {"modified": "--", "unmodified": ":"}


def run_label(run: str) -> str:
    """``"rloo pass@4"`` -> ``"RLOO, pass@4"``; ``"grpo"`` -> ``"GRPO"``."""
    estimator, _, rest = run.partition(" ")
    return NAMES.get(estimator, estimator) + (f", {rest}" if rest else "")


def at_budget(records: pd.DataFrame, group: str, limit: float) -> pd.DataFrame:
    """Per (run, replica): the group's exact expected reward at the last evaluation within ``limit`` sampled
    outputs per input (DAPO counts what dynamic sampling draws)."""
    table = reward_vs_samples(records, group)
    within = table[table["samples"] <= limit * (1 + 1e-9)]
    return within[within["step"] == within.groupby(["run", "replica"])["step"].transform("max")]


def estimator_colors(updates: pd.DataFrame, records: pd.DataFrame) -> dict[str, Any]:
    """One colour per estimator of the sweep and per training run (an estimator keeps its colour in both)."""
    return palette(list(dict.fromkeys([*updates["estimator"], *records["run"]])))


def draw_update_curves(ax: Any, updates: pd.DataFrame, group: int, colors: dict[str, Any]) -> None:  # noqa: ANN401
    """On ``ax`` (log-log), at group size ``group``: ``E u`` along ``z_c`` against ``p`` per estimator, e.g.
    ``Δ p(1−p)`` for REINFORCE/RLOO, ``((G−1)/G) Δ p(1−p)`` for Dr. GRPO, ``Σ_k C(G,k) p^k (1−p)^(G−k) u_k``
    for GRPO and ``(1 − d^B)/(1 − d)`` times that for DAPO (``d = p^G + (1−p)^G``, Δ = 2; docs/paper.md §7):
    closed forms (lines; one equal to an earlier one is dotted), Monte Carlo means (markers, ±2 SE), the fitted
    power over the fit window in the legend, and DAPO with unbounded resampling per kept group (dashed)."""
    fits = fit_table(updates).set_index(["estimator", "group_size"])
    rows = updates[updates["group_size"] == group]
    dense = np.geomspace(rows["p"].min(), rows["p"].max(), 300)
    drawn_curves: dict[str, np.ndarray] = {}
    for marker, estimator in zip(MARKERS, dict.fromkeys(updates["estimator"]), strict=False):
        points = rows[rows["estimator"] == estimator]
        std_eps, tries = float(points["std_eps"].iloc[0]), float(points["max_resample"].iloc[0])
        fit = fits.loc[(estimator, group)]
        name = NAMES.get(estimator, estimator) + (f" (B = {tries:g})" if estimator == "dapo" else "")
        curve = expected_update(dense, group, estimator, std_eps=std_eps, max_resample=tries)
        same = [other for other, drawn in drawn_curves.items() if np.allclose(curve, drawn, rtol=1e-12, atol=0)]
        name += f" (= {', '.join(same)})" if same else ""
        label = f"{name}: $p^{{{fit['power_closed_form']:.2f}}}$"
        ax.plot(dense, curve, color=colors[estimator], lw=2 if same else 1.2, ls=":" if same else "-", label=label)
        drawn_curves[NAMES.get(estimator, estimator)] = curve
        ax.errorbar(points["p"], points["mc_mean"], yerr=2 * points["mc_sem"], fmt=marker, ms=3.5, lw=0.8,
                    capsize=1.5, color=colors[estimator], mfc="white")  # fmt: skip
        if estimator == "dapo":
            kept = expected_update(dense, group, "dapo", std_eps=std_eps, max_resample=math.inf)
            ax.plot(dense, kept, color=colors[estimator], lw=1.2, ls="--", label="DAPO, B = ∞, per kept group: $p^0$")
    ax.set(xscale="log", yscale="log", xlabel="success probability p", ylabel="expected update along z_correct")
    ax.set_title(f"expected update per group, G = {group}")
    ax.set_ylim(bottom=rows.loc[rows["mc_mean"] > 0, "mc_mean"].min() / 300)  # room for the legend below the data
    ax.legend(fontsize=7, loc="lower right", title="lines: closed form\nmarkers: Monte Carlo ±2 SE", title_fontsize=7)


def draw_budget_rewards(ax: Any, records: pd.DataFrame, colors: dict[str, Any]) -> dict[str, pd.Series]:  # noqa: ANN401
    """On ``ax``: each training run's exact expected reward of the modified and unmodified inputs at the common
    budget of sampled outputs per input (:func:`budget`; large markers: mean over seeds; dots: seeds; the
    lines start at the pretrained reward). Returns per input group the gain (run -> mean at budget - start)."""
    from matplotlib.lines import Line2D

    limit = budget(records)
    order = list(dict.fromkeys(records["run"]))  # training order: the pass@1 runs, then the pass@k run
    handles: list[Any] = []
    gains = {}
    for inputs, (marker, face) in GROUP_STYLE.items():
        start = float(select_records(records, "reward_mean", "train", inputs).query("step == 0")["value"].mean())
        ends = at_budget(records, inputs, limit)
        means = ends.groupby("run")["value"].mean()
        gains[inputs] = means - start
        ax.axvline(start, color="black", lw=0.8, ls=GROUP_START[inputs])
        handles.append(Line2D([], [], color="black", lw=0.8, ls=GROUP_START[inputs], marker=marker, ms=6, mec="0.3",
                              mfc="0.3" if face else "white", label=inputs))  # fmt: skip
        for y, name in enumerate(order):
            color = colors[name]
            seeds = ends[ends["run"] == name]["value"]
            ax.scatter(seeds, np.full(len(seeds), y), s=8, color=color, alpha=0.5, lw=0, zorder=8)
            fill = color if face else "white"
            ax.scatter([means[name]], [y], s=40, marker=marker, edgecolors=color, facecolors=fill, zorder=8)
            ax.plot([start, means[name]], [y, y], color=color, lw=1, alpha=0.6, zorder=8)
    ax.set_yticks(range(len(order)), [run_label(name) for name in order])
    ax.set_ylim(len(order) - 0.5, -1.4)  # top down, with a free row for the legend
    ax.set(xlabel=f"expected reward (exact) after {limit:.0f} samples per input", xlim=(-1.05, 1.05))
    ax.set_title("training at an equal sample budget")
    ax.legend(handles=handles, fontsize=7, loc="upper center", ncols=2, title="inputs: start → mean (dots: seeds)",
              title_fontsize=7)  # fmt: skip
    return gains


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``estimators_zero_std``, ``estimators_updates``, ``estimators_curves`` and ``estimators_pass_k``
    (PNG and PDF) into ``out_dir``."""
    out = Path(out_dir)
    updates, records = tables["updates"], tables["records"]
    return [
        save_figure(plot_zero_std(updates), out / "estimators_zero_std"),
        save_figure(plot_updates(updates), out / "estimators_updates"),
        save_figure(plot_learning_curves(records), out / "estimators_curves"),
        save_figure(plot_pass_k(records), out / "estimators_pass_k"),
    ]

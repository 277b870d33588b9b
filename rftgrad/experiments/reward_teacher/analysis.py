"""Analysis of ``reward_teacher``: does accuracy or induced variance predict how fast a reward model teaches?

Per initial policy: the Spearman rank correlation of *teaching speed* (``1 / time`` to the ground-truth
target; a censored proxy has speed 0, tied with the other censored ones) with each accuracy measure and
with the induced reward variance; the accuracy-1 proxies slower than a proxy of accuracy at most
:data:`LOW_ACCURACY`; the pairs of proxies whose order flips between policies A and B, and the rank
correlation of the times across the two policies; the rate check (every measured time at or above its
lower bound, which lies at or above the ``Var^{-1/2}`` curve); ``steps × lr`` against the flow time.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.experiments.reward_teacher.teacher import POLICY_NAMES, PROXY_FAMILIES, variance_rate_bound
from rftgrad.plotting import figure_grid, palette, save_figure, themed

#: "a less accurate reward model": accuracy at most this (the issue's 0.8).
LOW_ACCURACY = 0.8
#: accuracy counted as 1 (exactly 1 up to the rounding of a sum of K² products).
ONE = 1 - 1e-12
#: the two accuracy measures: column -> what it averages over.
ACCURACIES = {"accuracy_policy": "pairs y, y' ~ π(0) ⊗ π(0)", "accuracy_uniform": "uniform pairs"}
#: marker of each initial policy.
POLICY_MARKERS = {"A": "o", "B": "s"}


def teaching_time(rows: pd.DataFrame) -> pd.Series:
    """Hitting time with a censored proxy as ``inf`` (slower than every proxy that reached the target)."""
    return rows["hit_time"].where(~rows["censored"].astype(bool), math.inf)


def spearman(x: pd.Series | np.ndarray, y: pd.Series | np.ndarray) -> float:
    """Spearman's rank correlation with average ranks for ties (``nan`` if either side is constant)."""
    rx, ry = pd.Series(np.asarray(x)).rank(), pd.Series(np.asarray(y)).rank()
    if rx.nunique() < 2 or ry.nunique() < 2:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def correlations(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Policy (and ``"pooled"``: both policies' points together) -> Spearman of teaching speed (``1/time``, censored
    = 0) with each accuracy measure and with the induced variance."""
    groups = [(str(policy), rows) for policy, rows in table.groupby("policy")] + [("pooled", table)]
    out = {}
    for name, rows in groups:
        speed = 1 / teaching_time(rows)
        out[name] = {column: spearman(speed, rows[column]) for column in (*ACCURACIES, "variance")}
    return out


def sweep_correlations(table: pd.DataFrame, sweep: pd.DataFrame) -> dict[float, dict[str, dict[str, float]]]:
    """Rise -> :func:`correlations` with the teaching times of that rise (``sweep``: the ``rise_sweep`` table)."""
    keys = ["proxy", "policy"]
    base = table.drop(columns=["hit_time", "censored"]).set_index(keys)
    return {
        float(rise): correlations(rows.set_index(keys)[["hit_time", "censored"]].join(base).reset_index())
        for rise, rows in sweep.groupby("rise")
    }


def slow_accurate(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Per policy and accuracy measure: the slowest accuracy-1 proxy against the fastest proxy of accuracy at
    most :data:`LOW_ACCURACY` that beats it (none listed where no such proxy beats it)."""
    cases = []
    for (policy, rows), measure in itertools.product(table.groupby("policy"), ACCURACIES):
        times = teaching_time(rows)
        exact_rows, low_rows = rows[rows[measure] >= ONE], rows[rows[measure] <= LOW_ACCURACY]
        if exact_rows.empty or low_rows.empty:
            continue
        fast = times[low_rows.index].idxmin()
        exact_times = times[exact_rows.index]
        finite = exact_times[np.isfinite(exact_times)]
        # the slowest accuracy-1 proxy that reached the target, if one is slower than `fast`; else a censored one
        slow = finite.idxmax() if len(finite) and finite.max() > times[fast] else exact_times.idxmax()
        if times[fast] < times[slow]:
            cases.append({"policy": str(policy), "measure": measure,
                          "accurate_proxy": rows.at[slow, "proxy"], "accurate_time": float(times[slow]),
                          "accurate_variance": float(rows.at[slow, "variance"]),
                          "less_accurate_proxy": rows.at[fast, "proxy"], "less_accurate_time": float(times[fast]),
                          "less_accurate_accuracy": float(rows.at[fast, measure]),
                          "less_accurate_variance": float(rows.at[fast, "variance"]),
                          "slowdown": float(times[slow] / times[fast])})  # fmt: skip
    return cases


def policy_times(table: pd.DataFrame) -> pd.DataFrame:
    """Proxy -> its teaching time under policy A and under policy B (censored: ``inf``), in config order."""
    times = table.assign(time=teaching_time(table)).pivot(index="proxy", columns="policy", values="time")
    return times.loc[list(dict.fromkeys(table["proxy"])), list(POLICY_NAMES)]


def flips(table: pd.DataFrame) -> dict[str, Any]:
    """Pairs ``(p, q)`` with ``p`` strictly faster than ``q`` under A and strictly slower under B; the largest (by the
    product of the two log time ratios; among pairs reaching the target under both policies where there are such),
    their count, and Spearman of the times across policies (censored = slowest)."""
    times = policy_times(table)
    found = []
    for p, q in itertools.combinations(times.index, 2):
        a, b = times.loc[p], times.loc[q]
        order_a = int(a["A"] > b["A"]) - int(a["A"] < b["A"])  # two censored (inf, inf) compare equal: no flip
        order_b = int(a["B"] > b["B"]) - int(a["B"] < b["B"])
        if order_a * order_b < 0:
            first, second = (p, q) if a["A"] < b["A"] else (q, p)
            ratio_a = times.at[second, "A"] / times.at[first, "A"]
            ratio_b = times.at[first, "B"] / times.at[second, "B"]
            size = math.log(min(ratio_a, 1e12)) * math.log(min(ratio_b, 1e12))
            found.append((size, first, second, ratio_a, ratio_b))
    out: dict[str, Any] = {"count": len(found), "pairs": len(times) * (len(times) - 1) // 2,
                           "spearman_across_policies": spearman(times["A"], times["B"])}  # fmt: skip
    finite = [item for item in found if math.isfinite(item[3]) and math.isfinite(item[4])]
    if found:  # the largest flip between proxies that reach the target under both policies, if any
        _, first, second, ratio_a, ratio_b = max(finite or found)
        out["largest"] = {
            "faster_under_A": first, "faster_under_B": second,
            "time_A": {first: float(times.at[first, "A"]), second: float(times.at[second, "A"])},
            "time_B": {first: float(times.at[first, "B"]), second: float(times.at[second, "B"])},
            "ratio_A": float(ratio_a), "ratio_B": float(ratio_b),
        }  # fmt: skip
    return out


def rate_check(table: pd.DataFrame, sweep: pd.DataFrame | None = None) -> dict[str, Any]:
    """Every reached time ``>=`` its exact lower bound ``>=`` the ``Var^{-1/2}`` curve (at ``rise``, and at every rise
    of ``sweep`` if given); ``min_ratio``: the smallest time / bound; censored proxies reported apart."""
    reached = table[~table["censored"].astype(bool)]
    ratio = reached["hit_time"] / reached["lower_bound"]
    swept = sweep[~sweep["censored"].astype(bool)] if sweep is not None else reached
    return {
        "all_above_bound": bool((ratio >= 1).all()),
        "all_rises_above_bound": bool((swept["hit_time"] >= swept["lower_bound"]).all()),
        "bound_above_curve": bool((table["lower_bound"] >= table["rate_curve"] * (1 - 1e-12)).all()),
        "min_ratio_time_over_bound": float(ratio.min()) if len(ratio) else math.nan,
        "max_ratio_time_over_bound": float(ratio.max()) if len(ratio) else math.nan,
        "censored_bound_below_t_max": bool(
            (
                table.loc[table["censored"].astype(bool), "lower_bound"]
                <= table.loc[table["censored"].astype(bool), "t_max"]
            ).all()
        ),  # fmt: skip
    }


def ascent_check(ascent: pd.DataFrame) -> dict[str, float]:
    """The largest ``|steps × lr − T_flow| / T_flow`` over the runs that reached the target both ways."""
    both = ascent.dropna(subset=["ascent_time", "flow_time"])
    if both.empty:
        return {"max_rel_gap": math.nan, "runs": 0}
    gap = ((both["ascent_time"] - both["flow_time"]).abs() / both["flow_time"]).max()
    return {"max_rel_gap": float(gap), "runs": int(len(both)), "lr": float(both["lr"].iloc[0])}


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Correlations, the slow accurate proxies, the flip, the rate check, the ascent check, a summary."""
    table, sweep = tables["proxies"], tables.get("rise_sweep")
    corr, cases, flip, rate = correlations(table), slow_accurate(table), flips(table), rate_check(table, sweep)
    ascent = ascent_check(tables["ascent"]) if "ascent" in tables else {}
    parts = [
        f"{policy}: Spearman(speed, variance) {c['variance']:+.2f} vs (speed, accuracy on π) "
        f"{c['accuracy_policy']:+.2f}, (speed, uniform accuracy) {c['accuracy_uniform']:+.2f}"
        for policy, c in corr.items()
        if policy != "pooled"
    ]
    pooled = corr["pooled"]
    parts.append(f"both policies pooled: {pooled['variance']:+.2f} vs {pooled['accuracy_policy']:+.2f}, "
                 f"{pooled['accuracy_uniform']:+.2f}")  # fmt: skip
    if cases:
        case = max(cases, key=lambda c: c["slowdown"] if math.isfinite(c["slowdown"]) else 0)
        slower = f"{case['slowdown']:.3g}x slower" if math.isfinite(case["slowdown"]) else "censored, slower"
        parts.append(
            f"accuracy-1 {case['accurate_proxy']} is {slower} than {case['less_accurate_proxy']} "
            f"(accuracy {case['less_accurate_accuracy']:.2f}, {ACCURACIES[case['measure']]}) under {case['policy']}"
        )
    if "largest" in flip:
        big = flip["largest"]
        parts.append(
            f"flip: {big['faster_under_A']} beats {big['faster_under_B']} {big['ratio_A']:.3g}x under A, loses "
            f"{big['ratio_B']:.3g}x under B ({flip['count']} of {flip['pairs']} pairs flip; Spearman of times "
            f"across policies {flip['spearman_across_policies']:+.2f})"
        )
    parts.append(f"every time >= its rate bound: {rate['all_above_bound']} (min ratio "
                 f"{rate['min_ratio_time_over_bound']:.3g})")  # fmt: skip
    return {
        "proxies": table.to_dict(orient="records"),
        "rise": float((table["target"] - table["truth_start"]).iloc[0]),
        "spearman_speed": corr,
        "spearman_speed_by_rise": {} if sweep is None else sweep_correlations(table, sweep),
        "accurate_slower_than_less_accurate": cases,
        "flip": flip,
        "rate": rate,
        "ascent_vs_flow": ascent,
        "censored": {
            str(p): list(rows.loc[rows["censored"].astype(bool), "proxy"]) for p, rows in table.groupby("policy")
        },  # fmt: skip
        "summary": "; ".join(parts),
    }


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


def family_colors() -> dict[str, Any]:
    """A colour per proxy family (:data:`PROXY_FAMILIES`)."""
    return palette(list(PROXY_FAMILIES))


def plotted_times(table: pd.DataFrame) -> tuple[pd.Series, float]:
    """Times with the censored ones at the censoring line (``1.6 × t_max``), and that line."""
    line = 1.6 * float(table["t_max"].max())
    return teaching_time(table).where(~table["censored"].astype(bool), line), line


def draw_points(ax: Any, table: pd.DataFrame, x: str) -> None:  # noqa: ANN401 - an Axes
    """On ``ax``: teaching time against column ``x``, colour = family, marker = policy (filled: reached,
    open triangle at the censoring line: not reached by ``t_max``)."""
    colors = family_colors()
    times, line = plotted_times(table)
    for policy, rows in table.groupby("policy"):
        censored = rows["censored"].astype(bool).to_numpy()
        color = [colors[family] for family in rows["family"]]
        ax.scatter(rows[x][~censored], times[rows.index][~censored], c=[c for c, m in zip(color, censored,
                   strict=True) if not m], s=28, zorder=3, marker=POLICY_MARKERS[str(policy)], edgecolor="black",
                   linewidth=0.4)  # fmt: skip
        if censored.any():
            ax.scatter(rows[x][censored], times[rows.index][censored], facecolor="none", s=34, zorder=3, marker="^",
                       edgecolor=[c for c, m in zip(color, censored, strict=True) if m], linewidth=1.2)  # fmt: skip
    ax.axhline(line, color="0.5", lw=0.7, ls=":")
    ax.text(0.99, line, "censored ", fontsize=6, va="bottom", ha="right", color="0.35",
            transform=ax.get_yaxis_transform())  # fmt: skip
    ax.set_yscale("log")


def draw_legend(ax: Any, table: pd.DataFrame, loc: str = "upper left") -> None:  # noqa: ANN401 - an Axes
    """The families' colours, the policies' markers and the censored marker, as a legend on ``ax``."""
    from matplotlib.lines import Line2D

    colors = family_colors()
    present = list(dict.fromkeys(table["family"]))
    handles = [Line2D([], [], marker="o", ls="", color=colors[f], label=f) for f in present]
    handles += [Line2D([], [], marker=POLICY_MARKERS[p], ls="", color="0.3", mfc="0.3", label=f"from policy {p}")
                for p in POLICY_NAMES]  # fmt: skip
    handles.append(Line2D([], [], marker="^", ls="", color="0.3", mfc="none", label="censored"))
    ax.legend(handles=handles, fontsize=5.5, loc=loc, ncol=2, handletextpad=0.2, columnspacing=0.6)


def draw_accuracy_panel(ax: Any, table: pd.DataFrame, measure: str = "accuracy_policy") -> None:  # noqa: ANN401
    """Teaching time against accuracy (``measure``), Spearman per policy in the title."""
    draw_points(ax, table, measure)
    corr = correlations(table)
    rho = ", ".join(f"{p} {corr[p][measure]:+.2f}" for p in POLICY_NAMES if p in corr) + (
        f", both {corr['pooled'][measure]:+.2f}"
    )
    label = "accuracy on pairs from π(0)" if measure == "accuracy_policy" else "accuracy on uniform pairs"
    ax.set(xlabel=label, ylabel="time for E[r_G] to rise by Δ", title=f"vs accuracy\nρ(speed): {rho}")


def draw_variance_panel(ax: Any, table: pd.DataFrame) -> None:  # noqa: ANN401 - a matplotlib Axes
    """Teaching time against the induced variance (log-log), each proxy's exact lower bound (grey ticks, joined
    to its time) and the ``Var^{-1/2}`` curve every bound lies above."""
    times, _ = plotted_times(table)
    from matplotlib.collections import LineCollection

    segments = [[(v, b), (v, t)] for v, b, t in zip(table["variance"], table["lower_bound"], times, strict=True)]
    ax.add_collection(LineCollection(segments, colors="0.8", linewidths=0.6, zorder=1))
    ax.scatter(table["variance"], table["lower_bound"], marker="_", color="0.4", s=40, zorder=2,
               label="lower bound per proxy")  # fmt: skip
    dense = np.geomspace(table["variance"].min() / 2, table["variance"].max() * 2, 100)
    first = table.iloc[0]
    curve = variance_rate_bound(dense, int(first["num_inputs"]), float(first["sigma_truth"]), float(first["target"]
                                - first["truth_start"]))  # fmt: skip
    ax.plot(dense, curve, color="black", lw=1, ls="--", label="√N (1 − e^(−Δ/σ_G)) / √Var")
    draw_points(ax, table, "variance")
    corr = correlations(table)
    rho = ", ".join(f"{p} {corr[p]['variance']:+.2f}" for p in POLICY_NAMES if p in corr) + (
        f", both {corr['pooled']['variance']:+.2f}"
    )
    ax.set(xscale="log", xlabel="induced variance  E_x Var_π(0)[r_RM]", ylabel="time for E[r_G] to rise by Δ",
           title=f"vs induced variance\nρ(speed): {rho}")  # fmt: skip
    ax.legend(fontsize=5.5, loc="lower left")


def draw_policy_panel(ax: Any, table: pd.DataFrame) -> None:  # noqa: ANN401 - a matplotlib Axes
    """Time under policy A against time under policy B, one point per proxy; the largest flip annotated."""
    colors = family_colors()
    times = policy_times(table)
    line = 1.6 * float(table["t_max"].max())
    shown = times.replace(math.inf, line)
    families = table.drop_duplicates("proxy").set_index("proxy")["family"]
    for proxy, row in shown.iterrows():
        censored = not np.isfinite(times.loc[proxy]).all()
        if censored:  # at the censoring line on the side where it did not reach the target
            ax.scatter(row["A"], row["B"], facecolor="none", edgecolor=colors[families[proxy]], s=34, zorder=3,
                       marker="^", linewidth=1.2)  # fmt: skip
        else:
            ax.scatter(row["A"], row["B"], color=colors[families[proxy]], s=28, zorder=3, edgecolor="black",
                       linewidth=0.4)  # fmt: skip
    low, high = shown.min().min() / 2, line * 1.5
    ax.plot([low, high], [low, high], color="0.5", lw=0.7, ls=":")
    flip = flips(table)
    if "largest" in flip:
        big = flip["largest"]
        for proxy in (big["faster_under_A"], big["faster_under_B"]):
            ax.annotate(proxy, (shown.at[proxy, "A"], shown.at[proxy, "B"]), xytext=(5, 4),
                        textcoords="offset points", fontsize=7)  # fmt: skip
        a, b = big["faster_under_A"], big["faster_under_B"]
        ax.plot([shown.at[a, "A"], shown.at[b, "A"]], [shown.at[a, "B"], shown.at[b, "B"]], color="black",
                lw=0.8, ls="-")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel="time from policy A",
           ylabel="time from policy B",
           title=f"same proxies, two policies\nρ(times) {flip['spearman_across_policies']:+.2f}, "
           f"{flip['count']} of {flip['pairs']} pairs swap")  # fmt: skip
    draw_legend(ax, table)


def draw_sweep_panel(ax: Any, table: pd.DataFrame, sweep: pd.DataFrame) -> None:  # noqa: ANN401 - an Axes
    """Spearman of teaching speed with the variance and with each accuracy against the target rise (both policies
    pooled: solid; per policy: thin)."""
    by_rise = sweep_correlations(table, sweep)
    rises = sorted(by_rise)
    styles = {"variance": ("black", "induced variance"), "accuracy_policy": ("#c0392b", "accuracy on π(0) pairs"),
              "accuracy_uniform": ("#e59866", "accuracy on uniform pairs")}  # fmt: skip
    for column, (color, label) in styles.items():
        ax.plot(rises, [by_rise[r]["pooled"][column] for r in rises], color=color, marker="o", ms=3, label=label)
        for policy, dash in zip(POLICY_NAMES, (":", "--"), strict=True):
            ax.plot(rises, [by_rise[r][policy][column] for r in rises], color=color, lw=0.7, ls=dash)
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set(xlabel="target rise of E[r_G]", ylabel="Spearman with teaching speed", ylim=(-1.05, 1.05),
           title="pooled (solid), policy A (dotted), B (dashed)")  # fmt: skip
    ax.legend(fontsize=6, loc="lower left")


@themed()
def plot_reward_teacher(tables: dict[str, pd.DataFrame]) -> Any:  # noqa: ANN401 - a Figure
    """Four panels: time vs accuracy on π(0) pairs, time vs variance (with the rate bound), time under A vs under
    B, and the Spearman correlations against the target rise (the ``trajectories`` table holds E[r_G](t))."""
    table = tables["proxies"]
    fig, axes, _ = figure_grid(4, [0], columns=4)
    draw_accuracy_panel(axes[0], table, "accuracy_policy")
    draw_variance_panel(axes[1], table)
    draw_policy_panel(axes[2], table)
    draw_sweep_panel(axes[3], table, tables["rise_sweep"])
    return fig


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``reward_teacher.png`` (and .pdf) into ``out_dir``."""
    return [save_figure(plot_reward_teacher(tables), Path(out_dir) / "reward_teacher")]

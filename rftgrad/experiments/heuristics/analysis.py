"""Analysis of ``heuristics``: did any heuristic lift the small-STD inputs, by what mechanism, at what cost?

Per output-space size, sweep and swept value (mean over seeds):

* ``modified_end_t1``: the modified (small-STD) inputs' expected reward after RFT,
  evaluated at T = 1; ``all_end_t1`` and ``unmodified_end_t1`` likewise;
* the mechanism: ``modified_std_start`` (reward STD of the modified inputs at the
  sampling temperature before training: what a higher T creates) and ``modified_std_max``
  (the largest STD they reach during training: what an entropy bonus creates);
* stability: ``max_drop``, the largest fall of the all-input reward below its best so far
  during training, and ``unstable`` when it exceeds :data:`UNSTABLE_DROP` (or a value is not finite).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.experiments.heuristics.config import SWEEPS
from rftgrad.plotting import COLORS, arm_objective, figure_grid, palette, save_figure, select_records, themed, viridis

KEYS = ["num_outputs", "sweep", "arm", "replica"]
#: a replica is unstable if its all-input reward falls this far below its best so far (a tenth of the [-1, 1] range)
UNSTABLE_DROP = 0.2
SWEEP_TITLES = {"lr": "learning rate", "temperature": "sampling temperature", "entropy_coef": "entropy bonus β"}


def with_setting(table: pd.DataFrame, replicas: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the swept value of each row's replica (column ``setting``)."""
    settings = replicas.melt(id_vars=["num_outputs", "sweep", "replica"], value_vars=list(SWEEPS), var_name="field")
    settings = settings[settings["field"] == settings["sweep"]].rename(columns={"value": "setting"})
    return table.merge(settings[["num_outputs", "sweep", "replica", "setting"]], on=["num_outputs", "sweep", "replica"])


def max_drop(values: pd.Series) -> float:
    """Largest fall below the running maximum (inf if a value is not finite)."""
    array = values.to_numpy(dtype=float)
    if not np.isfinite(array).all():
        return float("inf")
    return float((np.maximum.accumulate(array) - array).max())


def per_replica(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (num_outputs, sweep, arm, replica): the end rewards at T = 1, the mechanism, stability."""
    records, final = tables["records"], tables["final_t1"]
    train = records[records["split"] == "train"].sort_values("step")

    def metric(name: str, group: str) -> pd.core.groupby.SeriesGroupBy:
        rows = train[(train["metric"] == name) & (train["group"] == group)]
        return rows.groupby(KEYS)["value"]

    out = pd.DataFrame(
        {
            "modified_start": metric("reward_mean", "modified").first(),
            "modified_std_start": metric("reward_std", "modified").first(),
            "modified_std_max": metric("reward_std", "modified").max(),
            "max_drop": metric("reward_mean", "all").apply(max_drop),
        }
    )
    ends = final[final["metric"] == "reward_mean"].pivot_table(index=KEYS, columns="group", values="value")
    out = out.join(ends.rename(columns=lambda group: f"{group}_end_t1")).reset_index()
    out["unstable"] = out["max_drop"] > UNSTABLE_DROP
    out["objective"] = out["arm"].map(arm_objective)
    return with_setting(out, tables["replicas"])


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (num_outputs, sweep, objective, setting); ``unstable`` is the share of unstable seeds."""
    columns = [
        "modified_start", "modified_end_t1", "unmodified_end_t1", "all_end_t1", "modified_std_start",
        "modified_std_max", "max_drop", "unstable",
    ]  # fmt: skip
    keys = ["num_outputs", "sweep", "objective", "setting"]
    return rows.groupby(keys)[columns].mean().reset_index()


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The heuristics table (RFT rows and the SFT reference), the best heuristic per size, a summary line."""
    rows = per_replica(tables)
    table = summary_table(rows)
    rft = table[table["objective"] == "RFT"]
    best = {}
    for num_outputs, part in rft.groupby("num_outputs"):
        baseline = part[(part["sweep"] == "lr")].sort_values("setting").iloc[0]
        top = part.loc[part["modified_end_t1"].idxmax()]
        best[int(num_outputs)] = {
            "baseline_modified_end": float(baseline["modified_end_t1"]),
            "best_sweep": str(top["sweep"]),
            "best_setting": float(top["setting"]),
            "best_modified_end": float(top["modified_end_t1"]),
            "best_unstable_share": float(top["unstable"]),
        }
    sft = table[table["objective"] == "SFT"]
    sft_line = ", ".join(f"C={int(r.num_outputs)} lr={r.setting:g}: {r.modified_end_t1:+.2f}" for r in sft.itertuples())
    line = "; ".join(
        f"C={c}: RFT baseline {b['baseline_modified_end']:+.3f}, best {b['best_sweep']}={b['best_setting']:g} "
        f"{b['best_modified_end']:+.3f}"
        for c, b in best.items()
    )
    return {
        "table": table.to_dict(orient="records"),
        "best_per_output_size": best,
        "summary": f"modified (small-STD) inputs' reward after RFT at T=1: {line}. SFT reference: {sft_line}",
    }


@themed()
def plot_sweep_curves(records: pd.DataFrame, replicas: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Rows: sweeps; columns: output sizes; the modified inputs' reward (solid) and the unmodified ones' (dotted)
    over RFT steps, one colour per swept value (at the sampling temperature)."""
    sizes = sorted(records["num_outputs"].unique())
    train = records[(records["split"] == "train") & (records["metric"] == "reward_mean")]
    train = with_setting(train[train["arm"].map(arm_objective) == "RFT"], replicas)
    fig, axes, _ = figure_grid(len(SWEEPS) * len(sizes), [0], panel_size=3.2, columns=len(sizes))
    for row, sweep in enumerate(SWEEPS):
        part = train[train["sweep"] == sweep]
        values = sorted(part["setting"].unique())
        colors = viridis(values)
        for column, num_outputs in enumerate(sizes):
            ax = axes[row * len(sizes) + column]
            cell = part[part["num_outputs"] == num_outputs]
            for (value, group), lines in cell.groupby(["setting", "group"]):
                if group not in ("modified", "unmodified"):
                    continue
                mean = lines.groupby("step")["value"].mean()
                style = "-" if group == "modified" else ":"
                label = f"{SWEEP_TITLES[sweep]} {value:g}" if group == "modified" else None
                ax.plot(mean.index, mean.to_numpy(), ls=style, color=colors[value], label=label)
            ax.set(title=f"{SWEEP_TITLES[sweep]}, {num_outputs} outputs", xlabel="RFT step", ylim=(-1.05, 1.05))
            ax.set_ylabel("expected reward" if column == 0 else "")
            if column == 0:
                ax.legend(fontsize=7, title="modified — / unmodified ··", title_fontsize=7)
    return fig


@themed()
def plot_mechanism(rows: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Against the output-space size, per swept value: the modified inputs' reward after RFT (T = 1) and
    the reward STD the heuristic gives them (at the start for T, the maximum during training otherwise)."""
    table = summary_table(rows)
    rft = table[table["objective"] == "RFT"]
    fig, axes, _ = figure_grid(2 * len(SWEEPS), [0], panel_size=3.2, columns=len(SWEEPS))
    for column, sweep in enumerate(SWEEPS):
        part = rft[rft["sweep"] == sweep]
        values = sorted(part["setting"].unique())
        colors = viridis(values)
        std_column = "modified_std_start" if sweep == "temperature" else "modified_std_max"
        for value, lines in part.groupby("setting"):
            lines = lines.sort_values("num_outputs")
            label = f"{value:g}"
            axes[column].plot(lines["num_outputs"], lines["modified_end_t1"], "o-", color=colors[value], label=label)
            unstable = lines[lines["unstable"] > 0]
            axes[column].scatter(unstable["num_outputs"], unstable["modified_end_t1"], marker="x", s=60, color="black")
            axes[len(SWEEPS) + column].plot(lines["num_outputs"], lines[std_column], "o-", color=colors[value])
        axes[column].set(
            xscale="log", ylim=(-1.05, 1.05), title=f"{SWEEP_TITLES[sweep]}: modified reward after RFT (T=1)",
            xlabel="output-space size",
        )  # fmt: skip
        axes[column].legend(fontsize=7, title="× unstable", title_fontsize=7)
        what = "at the start (sampling T)" if sweep == "temperature" else "max during training"
        axes[len(SWEEPS) + column].set(
            xscale="log", yscale="log", xlabel="output-space size", title=f"modified inputs' reward STD, {what}"
        )
    return fig


#: marker of each output-space size (in increasing order).
SIZE_MARKERS = ("o", "s", "^", "D", "v")
#: short names of the swept fields.
SWEEP_NAMES = {"lr": "lr", "temperature": "T", "entropy_coef": "β"}


def setting_label(sweep: str, value: float, baseline: float) -> str:
    """``lr x10``, ``T = 2``, ``β = 0.1``: a swept value as the heuristic it turns up."""
    if sweep == "lr":
        return f"lr x{value / baseline:g}"
    return f"{SWEEP_NAMES[sweep]} = {value:g}"


def rows_to_show(table: pd.DataFrame) -> list[tuple[str, str, float]]:
    """(label, objective, setting): the baseline, each heuristic turned up, then SFT at each learning rate."""
    rft, sft = table[table["objective"] == "RFT"], table[table["objective"] == "SFT"]
    lrs = sorted(rft[rft["sweep"] == "lr"]["setting"].unique())
    shown: list[tuple[str, str, float]] = [("RFT, no heuristic", "lr", lrs[0])]
    for sweep in ("lr", "temperature", "entropy_coef"):
        values = sorted(rft[rft["sweep"] == sweep]["setting"].unique())
        shown += [(f"RFT, {setting_label(sweep, v, values[0])}", sweep, v) for v in values[1:]]
    shown += [(f"SFT, lr x{v / lrs[0]:g}", "sft", v) for v in sorted(sft["setting"].unique())]
    return shown


def draw_heuristic_rewards(ax: Any, table: pd.DataFrame, sizes: list[int]) -> None:  # noqa: ANN401 - a matplotlib Axes
    """On ``ax``, a dot plot: per heuristic (rows), the small-STD (filled) and other (hollow) inputs' reward
    at T = 1."""
    shown = rows_to_show(table)
    offsets = np.linspace(-0.22, 0.22, len(sizes)) if len(sizes) > 1 else np.zeros(1)
    for position, (_, sweep, value) in enumerate(shown):
        objective = "SFT" if sweep == "sft" else "RFT"
        part = table[(table["objective"] == objective) & (table["sweep"] == ("lr" if sweep == "sft" else sweep))]
        part = part[np.isclose(part["setting"], value)].set_index("num_outputs")
        color = COLORS[objective]
        for size, offset, marker in zip(sizes, offsets, SIZE_MARKERS, strict=False):
            if size not in part.index:
                continue
            y = position + offset
            ax.scatter(part.loc[size, "modified_end_t1"], y, marker=marker, s=22, color=color, lw=0, zorder=6)
            ax.scatter(part.loc[size, "unmodified_end_t1"], y, marker=marker, s=22, facecolors="none",
                       edgecolors=color, lw=0.9, zorder=6)  # fmt: skip
    ax.set_yticks(range(len(shown)), [label for label, _, _ in shown], fontsize=8)
    for tick, (_, sweep, _) in zip(ax.get_yticklabels(), shown, strict=True):
        tick.set_color(COLORS["SFT" if sweep == "sft" else "RFT"])
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlim(-1.15, 1.15)
    ax.set(xlabel="expected reward after training (at T = 1)", title="reward after training")
    handles = [
        ax.scatter([], [], marker=marker, s=22, color="0.35", lw=0, label=f"{size:,} outputs")
        for size, marker in zip(sizes, SIZE_MARKERS, strict=False)
    ]
    handles.append(ax.scatter([], [], marker="o", s=22, color="0.35", lw=0, label="filled: small-STD inputs"))
    handles.append(
        ax.scatter([], [], marker="o", s=22, facecolors="none", edgecolors="0.35", label="hollow: other inputs")
    )
    ax.legend(handles=handles, fontsize=7, loc="center", framealpha=0.9)


def draw_heuristic_stds(ax: Any, table: pd.DataFrame, records: pd.DataFrame, threshold: float) -> None:  # noqa: ANN401
    """On ``ax`` (log-log): the reward STD each heuristic gives the small-STD inputs (at the sampling temperature
    before training for T, the largest during training otherwise) against the output-space size, next to the
    other inputs' STD at T = 1; ``threshold`` is the stall threshold drawn."""
    rft = table[table["objective"] == "RFT"].copy()
    rft["std"] = rft["modified_std_start"].where(rft["sweep"] == "temperature", rft["modified_std_max"])
    baseline_lr = rft[rft["sweep"] == "lr"]["setting"].min()
    baseline = rft[(rft["sweep"] == "lr") & np.isclose(rft["setting"], baseline_lr)].set_index("num_outputs")["std"]
    lines: dict[str, pd.Series] = {}
    same: list[str] = []
    for sweep in ("lr", "temperature", "entropy_coef"):
        values = sorted(rft[rft["sweep"] == sweep]["setting"].unique())
        for value in values[1:]:
            line = rft[(rft["sweep"] == sweep) & np.isclose(rft["setting"], value)].set_index("num_outputs")["std"]
            label = setting_label(sweep, value, values[0])
            if np.allclose(line.reindex(baseline.index), baseline, rtol=0.02):
                same.append(label)
            else:
                lines[label] = line
    colors = palette(["skipped", "none", *lines])  # the palette's first colour is SFT's blue
    pairs = [", ".join(same[i : i + 2]) for i in range(0, len(same), 2)]
    none_label = "no heuristic" + ("\n(same: " + ",\n".join(pairs) + ")" if same else "")
    ax.plot(baseline.index, baseline.to_numpy(), "o-", color=colors["none"], lw=1.5, label=none_label)
    for label, line in lines.items():
        ax.plot(line.index, line.to_numpy(), "o-", color=colors[label], lw=1.5, label=label)

    others = select_records(records, "reward_std", "train", "unmodified")
    others = others[(others["step"] == 0) & (others["sweep"] == "lr")].groupby("num_outputs")["value"].mean()
    ax.plot(others.index, others.to_numpy(), "k--", lw=1, label="other inputs (T = 1)")
    ax.axhline(threshold, color="0.4", ls=":", lw=0.9)
    ax.text(others.index.min(), threshold * 1.15, f"stall threshold {threshold:g}", fontsize=7, color="0.3")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="output-space size (log scale)",
        ylabel="reward STD of the small-STD inputs",
        title="what each heuristic does to their STD",
    )
    low = min(float(baseline.min()), *(float(line.min()) for line in lines.values()))
    ax.set_ylim(low / 100, 3.0)
    ax.legend(fontsize=7, loc="lower left")


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``heuristics_curves.png`` and ``heuristics_mechanism.png`` (and PDFs) into ``out_dir``."""
    out = Path(out_dir)
    rows = per_replica(tables)
    return [
        save_figure(plot_sweep_curves(tables["records"], tables["replicas"]), out / "heuristics_curves"),
        save_figure(plot_mechanism(rows), out / "heuristics_mechanism"),
    ]

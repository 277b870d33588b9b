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

from rftgrad.experiments.base import save_figure
from rftgrad.experiments.curves import arm_objective
from rftgrad.experiments.heuristics.config import SWEEPS
from rftgrad.experiments.style import figure_grid

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


def plot_sweep_curves(records: pd.DataFrame, replicas: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Rows: sweeps; columns: output sizes; the modified inputs' reward (solid) and the unmodified ones' (dotted)
    over RFT steps, one colour per swept value (at the sampling temperature)."""
    sizes = sorted(records["num_outputs"].unique())
    train = records[(records["split"] == "train") & (records["metric"] == "reward_mean")]
    train = with_setting(train[train["arm"].map(arm_objective) == "RFT"], replicas)
    fig, axes, _ = figure_grid(len(SWEEPS) * len(sizes), [0], panel_size=3.2, columns=len(sizes))
    import seaborn as sns

    for row, sweep in enumerate(SWEEPS):
        part = train[train["sweep"] == sweep]
        values = sorted(part["setting"].unique())
        palette = dict(zip(values, sns.color_palette("viridis", len(values)), strict=True))
        for column, num_outputs in enumerate(sizes):
            ax = axes[row * len(sizes) + column]
            cell = part[part["num_outputs"] == num_outputs]
            for (value, group), lines in cell.groupby(["setting", "group"]):
                if group not in ("modified", "unmodified"):
                    continue
                mean = lines.groupby("step")["value"].mean()
                style = "-" if group == "modified" else ":"
                label = f"{SWEEP_TITLES[sweep]} {value:g}" if group == "modified" else None
                ax.plot(mean.index, mean.to_numpy(), ls=style, color=palette[value], label=label)
            ax.set(title=f"{SWEEP_TITLES[sweep]}, {num_outputs} outputs", xlabel="RFT step", ylim=(-1.05, 1.05))
            ax.set_ylabel("expected reward" if column == 0 else "")
            if column == 0:
                ax.legend(fontsize=7, title="modified — / unmodified ··", title_fontsize=7)
    return fig


def plot_mechanism(rows: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Against the output-space size, per swept value: the modified inputs' reward after RFT (T = 1) and
    the reward STD the heuristic gives them (at the start for T, the maximum during training otherwise)."""
    table = summary_table(rows)
    rft = table[table["objective"] == "RFT"]
    fig, axes, _ = figure_grid(2 * len(SWEEPS), [0], panel_size=3.2, columns=len(SWEEPS))
    import seaborn as sns

    for column, sweep in enumerate(SWEEPS):
        part = rft[rft["sweep"] == sweep]
        values = sorted(part["setting"].unique())
        palette = dict(zip(values, sns.color_palette("viridis", len(values)), strict=True))
        std_column = "modified_std_start" if sweep == "temperature" else "modified_std_max"
        for value, lines in part.groupby("setting"):
            lines = lines.sort_values("num_outputs")
            label = f"{value:g}"
            axes[column].plot(lines["num_outputs"], lines["modified_end_t1"], "o-", color=palette[value], label=label)
            unstable = lines[lines["unstable"] > 0]
            axes[column].scatter(unstable["num_outputs"], unstable["modified_end_t1"], marker="x", s=60, color="black")
            axes[len(SWEEPS) + column].plot(lines["num_outputs"], lines[std_column], "o-", color=palette[value])
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


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write ``heuristics_curves.png`` and ``heuristics_mechanism.png`` (and PDFs) into ``out_dir``."""
    out = Path(out_dir)
    rows = per_replica(tables)
    return [
        save_figure(plot_sweep_curves(tables["records"], tables["replicas"]), out / "heuristics_curves"),
        save_figure(plot_mechanism(rows), out / "heuristics_mechanism"),
    ]

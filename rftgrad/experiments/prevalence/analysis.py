"""Analysis of ``prevalence``: how common is the vanishing regime per task, and does it predict RFT's lag?

Paper Section 4.1 (docs/paper.md §5) on GRUE: many inputs have a small reward STD and a
far-from-optimal reward under the pretrained model; tasks where they are common are the
tasks where RFT falls furthest behind SFT; an input's gain under RFT correlates with its
initial STD, its gain under SFT does not. Here, per reward:

* ``share``: per task, the share of *stalled* prompts (STD below ``std_threshold`` and
  ``V`` more than ``far_fraction`` of the reward range below the best), exact and from
  ``num_samples`` samples (mean over the draws);
* the 10-sample STD's error: its mean minus the exact STD (bias; the ``ddof = 0`` sample
  STD of ``K`` samples is biased low, ``E[s²] = (K-1)/K·STD²``) and its root-mean-square error;
* per trained reward, each method at its best learning rate (highest final mean reward
  over all prompts): the final reward per task, the per-prompt gain ``V_end - V_0``, and
  the Pearson and Spearman correlations of the initial STD with the gain, over prompts
  (and with the share of the gap closed, past the paper), each with a bootstrap percentile
  interval (2,000 resamples of the prompts, seeded; paired for RFT - SFT) and the verdict of the
  rule fixed before the runs (:func:`claim_verdicts`); across tasks, Spearman's ρ (permutation
  p-value: there are only a few tasks) between the stalled share and SFT - RFT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rftgrad.errors import ConfigError
from rftgrad.plotting import COLORS, figure_grid, palette, save_figure, themed
from rftgrad.results import atomic_write_text

METHODS = {"rft": "RFT", "sft": "SFT"}

#: prompts starting within this share of the reward range of their best are left out of ``gap_closed``.
MIN_GAP = 0.05

#: bootstrap of the per-prompt correlations: how many resamples of the prompts.
BOOTSTRAP_RESAMPLES = 2000
#: the seed of those resamples (the same resamples for RFT and SFT, so their difference is paired).
BOOTSTRAP_SEED = 0
#: the level of the bootstrap's percentile intervals.
CONFIDENCE = 0.95


def method(arm: str) -> str:
    """``"rft:400"`` -> ``"RFT"``."""
    return METHODS[arm.split(":")[0]]


def task_order(prompts: pd.DataFrame) -> list[str]:
    """Tasks in the order they appear in the records (the config's order)."""
    return list(dict.fromkeys(prompts["task"]))


def shares(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (reward, task): prompts, covered share, mean V and STD, stalled share exact and from samples."""
    prompts, samples = tables["prompts"], tables["samples"]
    sampled = samples.merge(prompts[["reward", "input", "task"]], on=["reward", "input"])
    sampled_share = sampled.groupby(["reward", "task"])["stalled"].mean().rename("stalled_sampled")
    exact = prompts.groupby(["reward", "task"]).agg(
        prompts=("input", "size"),
        covered=("covered", "mean"),
        reward_mean=("reward_mean", "mean"),
        reward_std=("reward_std", "mean"),
        stalled_exact=("stalled", "mean"),
    )
    return exact.join(sampled_share).reset_index()


def std_error(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per reward: bias and RMSE of the sampled STD against the exact STD, and the stalled-flag agreement."""
    both = tables["samples"].merge(
        tables["prompts"][["reward", "input", "reward_std", "stalled"]], on=["reward", "input"], suffixes=("", "_exact")
    )
    error = both["sample_std"] - both["reward_std"]
    return (
        both.assign(
            error=error, squared=error**2, agree=both["stalled"] == both["stalled_exact"], zero=both["sample_std"] == 0
        )  # fmt: skip
        .groupby("reward")
        .agg(
            bias=("error", "mean"),
            rmse=("squared", "mean"),
            stalled_agreement=("agree", "mean"),
            share_zero_sample_std=("zero", "mean"),
        )  # fmt: skip
        .assign(rmse=lambda frame: np.sqrt(frame["rmse"]))
        .reset_index()
    )


def best_lr(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (reward, arm): the learning rate with the highest final mean reward over all prompts (mean over seeds)."""
    final = tables["final"].merge(tables["replicas"][["replica", "lr"]], on="replica")
    by_lr = final.groupby(["reward", "arm", "lr"])["reward_mean"].mean().rename("final_reward").reset_index()
    best = by_lr.loc[by_lr.groupby(["reward", "arm"])["final_reward"].idxmax()]
    return best.reset_index(drop=True)


def gains(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (reward, arm, prompt) at the arm's best lr: initial V and STD, final V (mean over seeds), gain."""
    best = best_lr(tables)[["reward", "arm", "lr"]]
    final = tables["final"].merge(tables["replicas"][["replica", "lr"]], on="replica").merge(best)
    end = final.groupby(["reward", "arm", "input", "task"])["reward_mean"].mean().rename("final_mean").reset_index()
    columns = ["reward", "input", "reward_mean", "reward_std", "stalled", "best_reward", "worst_reward"]
    start = tables["prompts"][columns]
    merged = end.merge(start, on=["reward", "input"])
    gap = merged["best_reward"] - merged["reward_mean"]  # what is left to gain
    enough = gap > MIN_GAP * (merged["best_reward"] - merged["worst_reward"])
    gain = merged["final_mean"] - merged["reward_mean"]
    return merged.assign(
        gain=gain, gap_closed=(gain / gap).where(enough), method=merged["arm"].map(method)
    )  # gap_closed: NaN where the prompt starts within MIN_GAP of its best


def correlations(gain_table: pd.DataFrame, column: str = "gain") -> pd.DataFrame:
    """Per (reward, method): Pearson r (95% CI) and Spearman ρ of the initial STD with ``column``, over prompts.

    ``column`` is ``gain`` (the paper's statistic) or ``gap_closed`` (the gain over what
    was left to gain, ``(V_end - V_0) / (best - V_0)``, on prompts starting at least
    ``MIN_GAP`` of the range below their best: it removes the ceiling effect of prompts
    that were already solved).
    """
    rows = []
    for (reward, name), frame in gain_table.dropna(subset=[column]).groupby(["reward", "method"]):
        pearson = stats.pearsonr(frame["reward_std"], frame[column])
        low, high = pearson.confidence_interval(0.95)
        spearman = stats.spearmanr(frame["reward_std"], frame[column])
        rows.append(
            {
                "reward": reward,
                "method": name,
                "statistic": column,
                "prompts": len(frame),
                "pearson": pearson.statistic,
                "pearson_low": low,
                "pearson_high": high,
                "pearson_p": pearson.pvalue,
                "spearman": spearman.statistic,
                "spearman_p": spearman.pvalue,
            }
        )
    return pd.DataFrame(rows)


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair: ``x, y (B, n)`` -> ``(B,)``; ``r = Σ(x-x̄)(y-ȳ) / sqrt(Σ(x-x̄)² Σ(y-ȳ)²)``
    (NaN where a row is constant)."""
    dx, dy = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (dx * dy).sum(-1) / np.sqrt((dx**2).sum(-1) * (dy**2).sum(-1))


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row pair ``(B, n)`` -> ``(B,)``: the Pearson r of the ranks (ties get mean ranks)."""
    return pearson_rows(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))


def bootstrap_correlations(
    gain_table: pd.DataFrame,
    column: str = "gap_closed",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Per (reward, correlation, method): the correlation of the initial STD with ``column`` over prompts and its
    bootstrap percentile interval; per (reward, correlation) also RFT - SFT (paired).

    The prompts (rows with ``column`` defined, the same set for both methods) are resampled with
    replacement ``resamples`` times from ``seed`` (numpy ``default_rng``); each resample takes the
    same prompts for RFT and SFT, so the interval of the difference ``r_RFT - r_SFT`` is paired. The
    interval is the ``(1 ∓ confidence)/2`` percentiles of the resampled statistic (resamples where
    it is undefined, a constant column, are dropped and counted in ``undefined``). Rows: ``reward,
    statistic, correlation ("pearson" | "spearman"), method ("RFT" | "SFT" | "RFT - SFT"), value,
    low, high, prompts, not_stalled`` (prompts not stalled at the start), ``undefined``.
    """
    if resamples < 1 or not 0 < confidence < 1:
        raise ConfigError(f"resamples={resamples}, confidence={confidence} invalid; use resamples >= 1, 0 < c < 1")
    rows = []
    usable = gain_table.dropna(subset=[column])
    for reward, frame in usable.groupby("reward", sort=False):
        wide = frame.pivot_table(index="input", columns="method", values=column)
        start = frame.drop_duplicates("input").set_index("input").loc[wide.index]
        wide = wide.dropna()
        start = start.loc[wide.index]
        if not set(METHODS.values()) <= set(wide.columns) or len(wide) < 3:
            continue
        std = start["reward_std"].to_numpy()  # (n,)
        index = np.random.default_rng(seed).integers(0, len(std), size=(resamples, len(std)))  # (B, n)
        for name, rows_of in (("pearson", pearson_rows), ("spearman", spearman_rows)):
            point, draws = {}, {}
            for method_name in METHODS.values():
                values = wide[method_name].to_numpy()  # (n,)
                point[method_name] = float(rows_of(std[None], values[None])[0])
                draws[method_name] = rows_of(std[index], values[index])  # (B,)
            point["RFT - SFT"] = point["RFT"] - point["SFT"]
            draws["RFT - SFT"] = draws["RFT"] - draws["SFT"]
            for method_name, value in point.items():
                finite = draws[method_name][np.isfinite(draws[method_name])]
                tail = 100 * (1 - confidence) / 2
                low, high = np.percentile(finite, [tail, 100 - tail]) if len(finite) else (np.nan, np.nan)
                rows.append(
                    {
                        "reward": reward,
                        "statistic": column,
                        "correlation": name,
                        "method": method_name,
                        "value": value,
                        "low": float(low),
                        "high": float(high),
                        "prompts": len(std),
                        "not_stalled": int((~start["stalled"].astype(bool)).sum()),
                        "undefined": int(resamples - len(finite)),
                        "resamples": resamples,
                        "confidence": confidence,
                    }
                )
    return pd.DataFrame(rows)


def claim_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Per (reward, statistic, correlation) of :func:`bootstrap_correlations`: does the paper's claim hold?

    The rule, fixed before the runs: the claim *holds* when RFT's correlation has its whole
    interval above 0 **and** the paired interval of ``r_RFT - r_SFT`` lies above 0 (SFT's
    correlation is smaller than RFT's, whatever its sign). ``rft_positive`` and ``rft_above_sft``
    give the two parts.
    """
    rows = []
    if table.empty:
        return pd.DataFrame(rows)
    for key, frame in table.groupby(["reward", "statistic", "correlation"], sort=False):
        by = frame.set_index("method")
        rft_positive = bool(by.loc["RFT", "low"] > 0)
        rft_above_sft = bool(by.loc["RFT - SFT", "low"] > 0)
        rows.append(
            dict(zip(("reward", "statistic", "correlation"), key, strict=True))
            | {"rft_positive": rft_positive, "rft_above_sft": rft_above_sft, "holds": rft_positive and rft_above_sft}
        )
    return pd.DataFrame(rows)


def room_counts(gain_table: pd.DataFrame) -> pd.DataFrame:
    """Per trained reward: prompts with room to gain (``gap_closed`` defined) and those of them not stalled."""
    first = gain_table.dropna(subset=["gap_closed"]).drop_duplicates(["reward", "input"])
    return (
        first.assign(not_stalled=~first["stalled"].astype(bool))
        .groupby("reward", sort=False)
        .agg(with_room=("input", "size"), not_stalled_with_room=("not_stalled", "sum"))
        .reset_index()
    )


def gap_closed_by_regime(gain_table: pd.DataFrame) -> pd.DataFrame:
    """Per (reward, method, stalled at the start): prompts and the mean share of the gap to the best closed."""
    usable = gain_table.dropna(subset=["gap_closed"])
    grouped = usable.groupby(["reward", "method", "stalled"])["gap_closed"]
    return grouped.agg(prompts="size", mean_gap_closed="mean", median_gap_closed="median").reset_index()


def task_table(gain_table: pd.DataFrame, share_table: pd.DataFrame) -> pd.DataFrame:
    """Per trained reward and task, ordered by the exact stalled share: pretrained, RFT and SFT reward, SFT - RFT.

    ``gain_table`` and ``share_table`` are :func:`gains` and :func:`shares` of the run's tables.
    """
    ends = gain_table.pivot_table(index=["reward", "task"], columns="method", values="final_mean").reset_index()
    share = share_table[["reward", "task", "stalled_exact", "stalled_sampled", "reward_mean"]]
    table = ends.merge(share.rename(columns={"reward_mean": "pretrained"}), on=["reward", "task"])
    table["sft_minus_rft"] = table["SFT"] - table["RFT"]
    return table.sort_values(["reward", "stalled_exact"], ascending=[True, False]).reset_index(drop=True)


def rank_correlation(x: pd.Series, y: pd.Series) -> dict[str, float]:
    """Spearman ρ with a permutation p-value (exact, every pairing enumerated, while n! <= 9999: a handful of tasks)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho = stats.spearmanr(x, y).statistic
    test = stats.permutation_test(
        (x,), lambda a: stats.spearmanr(a, y).statistic, permutation_type="pairings", n_resamples=9999, random_state=0
    )
    return {"spearman": float(rho), "p_permutation": float(test.pvalue)}


def score(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Shares per task, the sampled STD's error, the RFT-vs-SFT task table, per-prompt and per-task correlations.

    ``bootstrap_correlations`` (over all prompts, the paper's form) and
    ``bootstrap_correlations_not_stalled`` (over the prompts not stalled at the start: whether the
    correlation holds within the STD continuum, not only between stalled and other prompts) are
    :func:`bootstrap_correlations` of ``gain`` and ``gap_closed``; ``claim`` is
    :func:`claim_verdicts` of the former; ``room`` counts the prompts with room to gain."""
    gain_table, share_table = gains(tables), shares(tables)
    table = task_table(gain_table, share_table)
    boot = pd.concat([bootstrap_correlations(gain_table, column) for column in ("gain", "gap_closed")],
                     ignore_index=True)  # fmt: skip
    moving = gain_table[~gain_table["stalled"].astype(bool)]  # not stalled: does r hold past stalled vs other?
    within = pd.concat([bootstrap_correlations(moving, column) for column in ("gain", "gap_closed")],
                       ignore_index=True)  # fmt: skip
    across_tasks = {}
    for reward, frame in table.groupby("reward"):
        across_tasks[reward] = {**rank_correlation(frame["stalled_exact"], frame["sft_minus_rft"]), "tasks": len(frame)}
    return {
        "shares": share_table.to_dict("records"),
        "std_error": std_error(tables).to_dict("records"),
        "best_lr": best_lr(tables).to_dict("records"),
        "task_table": table.to_dict("records"),
        "gain_correlations": pd.concat(
            [correlations(gain_table, column) for column in ("gain", "gap_closed")], ignore_index=True
        ).to_dict("records"),
        "share_vs_gap": across_tasks,
        "gap_closed_by_regime": gap_closed_by_regime(gain_table).to_dict("records"),
        "room": room_counts(gain_table).to_dict("records"),
        "bootstrap_correlations": boot.to_dict("records"),
        "bootstrap_correlations_not_stalled": within.to_dict("records"),
        "claim": claim_verdicts(boot).to_dict("records"),
        "summary": summary(boot, room_counts(gain_table)),
    }


def summary(boot: pd.DataFrame, room: pd.DataFrame) -> str:
    """One line per trained reward: Pearson r of the initial STD with the gap closed, RFT and SFT with intervals."""
    lines = []
    for reward, frame in boot[(boot["statistic"] == "gap_closed") & (boot["correlation"] == "pearson")].groupby(
        "reward", sort=False
    ):
        by = frame.set_index("method")
        counts = room.set_index("reward").loc[reward]
        cells = ", ".join(
            f"{name} {by.loc[name, 'value']:+.2f} [{by.loc[name, 'low']:+.2f}, {by.loc[name, 'high']:+.2f}]"
            for name in ("RFT", "SFT", "RFT - SFT")
        )
        lines.append(
            f"{reward}: Pearson r of initial STD with gap closed over {int(counts['with_room'])} prompts with room "
            f"({int(counts['not_stalled_with_room'])} not stalled): {cells}"
        )
    return "; ".join(lines)


def markdown_table(table: pd.DataFrame) -> str:
    """The task table as Markdown, one block per trained reward."""
    lines = []
    for reward, frame in table.groupby("reward", sort=False):
        header = "| task | stalled (exact) | stalled (10 samples) | pretrained | RFT | SFT | SFT - RFT |"
        lines += [f"### {reward}", "", header, "|---|---:|---:|---:|---:|---:|---:|"]
        for row in frame.itertuples():
            lines.append(
                f"| {row.task} | {row.stalled_exact:.2f} | {row.stalled_sampled:.2f} | {row.pretrained:+.3f} "
                f"| {row.RFT:+.3f} | {row.SFT:+.3f} | {row.sft_minus_rft:+.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Mean-vs-STD scatters (exact and 10-sample), the STD estimator's error, the task bars, gain vs STD."""
    out = Path(out_dir)
    gain_table = gains(tables)
    table = task_table(gain_table, shares(tables))
    atomic_write_text(out / "prevalence_table.md", markdown_table(table))
    return [
        save_figure(plot_scatter(tables), out / "prevalence_scatter"),
        save_figure(plot_std_error(tables), out / "prevalence_std_error"),
        save_figure(plot_tasks(table), out / "prevalence_tasks"),
        save_figure(plot_gain_vs_std(gain_table), out / "prevalence_gain_vs_std"),
        out / "prevalence_table.md",
    ]


@themed()
def plot_scatter(tables: dict[str, pd.DataFrame]) -> Any:  # noqa: ANN401 - a Figure
    """Rows: rewards; columns: tasks. Exact (V, STD) per prompt and one 10-sample estimate of each."""
    prompts = tables["prompts"]
    draw0 = tables["samples"][tables["samples"]["draw"] == 0]
    tasks, rewards = task_order(prompts), list(dict.fromkeys(prompts["reward"]))
    fig, axes, _ = figure_grid(len(tasks) * len(rewards), ["x"], panel_size=2.2, columns=len(tasks))
    threshold = std_threshold(tables)
    grid = np.linspace(-1, 1, 201)
    for index, (reward, task) in enumerate((r, t) for r in rewards for t in tasks):
        ax = axes[index]
        exact = prompts[(prompts["reward"] == reward) & (prompts["task"] == task)]
        sampled = draw0.merge(exact[["input"]], on="input").query("reward == @reward")
        ax.plot(grid, np.sqrt(1 - grid**2), color="0.6", lw=0.8, ls="--")  # largest STD for rewards in [-1, 1]
        ax.axhline(threshold, color="0.3", lw=0.8, ls=":")
        ax.scatter(sampled["sample_mean"], sampled["sample_std"], s=14, facecolors="none", edgecolors="0.45",
                   lw=0.6, label="10 samples")  # fmt: skip
        for covered, colour in ((True, "#1e8449"), (False, "#b9770e")):
            part = exact[exact["covered"] == covered]
            ax.scatter(part["reward_mean"], part["reward_std"], s=10, color=colour,
                       label="exact, " + ("covered" if covered else "not covered"))  # fmt: skip
        share = exact["stalled"].mean()
        ax.set_title(f"{task} · {reward}\nstalled {share:.0%}", fontsize=8)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("reward mean V (reward units)" if index >= len(axes) - len(tasks) else "")
        ax.set_ylabel("reward STD" if index % len(tasks) == 0 else "")
    axes[0].legend(fontsize=6, loc="upper left")
    fig.suptitle(f"Per-prompt reward mean vs STD under the pretrained model (dotted: STD = {threshold:g})")
    return fig


def std_threshold(tables: dict[str, pd.DataFrame]) -> float:
    """The run's ``std_threshold`` (a column of the ``prompts`` table)."""
    return float(tables["prompts"]["std_threshold"].iloc[0])


@themed()
def plot_std_error(tables: dict[str, pd.DataFrame]) -> Any:  # noqa: ANN401 - a Figure
    """Exact STD (x) vs the STD of 10 samples (y): every draw (faint) and the mean over draws, per reward."""
    both = tables["samples"].merge(tables["prompts"][["reward", "input", "reward_std"]], on=["reward", "input"])
    errors = std_error(tables).set_index("reward")
    rewards = list(dict.fromkeys(tables["prompts"]["reward"]))
    fig, axes, _ = figure_grid(len(rewards), ["x"], panel_size=3.0, columns=len(rewards))
    for ax, reward in zip(axes, rewards, strict=True):
        frame = both[both["reward"] == reward]
        ax.scatter(frame["reward_std"], frame["sample_std"], s=3, alpha=0.15, color="0.5", label="one draw")
        mean = frame.groupby("input")[["reward_std", "sample_std"]].mean()
        ax.scatter(mean["reward_std"], mean["sample_std"], s=8, color=COLORS["RFT"], label="mean over draws")
        top = max(frame["reward_std"].max(), frame["sample_std"].max()) * 1.05 + 1e-3
        ax.plot([0, top], [0, top], color="k", lw=0.8)
        row = errors.loc[reward]
        ax.set_title(f"{reward}: bias {row['bias']:+.3f}, RMSE {row['rmse']:.3f}\n"
                     f"zero sample STD {row['share_zero_sample_std']:.0%}", fontsize=8)  # fmt: skip
        ax.set_xlabel("exact reward STD")
        ax.set_ylabel("STD of 10 samples")
    axes[0].legend(fontsize=7)
    fig.suptitle("Estimating the STD from 10 samples per prompt, as the paper did")
    return fig


@themed()
def plot_tasks(table: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Per trained reward: tasks ordered by the stalled share, reward pretrained / after RFT / after SFT."""
    rewards = list(dict.fromkeys(table["reward"]))
    fig, axes, _ = figure_grid(len(rewards), ["x"], panel_size=3.2, columns=len(rewards))
    for ax, reward in zip(axes, rewards, strict=True):
        frame = table[table["reward"] == reward].reset_index(drop=True)
        x = np.arange(len(frame))
        ax.bar(x - 0.27, frame["pretrained"], width=0.27, color="0.7", label="pretrained")
        ax.bar(x, frame["RFT"], width=0.27, color=COLORS["RFT"], label="RFT")
        ax.bar(x + 0.27, frame["SFT"], width=0.27, color=COLORS["SFT"], label="SFT")
        ax.set_xticks(x, [f"{t}\n{s:.0%} stalled" for t, s in zip(frame["task"], frame["stalled_exact"], strict=True)],
                      fontsize=7)  # fmt: skip
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("mean reward")
        ax.set_title(f"trained on {reward} (equal steps)", fontsize=9)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Tasks ordered by their share of stalled prompts")
    return fig


@themed()
def plot_gain_vs_std(gain_table: pd.DataFrame) -> Any:  # noqa: ANN401 - a Figure
    """Rows: trained rewards; columns RFT, SFT: per-prompt initial STD vs reward gain, coloured by task."""
    rewards = list(dict.fromkeys(gain_table["reward"]))
    tasks = list(dict.fromkeys(gain_table["task"]))
    boot = pd.concat([bootstrap_correlations(gain_table, column) for column in ("gain", "gap_closed")])
    pearson = boot[boot["correlation"] == "pearson"].set_index(["reward", "statistic", "method"])
    fig, axes, colors = figure_grid(2 * len(rewards), tasks, panel_size=3.0, columns=2)
    for index, (reward, name) in enumerate((r, m) for r in rewards for m in ("RFT", "SFT")):
        ax = axes[index]
        frame = gain_table[(gain_table["reward"] == reward) & (gain_table["method"] == name)]
        for task in tasks:
            part = frame[frame["task"] == task]
            ax.scatter(part["reward_std"], part["gain"], s=10, color=colors[task], label=task)
        cells = []
        for statistic, words in (("gain", "gain"), ("gap_closed", "gap closed")):
            if (reward, statistic, name) in pearson.index:
                row = pearson.loc[(reward, statistic, name)]
                cells.append(f"r with {words} = {row['value']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]")
        ax.set_title(f"{name} on {reward}\n" + "\n".join(cells), fontsize=8, color=COLORS[name])
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("initial reward STD")
        ax.set_ylabel("reward gain V_end - V_0")
    axes[0].legend(fontsize=6)
    fig.suptitle("Per-prompt gain vs initial STD (each method at its best learning rate)")
    return fig


#: the lowest gap closed :func:`draw_gap_closed` shows (prompts below it are drawn on it).
GAP_FLOOR = -1.0


def log_floor(prompts: pd.DataFrame, reward: str) -> float:
    """The left end of a log STD axis for ``reward``'s prompts: the power of ten at or below its smallest positive
    STD."""
    stds = prompts[prompts["reward"] == reward]["reward_std"]
    return float(10 ** np.floor(np.log10(max(float(stds[stds > 0].min()), 1e-8))))


def draw_mean_vs_std(
    ax: Any,  # noqa: ANN401 - a matplotlib Axes
    tables: dict[str, pd.DataFrame],
    reward: str,
    floor: float,
    far_fraction: float,
    coverage: dict[str, float] | None = None,
    log_x: bool = False,
) -> dict[str, float]:
    """On ``ax``: each prompt's exact reward mean against its exact reward STD (linear x, or log x clipped at
    ``floor`` if ``log_x``) under
    the pretrained model for ``reward`` (first replica), coloured by task, with the stalled region (STD below the
    threshold, mean more than ``far_fraction`` of the range below the best) shaded; the legend gives each task's
    pretraining ``coverage`` (if given) and stalled share, exact / from samples. Returns the exact share per task."""
    prompts = tables["prompts"]
    prompts = prompts[(prompts["reward"] == reward) & (prompts["replica"] == prompts["replica"].min())]
    tasks = task_order(prompts)
    colors = palette(tasks)
    share_table = shares(tables)
    sampled_share = share_table[share_table["reward"] == reward].set_index("task")["stalled_sampled"]
    threshold = float(prompts["std_threshold"].iloc[0])
    best, worst = float(prompts["best_reward"].median()), float(prompts["worst_reward"].median())
    far = best - far_fraction * (best - worst)

    left, right = (floor, 1.5) if log_x else (-0.03, 1.03)
    ax.fill_between([left, threshold], worst - 0.05, far, color="0.88", lw=0, zorder=0)  # behind the points
    if log_x:
        ax.text(floor * 1.5, worst + 0.12, "stalled: small STD,\nfar from the best", fontsize=7, color="0.3")
    else:  # inside the arc STD = sqrt(1 - V^2) that bounds the points, clear of them
        ax.text(threshold + 0.03, worst + 0.3, "\u2190 shaded: stalled,\nsmall STD, far from the best",
                fontsize=7, color="0.3")  # fmt: skip
    stalled = {}
    for task in tasks:
        part = prompts[prompts["task"] == task]
        stalled[task] = float(part["stalled"].mean())
        sampled = float(sampled_share.get(task, float("nan")))
        label = f"{task}"
        if coverage and task in coverage:
            label += f" ({coverage[task]:.0%} covered)"
        label += f": {stalled[task]:.0%} / {sampled:.0%}"
        x = part["reward_std"].clip(lower=floor) if log_x else part["reward_std"]
        ax.scatter(x, part["reward_mean"], s=12, color=colors[task], alpha=0.8, lw=0, label=label, zorder=3)
    ax.axvline(threshold, color="0.4", ls=":", lw=0.9)
    ax.set(
        xscale="log" if log_x else "linear",
        xlim=(left, right),
        ylim=(worst - 0.05, best + 0.05),
        xlabel="initial reward STD" + (" (log scale)" if log_x else ""),
        ylabel=f"initial reward mean V ({reward.replace('_', ' ')}, [-1, 1])",
        title="prompts under the pretrained model",
    )
    placement = {"loc": "upper left"} if log_x else {"loc": "center", "bbox_to_anchor": (0.43, 0.5)}
    ax.legend(fontsize=7, title="task: stalled, exact / 10 samples", title_fontsize=7, **placement)
    return stalled


def draw_gap_closed(
    ax: Any,  # noqa: ANN401 - a matplotlib Axes
    tables: dict[str, pd.DataFrame],
    reward: str,
    floor: float,
    title: str = "after training",
    log_x: bool = False,
) -> dict[str, dict[str, float]]:
    """On ``ax``: the share of each prompt's gap to its best reward closed, ``(V_end - V_0) / (best - V_0)``,
    against its initial STD (linear x, or log x clipped at ``floor`` if ``log_x``), RFT red and SFT blue, each
    at its best lr; prompts below :data:`GAP_FLOOR` are drawn on it. Returns per method (and ``"RFT - SFT"``)
    the Pearson r over prompts of the initial STD with the gap closed and its bootstrap interval
    (:func:`bootstrap_correlations`: ``r``, ``low``, ``high``, ``prompts``, ``not_stalled``), and per method the
    mean share closed on the stalled prompts (``on_stalled``)."""
    gain_table = gains(tables)
    table = gain_table[gain_table["reward"] == reward].dropna(subset=["gap_closed"])
    boot = bootstrap_correlations(gain_table[gain_table["reward"] == reward], "gap_closed")
    pearson = boot[boot["correlation"] == "pearson"].set_index("method")
    found: dict[str, dict[str, float]] = {}
    for name in ("RFT - SFT", "SFT", "RFT"):
        row = pearson.loc[name] if name in pearson.index else None
        found[name] = {
            key: float("nan") if row is None else float(row[column])
            for key, column in (("r", "value"), ("low", "low"), ("high", "high"), ("prompts", "prompts"),
                                ("not_stalled", "not_stalled"))
        }  # fmt: skip
    for name in ("SFT", "RFT"):
        part = table[table["method"] == name]
        found[name]["on_stalled"] = float(part[part["stalled"].astype(bool)]["gap_closed"].mean())
        cell = found[name]
        label = f"{name}: r = {cell['r']:+.2f} [{cell['low']:+.2f}, {cell['high']:+.2f}]"
        x = part["reward_std"].clip(lower=floor) if log_x else part["reward_std"]
        inside = part["gap_closed"] >= GAP_FLOOR
        ax.scatter(x[inside], part["gap_closed"][inside], s=12, color=COLORS[name], alpha=0.7, lw=0, label=label)
        below = int((~inside).sum())
        if below:  # prompts that training pushed far below their start: drawn on the floor
            label = f"{name}: {below} below {GAP_FLOOR:g} (lowest {part['gap_closed'].min():.1f})"
            ax.scatter(x[~inside], np.full(below, GAP_FLOOR + 0.04), s=22, marker="v", color=COLORS[name], lw=0,
                       label=label)  # fmt: skip
    ax.axvline(float(tables["prompts"]["std_threshold"].iloc[0]), color="0.4", ls=":", lw=0.9)
    ax.axhline(0, color="k", lw=0.6, zorder=4)
    ax.set(xscale="log" if log_x else "linear", xlim=(floor, 1.5) if log_x else (-0.03, 1.03),
           xlabel="initial reward STD" + (" (log scale)" if log_x else ""),
           ylabel="gap closed (V_end - V_0) / (best - V_0)", title=title)  # fmt: skip
    ax.set_ylim(max(GAP_FLOOR, min(-0.15, float(table["gap_closed"].min()) - 0.05)), 1.1)
    legend_title = (
        f"{table['input'].nunique()} prompts {MIN_GAP:.0%}+ below best, "
        f"{int(found['RFT']['not_stalled'])} not stalled\n"
        f"Pearson r, STD vs gap closed [{CONFIDENCE:.0%} bootstrap]"
    )
    placement = {"loc": "lower left"} if log_x else {"loc": "lower center", "bbox_to_anchor": (0.47, 0.03)}
    ax.legend(fontsize=7, title=legend_title, title_fontsize=7, **placement)
    return found

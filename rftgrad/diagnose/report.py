"""The diagnosis of a rollout log: the mean-vs-STD scatter, the printed summary, the files written.

:func:`diagnose` reads the log, computes everything in memory and only then writes (each file
atomically), so a bad file leaves nothing behind:

    OUT/prompts.csv      one row per group (see :func:`rftgrad.diagnose.stats.prompt_table`)
    OUT/steps.csv        one row per step (logs with a step column only)
    OUT/summary.json     :func:`rftgrad.diagnose.stats.summarize`
    OUT/mean_vs_std.png  (and .pdf) x = reward STD, y = reward mean, the vanishing region shaded

and, with ``export_stalled=FILE``, the vanishing prompts as a dataset for TRL's ``SFTTrainer``
(:func:`export_stalled`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.diagnose.readers import RolloutLog, check_group_size, read_rollouts
from rftgrad.diagnose.stats import (
    GROUP_SIZES,
    Regime,
    check_group_sizes,
    check_regime_options,
    check_scale_rewards,
    make_regime,
    prompt_table,
    summarize,
)
from rftgrad.errors import ConfigError, OutputError
from rftgrad.plotting import COLORS, figure_grid, save_figure, themed
from rftgrad.results import atomic_write_text, claim_run_dir, config_fingerprint, free_run_dir

#: the figure's file name (without suffix) inside the output folder.
FIGURE_NAME = "mean_vs_std"
#: at most this many "×k" labels on the scatter, on its most crowded points: a label is a text artist
#: that layout measures, and 19,000 of them (a TRL run of 32,000 groups) took 74 s to save.
SCATTER_MAX_LABELS = 40
#: a scatter of more distinct points than this draws smaller, fainter markers and no labels.
SCATTER_SPARSE = 400
#: the suffix of the file of stalled prompts without a reference, beside ``--export-stalled FILE``.
TO_LABEL_SUFFIX = ".to_label.jsonl"
#: what the export is for (printed with it).
EXPORT_NOTE = (
    "a few SFT steps on such inputs, then RFT, move them where RFT alone does not (Razin et al., ICLR 2024, "
    "Section 5.2; docs/paper.md §6)"
)


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose_log` finds: the per-group table, the groups left out, the summary."""

    log: RolloutLog
    regime: Regime
    table: pd.DataFrame
    skipped: pd.DataFrame
    summary: dict[str, Any]

    def steps(self) -> pd.DataFrame:
        """One row per step (empty without a step column): our per-group numbers and TRL's ``trl_*`` ones."""
        return pd.DataFrame(self.summary["per_step"])


def diagnose_log(
    log: RolloutLog,
    reward_range: tuple[float, float] | None = None,
    max_reward: float | None = None,
    std_threshold: float | None = None,
    gap: float | None = None,
    group_sizes: Sequence[int] = GROUP_SIZES,
    skip_singletons: bool = False,
    scale_rewards: str = "group",
) -> Diagnosis:
    """Per-group statistics and the summary of ``log`` (nothing written); options as in :func:`diagnose`."""
    group_sizes = check_group_sizes(group_sizes)
    scale_rewards = check_scale_rewards(scale_rewards)
    regime = make_regime(log, reward_range, max_reward, std_threshold, gap)
    table, skipped = prompt_table(log, regime, group_sizes, skip_singletons)
    summary = summarize(log, table, regime, group_sizes, skipped, scale_rewards)
    return Diagnosis(log, regime, table, skipped, summary)


@themed()
def plot_mean_vs_std(diagnosis: Diagnosis, max_labels: int = SCATTER_MAX_LABELS, sparse: int = SCATTER_SPARSE) -> Any:  # noqa: ANN401 - a matplotlib Figure
    """Reward mean (y) against reward STD (x), one marker per group, the vanishing region shaded.

    Marker area grows with the group's number of samples; groups at the same point are drawn
    once and labelled ``×k`` (the ``max_labels`` most crowded points, none past ``sparse`` distinct
    points, where markers also shrink and fade). The dashed arc
    ``STD = sqrt((mean - lo)(hi - mean))`` is the largest STD a reward in ``[lo, hi]`` can have at
    that mean (two-point distributions on ``lo``, ``hi``).
    """
    regime, table = diagnosis.regime, diagnosis.table
    lo, hi = regime.reward_range
    width = hi - lo
    fig, (ax,), _ = figure_grid(1, [], panel_size=5.0)
    points = (
        table.assign(x=table["reward_std"].round(9), y=table["reward_mean"].round(9))
        .groupby(["x", "y", "vanishing"], as_index=False)
        .agg(groups=("n", "size"), n=("n", "mean"))
    )
    x_max = max(width / 2, float(points["x"].max())) * 1.08
    ax.fill_between(
        [0.0, regime.std_threshold],
        lo - 0.05 * width,
        regime.mean_below,
        color=COLORS["RFT"],
        alpha=0.12,
        label=f"vanishing regime: STD < {regime.std_threshold:.3g}, mean < {regime.mean_below:.3g}",
    )
    means = np.linspace(lo, hi, 201)
    ax.plot(np.sqrt((means - lo) * (hi - means)), means, "--", color="0.5", lw=1, label="largest STD at a mean")
    ax.axhline(regime.max_reward, color="0.3", lw=0.8, ls=":", label=f"max reward {regime.max_reward:.3g}")
    # up to `sparse` points: areas up to 200 pt², labels; past it markers shrink and fade with sqrt(sparse / points)
    # (a TRL run of 32,000 groups otherwise paints one opaque blob) and no "×k" labels are drawn
    crowding = min(1.0, math.sqrt(sparse / len(points)))
    sizes = (15 + 185 * points["n"] / points["n"].max()) * max(crowding, 0.05)
    alpha = max(0.6 * crowding, 0.1)
    labelled = len(points) <= sparse
    for vanishing, color, label in ((False, COLORS["SFT"], "other groups"), (True, COLORS["RFT"], "vanishing")):
        mine = points["vanishing"] == vanishing
        if mine.any():
            ax.scatter(
                points.loc[mine, "x"],
                points.loc[mine, "y"],
                s=sizes[mine],
                color=color,
                alpha=alpha,
                label=label,
                rasterized=len(points) > 2000,  # a bitmap inside the PDF: many markers stay quick to save
            )
    shared = points[points["groups"] > 1].nlargest(max_labels if labelled else 0, "groups", keep="first")
    for row in shared.itertuples():  # the most crowded points
        ax.annotate(f"×{row.groups}", (row.x, row.y), xytext=(6, 4), textcoords="offset points", fontsize=7)
    ax.set(
        xlim=(-0.02 * x_max, x_max),
        ylim=(lo - 0.05 * width, hi + 0.05 * width),
        xlabel="reward STD over a group's samples",
        ylabel="reward mean",
        title=f"{diagnosis.log.path.name}: {diagnosis.summary['vanishing']['share']:.1%} of "
        f"{len(table)} groups vanishing (area ∝ samples" + (", ×k = k groups)" if labelled else ")"),
    )
    legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7, markerscale=0.5)
    for handle in legend.legend_handles:  # legend markers stay visible when the points fade
        if hasattr(handle, "set_alpha") and handle.get_alpha() is not None and handle.get_alpha() < 0.6:
            handle.set_alpha(0.6)
    return fig


def _value(value: float | None, digits: int = 4) -> str:
    return "nan" if value is None else f"{value:.{digits}f}"


def format_summary(diagnosis: Diagnosis, max_steps: int = 8, max_examples: int = 3) -> str:
    """The human-readable summary printed by ``rftgrad diagnose``."""
    s, regime = diagnosis.summary, diagnosis.regime
    cols = s["columns"]
    reward = " + ".join(
        name if weight == 1 else f"{weight:g}·{name}"
        for name, weight in zip(cols["reward"], cols["reward_weights"], strict=True)
    )
    per_group = s["samples_per_group"]
    where = f"{s['prompts']} prompts" + (f" over {s['steps']} steps" if s["steps"] is not None else "")
    files = f" in {s['files']} files" if s["files"] > 1 else ""
    grouping = s["grouping"]
    groups_by = {
        "blocks": f"blocks of {grouping['group_size']} consecutive rows per step ({grouping['group_size_source']})",
        "prompt": "prompt text" + (" per step" if s["steps"] is not None else ""),
        "rows": "row (one list of rewards per row)",
        "uid": "verl's uid (the v1 dump's {uid}_{session}_{index} key)",
        "column": "the group column" + (" per step" if s["steps"] is not None else ""),
    }[grouping["by"]]
    lines = [
        f"{s['file']}: {s['rows']} {s['format']} rows{files}, {s['layout']} layout, {s['shape']}; "
        f"prompt={cols['prompt']!r}, reward={reward!r}, step={cols['step']!r}",
        f"{s['samples']} samples in {s['groups']} groups ({where}; grouped by {groups_by}); samples per group: "
        f"min {per_group['min']}, median {per_group['median']:g}, max {per_group['max']}"
        + (f"; {s['skipped_single_sample_groups']} single-sample groups skipped" if len(diagnosis.skipped) else "")
        + (
            f"; {s['unscorable_samples']} unscorable samples (no reward from any function) left out, as TRL does"
            if s["unscorable_samples"]
            else ""
        ),
        f"reward range [{regime.reward_range[0]:g}, {regime.reward_range[1]:g}] ({regime.range_source}), "
        f"max reward {regime.max_reward:g} ({regime.max_source}); mean reward {s['reward_mean']:.3f}, "
        f"group_reward_std_mean {s['group_reward_std_mean']:.3f} (population STD within a group, mean over groups)",
        f"vanishing regime (STD < {regime.std_threshold:g} and mean < {regime.mean_below:g}): "
        f"{s['vanishing']['count']} of {s['groups']} groups ({s['vanishing']['share']:.1%})",
    ]
    zero = s["zero_std_groups"]
    lines.append(
        f"zero_std_groups (all rewards of a group equal): {zero['share']:.3f} ± {zero['standard_error']:.3f} (SE)"
    )
    trl = s["trl_metrics"]
    if trl["per_step"]:
        lines.append(
            f"as TRL logs them (scale_rewards={trl['scale_rewards']!r}; reward_std = Bessel STD of all of a step's "
            "rewards, not a per-group STD):"
        )
        shown = trl["per_step"][:max_steps]
        label = "step" if "step" in shown[0] else ""
        for row in shown:
            head = f"  {label} {row['step']}: " if label else "  whole log: "
            lines.append(
                f"{head}reward {_value(row['reward'])}, reward_std {_value(row['reward_std'])}, "
                f"frac_reward_zero_std {_value(row['frac_reward_zero_std'])}"
            )
        if len(trl["per_step"]) > max_steps:
            lines.append(f"  ... ({len(trl['per_step'])} steps: steps.csv)")
        if trl["scale_rewards"] == "batch":
            lines.append(
                "  under scale_rewards='batch' TRL's frac_reward_zero_std tests the std of the whole step, so it is "
                f"1 only when every reward of the step is equal; the share of all-equal groups is {zero['share']:.3f}"
            )
    lines.append("predicted frac_reward_zero_std for groups of G (mean over groups of Σ_j q_j^G):")
    width = max([4] + [len(str(row["group_size"])) for row in s["predicted_frac_reward_zero_std"]])
    lines.append(f"  {'G':>{width}}  {'plug-in':>8}  {'unbiased':>8}")
    for row in s["predicted_frac_reward_zero_std"]:
        unbiased = "-" if row["unbiased"] is None else f"{row['unbiased']:.3f}"
        partial = f"  ({row['unbiased_groups']} groups with n >= G)" if 0 < row["unbiased_groups"] < s["groups"] else ""
        lines.append(f"  {row['group_size']:>{width}}  {row['plugin']:>8.3f}  {unbiased:>8}{partial}")
    worst = diagnosis.table[diagnosis.table["vanishing"]].sort_values("reward_mean", kind="stable")
    if len(worst):
        examples = "; ".join(
            f"{_clip(row.prompt)} (mean {row.reward_mean:.3g}, STD {row.reward_std:.3g}, n {row.n}, {row.first_row})"
            for row in worst.head(max_examples).itertuples()
        )
        lines.append(f"lowest-mean vanishing groups: {examples}")
    return "\n".join(lines)


def _clip(text: str, limit: int = 32) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def write_report(diagnosis: Diagnosis, out_dir: str | Path) -> list[Path]:
    """Write ``prompts.csv``, ``steps.csv`` (with steps), ``summary.json`` and the figure; returns the paths.

    ``summary.json`` is strict JSON (``allow_nan=False``): a NaN or infinity in the summary is a
    bug and raises ``ValueError`` before any file is written.
    """
    # drawn and serialised before anything is written; strict JSON: a NaN or inf is a bug, raised here
    figure = plot_mean_vs_std(diagnosis)
    summary = json.dumps(diagnosis.summary, indent=2, default=str, allow_nan=False) + "\n"
    out = Path(out_dir)
    written = [atomic_write_text(out / "prompts.csv", diagnosis.table.to_csv(index=False))]
    if diagnosis.summary["per_step"]:
        written.append(atomic_write_text(out / "steps.csv", diagnosis.steps().to_csv(index=False)))
    written.append(atomic_write_text(out / "summary.json", summary))
    written.append(save_figure(figure, out / FIGURE_NAME))
    return written


@dataclass(frozen=True)
class StalledExport:
    """What :func:`export_stalled` wrote: the SFT dataset and the prompts still to label."""

    sft_file: Path | None
    sft_rows: int
    to_label_file: Path | None
    to_label_rows: int


def to_label_path(path: str | Path) -> Path:
    """The file beside ``path`` for the stalled prompts without a reference: ``s.jsonl`` -> ``s.to_label.jsonl``."""
    path = Path(path)
    return path.with_name(path.stem + TO_LABEL_SUFFIX)


def check_export_path(path: str | Path, inputs: Sequence[str | Path] = (), overwrite: bool = False) -> Path:
    """``--export-stalled FILE``, checked before any work: a ``.jsonl`` name, not an input, new unless ``overwrite``.

    Raises:
        * :exc:`ConfigError`: a name that does not end in ``.jsonl``.
        * :exc:`OutputError`: ``path`` (or its ``.to_label.jsonl`` sibling) is an input, a folder, or exists
          without ``overwrite``.
    """
    path = Path(path)
    if path.suffix.lower() != ".jsonl" or path.name.endswith(TO_LABEL_SUFFIX):
        raise ConfigError(
            f"--export-stalled writes JSON Lines: name the file *.jsonl (not *{TO_LABEL_SUFFIX}), got {path}"
        )
    for target in (path, to_label_path(path)):
        if any(target.resolve() == Path(source).resolve() for source in inputs):
            raise OutputError(f"{target}: is the log being read; export the stalled prompts to another file")
        if target.is_dir():
            raise OutputError(f"{target}: is a folder; name a .jsonl file for --export-stalled")
        if target.exists() and not overwrite:
            raise OutputError(f"{target}: exists; pass --overwrite to replace it, or name another file")
    return path


def export_stalled(diagnosis: Diagnosis, path: str | Path, overwrite: bool = False) -> StalledExport:
    """Write the prompts in the vanishing regime as a dataset for TRL's ``SFTTrainer``.

    One row per distinct stalled prompt (its latest stalled group; across steps a prompt appears once):

    * ``path``: ``{"prompt", "completion"}`` rows for the prompts with a reference answer
      (``--reference-col``; verl's ``gts``): TRL's prompt-completion format. Chat prompts keep their
      messages and get ``[{"role": "assistant", "content": reference}]`` as completion.
    * ``<stem>.to_label.jsonl`` (:func:`to_label_path`): the prompts without a reference, with their
      statistics (``reward_mean``, ``reward_std``, ``n``, ``step``, ``first_row``), for a person or a
      stronger model to answer; add a ``completion`` and it is an SFT dataset too.

    Razin et al. (ICLR 2024, Section 5.2; docs/paper.md §6): a short SFT phase on such inputs lets
    RFT move them. A file with no rows is not written.

    Raises:
        * :exc:`OutputError`: ``path`` (or its ``.to_label.jsonl`` sibling) is an input, a folder, or exists
          without ``overwrite``.
    """
    path = check_export_path(path, [diagnosis.log.path, *diagnosis.log.files], overwrite)
    table = diagnosis.table
    stalled = table[table["vanishing"]]
    if "step" in stalled:
        stalled = stalled.sort_values("step", kind="stable")
    stalled = stalled.drop_duplicates("prompt", keep="last")  # (P',) the latest stalled group of each prompt
    references: dict[str, str] = {}
    if "reference" in diagnosis.log.samples:
        known = diagnosis.log.samples.dropna(subset=["reference"])
        references = dict(zip(known["prompt"], known["reference"], strict=True))
    sft_rows, label_rows = [], []
    for row in stalled.itertuples(index=False):
        prompt = json.loads(row.prompt) if diagnosis.log.chat_prompts else row.prompt
        reference = references.get(row.prompt)
        if reference is not None:
            completion = [{"role": "assistant", "content": reference}] if diagnosis.log.chat_prompts else reference
            sft_rows.append({"prompt": prompt, "completion": completion})
        else:
            stats = {"reward_mean": float(row.reward_mean), "reward_std": float(row.reward_std), "n": int(row.n)}
            step = (
                {"step": row.step.item() if isinstance(row.step, np.generic) else row.step} if "step" in stalled else {}
            )
            label_rows.append({"prompt": prompt, **stats, **step, "first_row": row.first_row})

    def write(target: Path, rows: list[dict[str, Any]]) -> Path | None:
        if not rows:
            return None
        return atomic_write_text(target, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))

    return StalledExport(write(path, sft_rows), len(sft_rows), write(to_label_path(path), label_rows), len(label_rows))


def default_out_dir(path: str | Path) -> Path:
    """``diagnose_<file stem>`` in the working directory."""
    return Path(f"diagnose_{Path(path).stem}")


def diagnose(
    path: str | Path,
    out_dir: str | Path | None = None,
    *,
    fmt: str | None = None,
    prompt_col: str | None = None,
    reward_col: str | Sequence[str] | None = None,
    reward_weights: Sequence[float] | None = None,
    step_col: str | None = None,
    reward_range: tuple[float, float] | None = None,
    max_reward: float | None = None,
    std_threshold: float | None = None,
    gap: float | None = None,
    group_sizes: Sequence[int] = GROUP_SIZES,
    skip_singletons: bool = False,
    group_size: int | None = None,
    scale_rewards: str = "group",
    reference_col: str | None = None,
    group_col: str | None = None,
    export_stalled_to: str | Path | None = None,
    overwrite: bool = False,
) -> tuple[Diagnosis, list[Path]]:
    """Read the rollout log at ``path``, diagnose it and write the report to ``out_dir``.

    The output folder is claimed first (:func:`rftgrad.results.claim_run_dir`): a folder that holds
    ``path``, a finished report, another command's run or other files is refused unless
    ``overwrite`` (never the one holding ``path``), and a refused or failed run leaves nothing.

    Args:
        * ``path``: a JSONL / JSON / CSV / TSV / parquet rollout log, or a directory of per-step logs
          (TRL's ``completions/`` or ``output_dir``, verl's ``rollout_data_dir``;
          :func:`rftgrad.diagnose.read_rollouts`).
        * ``out_dir``: output folder (default ``diagnose_<file stem>``, else ``diagnose_<file stem>-2``, ...:
          the first that is free, :func:`rftgrad.results.free_run_dir`).
        * ``fmt``, ``prompt_col``, ``reward_col``, ``reward_weights``, ``step_col``, ``group_size``,
          ``reference_col``, ``group_col``: passed to :func:`read_rollouts`.
        * ``reward_range``: ``(lo, hi)`` every reward must lie in (default: the observed range).
        * ``max_reward``: best achievable reward (default: ``hi`` of ``reward_range``, else the observed maximum).
        * ``std_threshold``: vanishing when a group's STD is below this (default ``0.1·(hi - lo)``).
        * ``gap``: vanishing needs a mean below ``max_reward - gap`` (default ``0.5·(hi - lo)``).
        * ``group_sizes``: ``G`` values for the predicted ``frac_reward_zero_std``: whole numbers ``>= 1``
          (ints, or whole floats such as ``8.0``), each once; any size is fast.
        * ``skip_singletons``: leave out groups with one sample instead of raising.
        * ``scale_rewards``: TRL's ``scale_rewards`` (``group``, ``batch``, ``none``), for TRL's own metrics
          (:func:`rftgrad.diagnose.trl_metrics`).
        * ``export_stalled_to``: write the stalled prompts there as an SFT dataset (:func:`export_stalled`);
          returned after the report's files.
        * ``overwrite``: replace what ``out_dir`` holds (see above), and an existing ``export_stalled_to``.

    Every number must be finite; the options are checked before the file is read.

    Returns:
        The diagnosis and the files written.

    Raises:
        * :exc:`RolloutLogError`: a file that cannot be read or analysed (the message names the row);
          nothing is written.
        * :exc:`ConfigError`: an option out of range: a non-finite or negative ``std_threshold`` / ``gap``, a
          non-finite ``max_reward``, ``reward_range`` not two finite numbers with ``lo < hi``, bad
          ``group_sizes`` or ``reward_weights``, an empty or repeated column name; nothing is written.
    """
    check_regime_options(reward_range, max_reward, std_threshold, gap)  # before a long read of the file
    group_sizes = check_group_sizes(group_sizes)  # as ints
    group_size = check_group_size(group_size)
    scale_rewards = check_scale_rewards(scale_rewards)
    if export_stalled_to is not None:
        check_export_path(export_stalled_to, [path], overwrite)
    options = {
        "file": str(path), "format": fmt, "prompt_col": prompt_col, "reward_col": reward_col,
        "reward_weights": reward_weights, "step_col": step_col, "reward_range": reward_range,
        "max_reward": max_reward, "std_threshold": std_threshold, "gap": gap,
        "group_sizes": list(group_sizes), "skip_singletons": skip_singletons, "group_size": group_size,
        "scale_rewards": scale_rewards, "reference_col": reference_col, "group_col": group_col,
        "export_stalled": None if export_stalled_to is None else str(export_stalled_to),
    }  # fmt: skip
    fingerprint = config_fingerprint(options)
    out = free_run_dir(default_out_dir(path), "diagnose", fingerprint) if out_dir is None else out_dir
    with claim_run_dir(out, "diagnose", fingerprint, overwrite=overwrite, inputs=[path]) as claim:
        log = read_rollouts(
            path, fmt, prompt_col, reward_col, reward_weights, step_col, group_size, reference_col, group_col
        )
        diagnosis = diagnose_log(
            log, reward_range, max_reward, std_threshold, gap, group_sizes, skip_singletons, scale_rewards
        )
        written = write_report(diagnosis, claim.path)
        if export_stalled_to is not None:
            export = export_stalled(diagnosis, export_stalled_to, overwrite)
            written += [p for p in (export.sft_file, export.to_label_file) if p is not None]
        claim.finish()
    return diagnosis, written

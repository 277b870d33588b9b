"""Which prompts of a rollout log sit in the vanishing-gradient regime (``rftgrad diagnose FILE``).

Theorem 1 (docs/paper.md §2) says an input's expected policy gradient is small when its
reward STD under the model is small, whatever its expected reward. Rollout logs (one row per
sampled output, with a prompt and a reward) estimate both per prompt, so this package reports:

* per prompt (per step and prompt when the log has steps): reward mean, population STD, sample count;
* the share of prompts in the vanishing regime: STD below a threshold while the mean is far below
  the maximum reward (docs/paper.md §5's mean-vs-STD picture, as a number);
* the share of groups whose rewards are all equal (``zero_std_groups``) and its prediction
  ``Σ_j q_j^G`` for other group sizes (docs/paper.md §7), plug-in and unbiased;
* TRL's own ``reward``, ``reward_std`` and ``frac_reward_zero_std`` per step, as TRL defines them
  (:func:`~rftgrad.diagnose.stats.trl_metrics`), so that a TRL dashboard can be checked number by number;
* with ``--export-stalled``, the stalled prompts as a dataset for TRL's ``SFTTrainer``;
* a mean-vs-STD scatter, ``prompts.csv`` and ``summary.json``.

Modules: ``readers`` (formats, shapes, column detection: :func:`read_rollouts`),
``stats`` (estimators and tables: :func:`prompt_table`), ``report`` (figure, printed summary,
files: :func:`diagnose`), ``preflight`` (the same statistics from a model before training, exact or
sampled: :func:`preflight`). See docs/diagnose.md.
"""

from rftgrad.diagnose.preflight import (
    DEFAULT_SAMPLES,
    PREFLIGHT_MAX_OUTPUTS,
    CheckedReward,
    LazyTextEnv,
    Preflight,
    PromptSet,
    PromptsFileError,
    answer_token_ids,
    check_preflight_export,
    check_references,
    default_regime,
    export_preflight_stalled,
    format_preflight,
    load_reward,
    preflight,
    read_prompts,
    run_preflight,
    sampled_reward_stats,
    write_preflight,
)
from rftgrad.diagnose.readers import (
    FORMATS,
    PROMPT_COLUMNS,
    REFERENCE_COLUMNS,
    REWARD_COLUMNS,
    STEP_COLUMNS,
    RolloutLog,
    RolloutLogError,
    check_number,
    detect_format,
    log_files,
    read_rollouts,
    total_reward,
)
from rftgrad.diagnose.report import (
    EXPORT_NOTE,
    SCATTER_MAX_LABELS,
    SCATTER_SPARSE,
    TO_LABEL_SUFFIX,
    Diagnosis,
    StalledExport,
    default_out_dir,
    diagnose,
    diagnose_log,
    export_stalled,
    format_summary,
    plot_mean_vs_std,
    to_label_path,
    write_report,
)
from rftgrad.diagnose.stats import (
    GAP_FRACTION,
    GROUP_SIZES,
    SCALE_REWARDS,
    STD_THRESHOLD_FRACTION,
    VALUE_DECIMALS,
    Regime,
    check_group_sizes,
    check_reward_range,
    make_regime,
    plugin_prob_all_equal,
    prompt_table,
    summarize,
    trl_metrics,
    trl_nanstd,
    unbiased_prob_all_equal,
    value_counts,
)

__all__ = [
    "CheckedReward",
    "DEFAULT_SAMPLES",
    "Diagnosis",
    "EXPORT_NOTE",
    "FORMATS",
    "GAP_FRACTION",
    "GROUP_SIZES",
    "LazyTextEnv",
    "PREFLIGHT_MAX_OUTPUTS",
    "PROMPT_COLUMNS",
    "Preflight",
    "PromptSet",
    "PromptsFileError",
    "REFERENCE_COLUMNS",
    "REWARD_COLUMNS",
    "Regime",
    "RolloutLog",
    "RolloutLogError",
    "SCALE_REWARDS",
    "STD_THRESHOLD_FRACTION",
    "SCATTER_MAX_LABELS",
    "SCATTER_SPARSE",
    "STEP_COLUMNS",
    "StalledExport",
    "TO_LABEL_SUFFIX",
    "VALUE_DECIMALS",
    "answer_token_ids",
    "check_group_sizes",
    "check_number",
    "check_preflight_export",
    "check_references",
    "check_reward_range",
    "default_out_dir",
    "default_regime",
    "detect_format",
    "diagnose",
    "diagnose_log",
    "export_preflight_stalled",
    "export_stalled",
    "format_preflight",
    "format_summary",
    "load_reward",
    "log_files",
    "make_regime",
    "plot_mean_vs_std",
    "plugin_prob_all_equal",
    "preflight",
    "prompt_table",
    "read_prompts",
    "read_rollouts",
    "run_preflight",
    "sampled_reward_stats",
    "summarize",
    "to_label_path",
    "total_reward",
    "trl_metrics",
    "trl_nanstd",
    "unbiased_prob_all_equal",
    "value_counts",
    "write_preflight",
    "write_report",
]

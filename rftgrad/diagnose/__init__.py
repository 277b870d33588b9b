"""Which prompts of a rollout log sit in the vanishing-gradient regime (``rftgrad diagnose FILE``).

Theorem 1 (docs/paper.md §2) says an input's expected policy gradient is small when its
reward STD under the model is small, whatever its expected reward. Rollout logs (one row per
sampled output, with a prompt and a reward) estimate both per prompt, so this package reports:

* per prompt (per step and prompt when the log has steps): reward mean, population STD, sample count;
* the share of prompts in the vanishing regime: STD below a threshold while the mean is far below
  the maximum reward (docs/paper.md §5's mean-vs-STD picture, as a number);
* the observed ``frac_reward_zero_std`` and its prediction ``Σ_j q_j^G`` for other group sizes
  (docs/paper.md §7), plug-in and unbiased;
* a mean-vs-STD scatter, ``prompts.csv`` and ``summary.json``.

Modules: :mod:`~rftgrad.diagnose.readers` (formats, shapes, column detection),
:mod:`~rftgrad.diagnose.stats` (estimators and tables), :mod:`~rftgrad.diagnose.report`
(figure, printed summary, files). See docs/diagnose.md.
"""

from rftgrad.diagnose.readers import FORMATS, RolloutLog, RolloutLogError, detect_format, read_rollouts
from rftgrad.diagnose.report import (
    Diagnosis,
    default_out_dir,
    diagnose,
    diagnose_log,
    format_summary,
    plot_mean_vs_std,
    write_report,
)
from rftgrad.diagnose.stats import (
    GAP_FRACTION,
    GROUP_SIZES,
    STD_THRESHOLD_FRACTION,
    VALUE_DECIMALS,
    Regime,
    make_regime,
    plugin_prob_all_equal,
    prompt_table,
    summarize,
    unbiased_prob_all_equal,
    value_counts,
)

__all__ = [
    "Diagnosis",
    "FORMATS",
    "GAP_FRACTION",
    "GROUP_SIZES",
    "Regime",
    "RolloutLog",
    "RolloutLogError",
    "STD_THRESHOLD_FRACTION",
    "VALUE_DECIMALS",
    "default_out_dir",
    "detect_format",
    "diagnose",
    "diagnose_log",
    "format_summary",
    "make_regime",
    "plot_mean_vs_std",
    "plugin_prob_all_equal",
    "prompt_table",
    "read_rollouts",
    "summarize",
    "unbiased_prob_all_equal",
    "value_counts",
    "write_report",
]

"""Per-prompt reward statistics of a rollout log: mean, STD, zero-STD groups, the vanishing regime.

A *group* is the set of samples a group-based trainer (GRPO, RLOO, ...) compares with each
other: in a TRL table, each block of ``num_generations`` consecutive rows of a step (two groups of
one prompt text stay two groups); otherwise the samples of one prompt at one step (one prompt when
the log has no step column); in a per-group log, one row (:class:`rftgrad.diagnose.RolloutLog`).

* Reward STD of a group of ``n`` samples ``r_1..r_n``: the population (plug-in) STD
  ``sqrt(1/n Σ_i (r_i - r̄)²)``, the STD of the empirical reward distribution, i.e. docs/paper.md
  section 1's ``STD(x;θ)`` with the policy replaced by the samples. It is never larger than
  ``sqrt((r̄ - lo)(hi - r̄))`` for rewards in ``[lo, hi]``, the envelope drawn in the scatter.
  Its mean over groups is ``group_reward_std_mean``. It is *not* TRL's logged ``reward_std``,
  which is the Bessel STD of all the rewards of a step, pooled over its groups
  (:func:`trl_metrics`); no factor converts one into the other.
* Vanishing regime (Theorem 1, docs/paper.md §2: ``||∇V(x;θ)|| <= 6·L·γ·STD^(2/3)``, and
  ``<= γ·sqrt(L)·STD`` sharpened): ``STD < std_threshold`` while ``r̄ < max_reward - gap``,
  i.e. the expected gradient is small although the prompt is far from solved. Defaults:
  ``std_threshold = 0.1·R`` and ``gap = 0.5·R`` for the reward range ``R = hi - lo``.
* Zero-STD groups: with reward values ``v_j`` taken with probabilities ``q_j``, a group of ``G``
  i.i.d. samples has all-equal rewards, hence no GRPO/RLOO signal, with probability
  ``Σ_j q_j^G`` (binary reward: ``p^G + (1-p)^G``; docs/paper.md §7). Two estimates per
  group from its ``n`` samples with value counts ``n_j``:

  - plug-in ``Σ_j (n_j/n)^G`` (any ``G``; biased upwards for ``G >= 2`` by Jensen);
  - unbiased ``Σ_j C(n_j, G) / C(n, G)`` for ``G <= n``: the chance that ``G`` of the ``n``
    samples drawn without replacement share one value. A random ``G``-subset of i.i.d. samples
    is ``G`` i.i.d. samples, so its expectation is exactly ``Σ_j q_j^G`` (a U-statistic);
    at ``G = n`` it is the observed indicator "all ``n`` rewards equal".

  The predicted ``frac_reward_zero_std`` for group size ``G`` is the average over groups.

  Cost in ``G``: the plug-in is one power per distinct value, ``O(K)`` per group for any ``G``.
  The unbiased ratio is 0 for a value with ``n_j < G`` and a product of ``G`` factors otherwise;
  such a value holds at least ``G`` of the group's samples, so all its products together take
  at most as many factors as the log has samples, whatever ``G`` (no limit on ``G`` is needed).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from rftgrad.diagnose.readers import RolloutLog, RolloutLogError, check_number
from rftgrad.errors import ConfigError
from rftgrad.runtime import is_whole_number
from rftgrad.theory.bounds import stalled
from rftgrad.theory.group_updates import prob_all_equal

T = TypeVar("T")  # a pandas Series, a numpy array or a tensor

#: group sizes G for the predicted frac_reward_zero_std.
GROUP_SIZES = (2, 4, 8, 16, 32, 64)
#: rewards equal to this many decimals count as one value (sums of float reward terms jitter).
VALUE_DECIMALS = 12
#: default STD threshold, as a fraction of the reward range R, below which a prompt's gradient is small.
STD_THRESHOLD_FRACTION = 0.1
#: default gap below the maximum reward, as a fraction of the reward range R, for a prompt to be stalled.
GAP_FRACTION = 0.5
#: exponents past this give the same float64 powers: ``p^G`` with ``p <= 1 - 2^-53`` (the largest
#: double below 1) is below ``exp(-2^63 · 2^-53) = exp(-1024)``, which rounds to 0, and ``1^G = 1``.
EXPONENT_CAP = 2**63
#: the unbiased estimator multiplies at most this many factors per value at a time (memory bound).
FACTOR_BLOCK = 4096
#: TRL's ``scale_rewards`` settings (GRPOConfig): the std an advantage is divided by.
SCALE_REWARDS = ("group", "batch", "none")
#: ``torch.isclose(std, 0)``'s tolerance in TRL's ``is_std_zero``: ``|std| <= atol``.
TRL_ZERO_STD_ATOL = 1e-8
#: where one row per prompt comes from in TRL (>= 1.0), and the fix.
UNIQUE_PROMPTS_HINT = (
    "TRL's W&B / trackio table keeps one row per prompt with log_unique_prompts=True: read the "
    "completions/ parquet files in output_dir instead"
)


def check_group_sizes(group_sizes: Sequence[Any], option: str = "--group-sizes") -> tuple[int, ...]:
    """``group_sizes`` as ints, each a whole number ``>= 1``, none twice (any size: see the module docstring).

    Accepts ints, numpy integers and whole floats (``8.0``: what a command line parses). ``option``
    names the setting in the messages (``group_sizes`` for a Python argument).

    Raises:
        * :exc:`ConfigError`: a value that is not a whole number ``>= 1`` (NaN, inf, 2.5, 0, a string), or a repeat.
    """
    if isinstance(group_sizes, str | bytes) or not isinstance(group_sizes, Sequence | np.ndarray):
        raise ConfigError(f"{option} takes a list of whole numbers >= 1, got {group_sizes!r}; e.g. 2,4,8")
    sizes = []
    for g in group_sizes:
        if not is_whole_number(g) or g < 1:
            shown = (
                f"{g:g}"
                if isinstance(g, float | np.floating)
                else str(g)
                if isinstance(g, numbers.Integral)
                else repr(g)
            )
            raise ConfigError(f"{option} takes whole numbers >= 1, got {shown}; e.g. 2,4,8")
        sizes.append(int(g))
    repeated = sorted({g for g in sizes if sizes.count(g) > 1})
    if repeated:
        raise ConfigError(f"{option} lists {', '.join(map(str, repeated))} more than once; list each G once")
    return tuple(sizes)


def check_reward_range(reward_range: Any, option: str = "--reward-range") -> tuple[float, float]:  # noqa: ANN401
    """``(lo, hi)`` as floats: two finite numbers with ``lo < hi`` (``option`` names it in the messages).

    Raises:
        * :exc:`ConfigError`: not two numbers, a non-finite one, or ``lo >= hi`` (an empty range).
    """
    if isinstance(reward_range, str | bytes) or not isinstance(reward_range, Sequence | np.ndarray):
        raise ConfigError(f"{option} takes two numbers LO,HI, got {reward_range!r}; e.g. (0, 1)")
    if len(reward_range) != 2:
        raise ConfigError(f"{option} takes two numbers LO,HI, got {list(reward_range)}; e.g. (0, 1)")
    example = f"{option} 0,1" if option.startswith("--") else f"{option}=(0, 1)"  # a flag, or a Python argument
    lo, hi = (check_number(v, option, fix=f"pass finite bounds, e.g. {example}") for v in reward_range)
    if not lo < hi:
        raise ConfigError(f"{option} needs LO < HI (a range that is not empty), got {lo:g},{hi:g}; e.g. 0,1")
    return lo, hi


def plugin_prob_all_equal(counts: npt.ArrayLike, group_size: int) -> np.ndarray:
    """Plug-in ``Σ_j (n_j/n)^G``: ``P(all equal)`` of a group of ``G`` under the empirical distribution.

    Args:
        * ``counts``: ``(..., K)`` sample counts ``n_j`` of each distinct reward value (zero-padded).
        * ``group_size``: ``G >= 1``.

    Returns:
        ``(...)`` probabilities; ``(k/n)^G + (1 - k/n)^G`` for a binary reward with ``k`` successes.
        One power per value, so any ``G`` costs the same (``G`` past ``EXPONENT_CAP = 2**63`` gives the
        same powers as the cap, so it is capped).
    """
    (group_size,) = check_group_sizes([group_size])
    counts = np.asarray(counts, dtype=np.float64)
    return prob_all_equal(counts / counts.sum(-1, keepdims=True), min(group_size, EXPONENT_CAP))


def unbiased_prob_all_equal(counts: npt.ArrayLike, group_size: int) -> np.ndarray:
    """Unbiased ``Σ_j C(n_j, G) / C(n, G)`` of ``Σ_j q_j^G`` from ``n`` samples; NaN where ``n < G``.

    Computed as ``Σ_j Π_{i<G} (n_j - i)/(n - i)`` (no overflow for large ``n``), over the values
    with ``n_j >= G`` only (the others give 0), so the work is at most ``Σ_j n_j``, the sample
    count, for any ``G``; each product stops early once it underflows to 0.

    Args:
        * ``counts``: ``(..., K)`` sample counts ``n_j`` of each distinct reward value (zero-padded).
        * ``group_size``: ``G >= 1``.

    Returns:
        ``(...)`` estimates in ``[0, 1]``.
    """
    (group_size,) = check_group_sizes([group_size])
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(-1)  # (...)
    n = np.broadcast_to(total[..., None], counts.shape)  # (..., K)
    ratios = (counts == n).astype(np.float64)  # (..., K): a group of one value has ratio 1
    used = (counts >= group_size) & (counts < n)  # the other values whose ratio is not 0
    n_j, n_used = counts[used], n[used]  # (E,)
    product = np.ones_like(n_j)  # (E,)
    for start in range(0, group_size, FACTOR_BLOCK):
        if not product.any():  # every factor is below 1: a product at 0 stays 0
            break
        i = np.arange(start, min(start + FACTOR_BLOCK, group_size), dtype=np.float64)  # (B,)
        product *= np.prod((n_j[:, None] - i) / (n_used[:, None] - i), axis=1)
    ratios[used] = product
    return np.where(total >= group_size, ratios.sum(-1), np.nan)


def value_counts(group_ids: np.ndarray, rewards: np.ndarray, num_groups: int) -> np.ndarray:
    """``(P, K)`` counts of each distinct reward value per group (rows zero-padded to ``K`` values).

    Args:
        * ``group_ids``: ``(S,)`` group index of each sample in ``[0, P)``.
        * ``rewards``: ``(S,)`` rewards; values equal to :data:`VALUE_DECIMALS` decimals are one value.
        * ``num_groups``: ``P``.
    """
    pairs = pd.DataFrame({"group": group_ids, "value": np.round(rewards, VALUE_DECIMALS)})
    counted = pairs.groupby(["group", "value"]).size().reset_index(name="count")
    slot = counted.groupby("group").cumcount().to_numpy()
    counts = np.zeros((num_groups, int(slot.max()) + 1))  # (P, K)
    counts[counted["group"].to_numpy(), slot] = counted["count"].to_numpy()
    return counts


@dataclass(frozen=True)
class Regime:
    """Where the vanishing regime lies: ``reward_std < std_threshold`` and ``reward_mean < max_reward - gap``
    (:meth:`vanishing`, i.e. :func:`rftgrad.theory.stalled` with an absolute gap).

    Attributes:
        * ``reward_range``: ``(lo, hi)``, given or observed.
        * ``range_source``: ``"--reward-range"`` or ``"observed"``.
        * ``max_reward``: the best reward a prompt can reach.
        * ``max_source``: ``"--max-reward"``, ``"--reward-range"`` or ``"observed"``.
        * ``std_threshold``: STD below which the expected gradient is small (Theorem 1).
        * ``gap``: how far below ``max_reward`` a mean must be to count as far from optimal.
    """

    reward_range: tuple[float, float]
    range_source: str
    max_reward: float
    max_source: str
    std_threshold: float
    gap: float

    @classmethod
    def from_range(
        cls,
        reward_range: tuple[float, float],
        range_source: str,
        max_reward: float,
        max_source: str,
        std_threshold: float | None = None,
        gap: float | None = None,
    ) -> Regime:
        """The regime over ``reward_range``, defaults filled in: ``std_threshold = 0.1·(hi - lo)``
        (:data:`STD_THRESHOLD_FRACTION`), ``gap = 0.5·(hi - lo)`` (:data:`GAP_FRACTION`)."""
        lo, hi = reward_range
        width = hi - lo
        std_threshold = STD_THRESHOLD_FRACTION * width if std_threshold is None else std_threshold
        gap = GAP_FRACTION * width if gap is None else gap
        return cls((lo, hi), range_source, float(max_reward), max_source, std_threshold, gap)

    @property
    def mean_below(self) -> float:
        """``max_reward - gap``: means below this are far from optimal."""
        return self.max_reward - self.gap

    def vanishing(self, reward_mean: T, reward_std: T) -> T:
        """``reward_std < std_threshold`` and ``reward_mean < max_reward - gap``, elementwise.

        The one definition of the regime, :func:`rftgrad.theory.stalled` with ``best = max_reward``
        and the absolute ``gap``; takes and returns pandas Series, numpy arrays or tensors.
        """
        return stalled(reward_mean, reward_std, self.max_reward, None, self.std_threshold, gap=self.gap)


def _check_bound(log: RolloutLog, bad: np.ndarray, message: str) -> None:
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        reward = log.samples["reward"].iat[index]
        raise RolloutLogError(f"{log.path}: {log.samples['where'].iat[index]}: reward {reward:g} {message}")


def check_regime_options(
    reward_range: Any,  # noqa: ANN401 - any input
    max_reward: Any,  # noqa: ANN401
    std_threshold: Any,  # noqa: ANN401
    gap: Any,  # noqa: ANN401
) -> tuple[tuple[float, float] | None, float | None, float | None, float | None]:
    """The options of :func:`make_regime` checked and as floats (None stays None).

    Raises:
        * :exc:`ConfigError`: ``reward_range`` not two finite numbers with ``lo < hi``; ``max_reward`` not a
          finite number; ``std_threshold`` or ``gap`` not a finite number ``>= 0``.
    """
    return (
        None if reward_range is None else check_reward_range(reward_range),
        None if max_reward is None else check_number(max_reward, "--max-reward"),
        None if std_threshold is None else check_number(std_threshold, "--std-threshold", minimum=0.0),
        None if gap is None else check_number(gap, "--gap", minimum=0.0),
    )


def make_regime(
    log: RolloutLog,
    reward_range: tuple[float, float] | None = None,
    max_reward: float | None = None,
    std_threshold: float | None = None,
    gap: float | None = None,
) -> Regime:
    """The regime's thresholds, defaults filled in from the rewards of ``log``; checks rewards against them.

    Raises:
        * :exc:`RolloutLogError`: a reward outside ``reward_range`` or above ``max_reward`` (naming its row),
          or a reward range of zero width.
        * :exc:`ConfigError`: an option that is not a finite number (:func:`check_number`), a negative
          threshold or gap, or ``lo >= hi`` (:func:`check_reward_range`).
    """
    reward_range, max_reward, std_threshold, gap = check_regime_options(reward_range, max_reward, std_threshold, gap)
    rewards = log.samples["reward"].to_numpy()
    if reward_range is not None:
        lo, hi = reward_range
        _check_bound(log, (rewards < lo) | (rewards > hi), f"is outside --reward-range [{lo:g}, {hi:g}]; fix the row")
        range_source = "--reward-range"
    else:
        lo, hi = float(rewards.min()), float(rewards.max())
        if lo == hi:
            raise RolloutLogError(
                f"{log.path}: every reward is {lo:g}, so the observed reward range is empty; pass --reward-range LO,HI"
            )
        range_source = "observed"
    if max_reward is not None:
        max_source = "--max-reward"
        _check_bound(log, rewards > max_reward, f"is above --max-reward {max_reward:g}; raise --max-reward")
    else:
        max_reward, max_source = (hi, range_source) if reward_range is not None else (float(rewards.max()), "observed")
    return Regime.from_range((lo, hi), range_source, max_reward, max_source, std_threshold, gap)


def prompt_table(
    log: RolloutLog,
    regime: Regime,
    group_sizes: Sequence[int] = GROUP_SIZES,
    skip_singletons: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per group (prompt, or step and prompt) and the groups left out for having one sample.

    Columns: ``[step], prompt, n, reward_mean, reward_std`` (population), ``reward_min, reward_max,
    num_values`` (distinct rewards), ``zero_std`` (all rewards equal), ``vanishing`` (in the regime),
    ``p_all_equal_G{G}`` (plug-in) and ``p_all_equal_unbiased_G{G}`` (NaN where ``G > n``) for each
    ``G`` in ``group_sizes``, ``first_row`` (where the group's first sample is in the file).

    Raises:
        * :exc:`RolloutLogError`: a group with a single sample (STD undefined), unless ``skip_singletons``;
          every group with a single sample, even with ``skip_singletons`` (nothing left to diagnose).
        * :exc:`ConfigError`: ``group_sizes`` that are not whole numbers ``>= 1`` (:func:`check_group_sizes`).
    """
    group_sizes = check_group_sizes(group_sizes)
    samples = log.samples
    keys = ["step", "group"] if "step" in samples else ["group"]
    groups = samples.groupby(keys, sort=False)
    table = groups.agg(
        prompt=("prompt", "first"),
        n=("reward", "size"),
        reward_mean=("reward", "mean"),
        reward_min=("reward", "min"),
        reward_max=("reward", "max"),
        first_row=("where", "first"),
    ).reset_index()
    table.insert(len(keys) + 3, "reward_std", groups["reward"].std(ddof=0).to_numpy())  # population STD
    if log.grouping in ("prompt", "rows"):  # the group is the prompt (or the row, which first_row names)
        table = table.drop(columns="group")
    single = table["n"] < 2
    pool = " or pool the steps with --step-col none" if "step" in table else ""
    if single.all():  # --skip-singletons would leave nothing: say what is wrong with the log instead
        raise RolloutLogError(
            f"{log.path}: every one of the {len(table)} groups has 1 sample, so no reward STD can be estimated; "
            f"log every sampled output of a group ({UNIQUE_PROMPTS_HINT}), check that "
            f"--prompt-col ({log.prompt_col!r}) names the prompt{pool}"
        )
    if single.any() and not skip_singletons:
        row = table[single].iloc[0]
        step = f" at step {row['step']}" if "step" in table else ""
        raise RolloutLogError(
            f"{log.path}: {row['first_row']}: prompt {_short(row['prompt'])}{step} has only 1 sample, so its reward "
            f"STD is undefined; log every sampled output of a group ({UNIQUE_PROMPTS_HINT}) "
            "or pass --skip-singletons"
        )
    skipped = table[single].reset_index(drop=True)
    counts = value_counts(groups.ngroup().to_numpy(), samples["reward"].to_numpy(), len(table))[~single.to_numpy()]
    table = table[~single].reset_index(drop=True)
    table["num_values"] = (counts > 0).sum(-1)
    table["zero_std"] = table["num_values"] == 1
    table["vanishing"] = regime.vanishing(table["reward_mean"], table["reward_std"])
    for g in group_sizes:
        table[f"p_all_equal_G{g}"] = plugin_prob_all_equal(counts, g)
    for g in group_sizes:
        table[f"p_all_equal_unbiased_G{g}"] = unbiased_prob_all_equal(counts, g)
    table.insert(len(table.columns) - 1, "first_row", table.pop("first_row"))
    return table, skipped


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def check_scale_rewards(scale_rewards: Any) -> str:  # noqa: ANN401 - any input
    """``scale_rewards`` as TRL spells it: ``group``, ``batch`` or ``none`` (TRL's True/False: group/none).

    Raises:
        * :exc:`ConfigError`: any other value.
    """
    if isinstance(scale_rewards, bool):  # TRL's older spelling
        return "group" if scale_rewards else "none"
    if not isinstance(scale_rewards, str) or scale_rewards not in SCALE_REWARDS:
        raise ConfigError(
            f"--scale-rewards takes one of {', '.join(SCALE_REWARDS)} (TRL's setting), got {scale_rewards!r}"
        )
    return scale_rewards


def trl_nanstd(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """TRL's ``nanstd`` (trl/trainer/utils.py): the Bessel STD over the non-NaN entries, NaN for fewer than 2.

    ``sqrt(nanmean((x - nanmean x)²) · c/(c-1))`` with ``c`` the non-NaN count, in the same order of
    float32 operations as TRL, so that zero tests and logged values agree to the last bit.
    """
    dims = tuple(range(values.dim())) if dim is None else dim
    mean = torch.nanmean(values, dim=dims, keepdim=True)
    variance = torch.nanmean((values - mean) ** 2, dim=dims, keepdim=True)
    count = torch.sum(~torch.isnan(values), dim=dims, keepdim=True)
    correction = torch.where(count > 1, count / (count - 1), torch.full_like(variance, math.nan))
    std = torch.sqrt(variance * correction)
    return std.squeeze() if dim is None else std.squeeze(dim)


def trl_metrics(log: RolloutLog, scale_rewards: str = "group") -> pd.DataFrame:
    """TRL's logged ``reward``, ``reward_std`` and ``frac_reward_zero_std``, one row per step, as TRL computes them.

    ``GRPOTrainer._generate_and_score_completions`` (TRL 1.16, ``multi_objective_aggregation =
    "sum_then_normalize"``), on the ``S`` completions of one generation batch, in float32::

        r_i = Σ_k w_k r_ik  (nansum; NaN where every function returned None: unscorable)
        reward = nanmean_i r_i,   reward_std = nanstd_i r_i   (Bessel, pooled over all groups of the batch)
        frac_reward_zero_std = (1/S) Σ_i [std_i ≈ 0],  std_i = nanstd of r_i's group   (scale_rewards group, none)
                             = [nanstd_i r_i ≈ 0]  (0 or 1)                            (scale_rewards batch)

    with ``≈ 0`` TRL's ``torch.isclose(std, 0)``, ``|std| <= 1e-8``; a group with fewer than two scorable
    rewards has a NaN std, which is not ≈ 0. Under ``batch`` the metric no longer counts groups: it
    is 1 only when every reward of the batch is equal. TRL logs, per logging step, the mean of these
    over the generation batches of the window, while its completions table keeps the last batch
    only; with one generation batch per logged step (``logging_steps=1``, the default
    ``steps_per_generation``) the two are the same batch.

    Args:
        * ``log``: a rollout log; its steps are the batches (the whole log is one batch without steps).
        * ``scale_rewards``: TRL's ``scale_rewards``.

    Returns:
        ``[step], reward, reward_std, frac_reward_zero_std`` (float64 of the float32 values; NaN
        where TRL's is NaN, e.g. the std of a batch with one scorable reward).
    """
    scale_rewards = check_scale_rewards(scale_rewards)
    terms = log.terms
    weights = torch.tensor(log.reward_weights, dtype=torch.float32)  # (K,)
    batches = terms.groupby("step", sort=True) if "step" in terms else [(None, terms)]
    rows = []
    for step, batch in batches:
        per_func = torch.tensor(batch[list(log.reward_cols)].to_numpy(dtype=np.float64), dtype=torch.float32)  # (S, K)
        rewards = (per_func * weights).nansum(dim=1)  # (S,)
        rewards[torch.isnan(per_func).all(dim=1)] = math.nan
        batch_std = trl_nanstd(rewards)
        if scale_rewards == "batch":
            zero = float(bool(batch_std.abs() <= TRL_ZERO_STD_ATOL))
        else:
            codes = pd.factorize(batch["group"])[0]  # (S,) group of each sample
            group_of = torch.tensor(codes)
            slot = torch.tensor(pd.Series(codes).groupby(codes).cumcount().to_numpy())  # (S,) place in its group
            padded = torch.full((int(group_of.max()) + 1, int(slot.max()) + 1), math.nan)  # (P, n_max)
            padded[group_of, slot] = rewards
            is_zero = trl_nanstd(padded, dim=1).abs() <= TRL_ZERO_STD_ATOL  # (P,) NaN compares False
            zero = float(is_zero[group_of].float().mean())  # (1/S) Σ_i [std of i's group ≈ 0]
        row = {} if step is None else {"step": step.item() if isinstance(step, np.generic) else step}
        rows.append(
            {
                **row,
                "reward": float(torch.nanmean(rewards)),
                "reward_std": float(batch_std),
                "frac_reward_zero_std": zero,
            }
        )
    return pd.DataFrame(rows)


def summarize(
    log: RolloutLog,
    table: pd.DataFrame,
    regime: Regime,
    group_sizes: Sequence[int],
    skipped: pd.DataFrame,
    scale_rewards: str = "group",
) -> dict[str, Any]:
    """The overall numbers (what ``summary.json`` holds).

    Ours, per group: counts, ``group_reward_std_mean`` (mean over groups of the population STD),
    ``zero_std_groups`` (share of groups whose rewards are all equal), the regime share, and the
    predicted ``frac_reward_zero_std`` for other group sizes. TRL's, per step (:func:`trl_metrics`):
    ``reward``, ``reward_std`` and ``frac_reward_zero_std`` under ``trl_metrics``, defined as TRL
    logs them. ``per_step`` holds both, one row per step, when the log has steps.
    """
    predicted = []
    for g in check_group_sizes(group_sizes):
        unbiased = table[f"p_all_equal_unbiased_G{g}"].dropna()
        predicted.append(
            {
                "group_size": int(g),
                "plugin": float(table[f"p_all_equal_G{g}"].mean()),
                "unbiased": float(unbiased.mean()) if len(unbiased) else None,
                "unbiased_groups": len(unbiased),
            }
        )
    trl = trl_metrics(log, scale_rewards)

    def finite(value: float) -> float | None:  # JSON has no NaN: TRL's NaN (no std of one reward) is null
        return None if math.isnan(value) else float(value)

    trl_rows = [{key: finite(v) if key != "step" else v for key, v in row.items()} for row in trl.to_dict("records")]
    per_step = []
    if "step" in table:
        by_step = {row["step"]: row for row in trl_rows}
        for step, rows in table.groupby("step", sort=True):
            step = step.item() if isinstance(step, np.generic) else step
            logged = by_step[step]
            per_step.append(
                {
                    "step": step,
                    "groups": len(rows),
                    "reward_mean": float(rows["reward_mean"].mean()),
                    "group_reward_std_mean": float(rows["reward_std"].mean()),
                    "zero_std_groups_share": float(rows["zero_std"].mean()),
                    "vanishing_share": float(rows["vanishing"].mean()),
                    "trl_reward": logged["reward"],
                    "trl_reward_std": logged["reward_std"],
                    "trl_frac_reward_zero_std": logged["frac_reward_zero_std"],
                }
            )
    n = table["n"]
    share = float(table["zero_std"].mean())
    return {
        "file": str(log.path),
        "files": len(log.files),
        "format": log.fmt,
        "layout": log.layout,
        "shape": log.shape,
        "columns": {
            "prompt": log.prompt_col,
            "reward": list(log.reward_cols),
            "reward_weights": list(log.reward_weights),
            "step": log.step_col,
        },
        "grouping": {"by": log.grouping, "group_size": log.group_size, "group_size_source": log.group_size_source},
        "rows": log.rows,
        "samples": int(n.sum()),
        "unscorable_samples": log.unscorable,
        "groups": len(table),
        "prompts": int(table["prompt"].nunique()),
        "steps": int(table["step"].nunique()) if "step" in table else None,
        "samples_per_group": {"min": int(n.min()), "median": float(n.median()), "max": int(n.max())},
        "skipped_single_sample_groups": len(skipped),
        "std": "population (ddof=0): sqrt(mean((r - mean r)^2)) over a group's samples",
        "regime": {**asdict(regime), "mean_below": regime.mean_below},
        "reward_mean": float(table["reward_mean"].mean()),
        "group_reward_std_mean": float(table["reward_std"].mean()),
        "vanishing": {"count": int(table["vanishing"].sum()), "share": float(table["vanishing"].mean())},
        "zero_std_groups": {
            "share": share,
            "standard_error": float(np.sqrt(share * (1 - share) / len(table))),
        },
        "predicted_frac_reward_zero_std": predicted,
        "trl_metrics": {
            "scale_rewards": scale_rewards,
            "definition": "as TRL's GRPOTrainer logs them, per step (one generation batch): reward = mean reward, "
            "reward_std = Bessel std of all the step's rewards (pooled over groups), frac_reward_zero_std = share "
            "of samples whose group std is 0 (scale_rewards group/none) or [batch std is 0] (batch)",
            "per_step": trl_rows,
        },
        "per_step": per_step,
    }

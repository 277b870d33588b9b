"""Before RFT: which prompts would a model's own rewards leave without gradient (``rftgrad preflight``).

Theorem 1 (Razin et al., ICLR 2024; docs/paper.md §2) bounds an input's expected policy gradient
by its reward STD under the model, ``||∇V(x;θ)|| <= 6·L·γ·STD^(2/3)`` (sharpened:
``γ·sqrt(L)·STD``). ``rftgrad diagnose`` measures STD on a rollout log, after the GPU hours are spent;
this module measures it on the model *before* training, per prompt ``x``:

* **exact**, where the output space is enumerable (``V^L <= max_outputs``, e.g. one token, or a
  short answer over a restricted answer vocabulary): ``V(x) = Σ_y p(y|x) r(x, y)`` and
  ``STD(x) = sqrt(Σ_y p(y|x) (r(x, y) - V(x))²)`` by :func:`rftgrad.theory.evaluate`;
* **sampled** otherwise, from ``S`` outputs ``y_1..y_S ~ p(·|x)`` (:meth:`~rftgrad.models.SoftmaxPolicy.sample`), with
  rewards ``r_i``, ``r̄ = (1/S) Σ_i r_i``, central moments ``m_k = (1/S) Σ_i (r_i - r̄)^k``:

  - mean ``r̄``, unbiased, standard error ``sqrt(m_2 / (S - 1))``;
  - STD ``σ̂ = sqrt(m_2)``, the population STD, the estimator of ``rftgrad diagnose`` and of the
    prevalence experiment (docs/experiments.md). It is biased low: ``E[σ̂²] = (S - 1)/S · STD²``,
    and ``E σ̂ <= sqrt(E σ̂²)`` (Jensen); the prevalence experiment measured a mean error of -0.064
    at ``S = 10`` under exact match. Standard error by the delta method,
    ``sqrt((m_4 - m_2²) / S) / (2 σ̂)``, undefined (NaN) where every sample got the same reward;
  - ``reward_std_upper95``, a one-sided 95% upper bound on STD: ``σ̂ + z_0.95 · SE`` (normal
    approximation), and where all ``S`` rewards equal ``v``, the exact bound ``D · sqrt(q_95)`` with
    ``q_95 = 1 - 0.05^(1/S)`` (Clopper-Pearson: the largest probability of any other value that
    leaves ``S`` agreeing draws a 5% chance) and ``D = max(v - lo, hi - v)`` (``Var r <= q · D²``
    when ``r = v`` with probability ``1 - q``). With ``S = 64`` all-failing exact-match samples
    the bound is 0.43; a stall (STD < 0.2) is confirmed from about 300 samples.

Per prompt it also reports the stalled flag (``vanishing``: the one rule of ``rftgrad diagnose``,
:meth:`rftgrad.diagnose.Regime.vanishing`, over the reward range ``[-1, 1]`` of rftgrad's rewards
unless told otherwise) and the chance that a group of ``G`` samples is all-equal, ``Σ_j q_j^G``
with ``q_j`` the probability of reward value ``v_j`` (docs/paper.md §7; TRL's
``frac_reward_zero_std`` is its average over prompts): exact by
:func:`rftgrad.theory.prob_all_equal` on the exact distribution, sampled by the unbiased
``Σ_j C(n_j, G)/C(S, G)`` (:func:`rftgrad.diagnose.unbiased_prob_all_equal`, needs ``S >= G``).

Why in :mod:`rftgrad.diagnose`: it produces diagnose's per-prompt table and stalled rule from a
model instead of a log, writes the same ``--export-stalled`` files (:func:`rftgrad.diagnose.export_stalled`
on :meth:`Preflight.as_diagnosis`) and is documented with it (docs/diagnose.md, "preflight").
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import numbers
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from rftgrad.diagnose.readers import RolloutLog
from rftgrad.diagnose.report import Diagnosis, StalledExport, check_export_path, export_stalled
from rftgrad.diagnose.stats import (
    VALUE_DECIMALS,
    Regime,
    check_group_sizes,
    check_regime_options,
    unbiased_prob_all_equal,
    value_counts,
)
from rftgrad.envs import OutputSpace, RewardEnv, TextEnv, exact_match_reward, left_pad, single_token_ids
from rftgrad.errors import ConfigError, RewardRangeError, RftgradError, first_line
from rftgrad.models import SoftmaxPolicy
from rftgrad.results import atomic_write_text, claim_run_dir, config_fingerprint, free_run_dir, write_run
from rftgrad.runtime import is_count
from rftgrad.theory import evaluate, prob_all_equal

#: samples per prompt where the output space is too large to enumerate.
DEFAULT_SAMPLES = 64
#: the largest output space ``V^L`` computed exactly by default (one token of a 50k vocabulary; 16
#: answers to length 4). Past it, prompts are sampled.
PREFLIGHT_MAX_OUTPUTS = 2**16
#: rftgrad's reward contract (docs/paper.md §1): every reward lies in ``[-1, 1]``; the default range of the regime.
REWARD_RANGE = (-1.0, 1.0)
#: confidence of ``reward_std_upper95``.
UPPER_CONFIDENCE = 0.95
#: prompts per exact evaluation (a batch of the progress bar); sampling goes one prompt at a time.
CHUNK_SIZE = 16
#: the per-prompt table written as ``prompts.csv``.
TABLE_NAME = "prompts"
#: how the sampled STD is estimated, as ``summary.json`` states it.
SAMPLED_STD = (
    "population STD sqrt(m2) of the S sampled rewards (as rftgrad diagnose): biased low, E[std^2] = (S-1)/S * STD^2 "
    "and E[std] <= sqrt(E[std^2]) (Jensen); SE = sqrt((m4 - m2^2)/S) / (2 std) (delta method), undefined where all "
    "S rewards are equal; reward_std_upper95 = std + z_0.95 * SE, or D*sqrt(1 - 0.05^(1/S)) where all are equal"
)
#: how the exact STD is computed.
EXACT_STD = "exact: sqrt(sum_y p(y|x) (r(x,y) - V(x))^2) over all V^L outputs (rftgrad.theory.evaluate)"


class PromptsFileError(RftgradError, ValueError):
    """A prompts file that cannot be read: the message names the file, the line and the fix."""


@dataclass(frozen=True)
class PromptSet:
    """The prompts of a preflight, one entry per input of the environment.

    Attributes:
        * ``texts``: ``(N,)`` prompt texts (or labels such as ``input 3`` for an environment without texts).
        * ``references``: ``(N,)`` reference answers (``None`` where a prompt has none).
        * ``ids``: ``(N,)`` the prompts' ``id`` fields (``None`` where absent).
        * ``where``: ``(N,)`` where each prompt comes from (``line 3``), as diagnose's ``first_row``.
        * ``path``: the file read, or ``None``.
    """

    texts: tuple[str, ...]
    references: tuple[str | None, ...]
    ids: tuple[str | None, ...]
    where: tuple[str, ...]
    path: Path | None = None

    @classmethod
    def for_env(cls, env: RewardEnv) -> PromptSet:
        """Labels ``input 0``, ``input 1``, ... for an environment's inputs (no texts, no references)."""
        labels = tuple(f"input {n}" for n in range(env.num_inputs))
        return cls(labels, (None,) * env.num_inputs, (None,) * env.num_inputs, labels)

    def __len__(self) -> int:
        return len(self.texts)


def read_prompts(path: str | Path) -> PromptSet:
    """The prompts of a JSONL file: one object per line with ``"prompt"`` (text), optionally ``"answer"``
    (the reference answer, for ``exact_match`` and ``--export-stalled``) and ``"id"``; blank lines skipped.

    Raises:
        * :exc:`PromptsFileError`: a missing or unreadable file, a line that is not UTF-8 or not a JSON
          object, a missing or non-text ``prompt``, an ``answer`` that is not text, no prompts at all
          (the message names the line and the fix).
    """
    path = Path(path)
    if not path.exists():
        raise PromptsFileError(f"{path}: no such file; check the path to the prompts file")
    if not path.is_file():
        raise PromptsFileError(f'{path}: is not a file; pass a JSONL file with one {{"prompt": ...}} per line')
    texts, references, ids, where = [], [], [], []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise PromptsFileError(
                    f"{path}: line {number} is not UTF-8 text (byte 0x{raw[err.start]:02x}); save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PromptsFileError(
                    f"{path}: line {number} is not valid JSON ({err.msg}, column {err.colno}); fix or delete it"
                ) from None
            if not isinstance(record, dict):
                raise PromptsFileError(
                    f"{path}: line {number} is a JSON {type(record).__name__}, not an object; "
                    'write one {"prompt": "...", "answer": "..."} per line'
                )
            prompt = record.get("prompt")
            if prompt is None:
                keys = ", ".join(map(repr, list(record)[:5])) or "none"
                raise PromptsFileError(
                    f'{path}: line {number} has no "prompt" field (keys: {keys}); give each line a prompt text'
                )
            if not isinstance(prompt, str):
                raise PromptsFileError(
                    f'{path}: line {number}: "prompt" is a {type(prompt).__name__}, not text; give the prompt as a '
                    "string (chat messages: apply the chat template first)"
                )
            answer = record.get("answer")
            if answer is not None and not isinstance(answer, str):
                raise PromptsFileError(
                    f'{path}: line {number}: "answer" is a {type(answer).__name__}, not text; write it as a string'
                )
            identifier = record.get("id")
            texts.append(prompt)
            references.append(answer)
            ids.append(None if identifier is None else str(identifier))
            where.append(f"line {number}")
    if not texts:
        raise PromptsFileError(f'{path}: holds no prompts; write one {{"prompt": ...}} object per line')
    return PromptSet(tuple(texts), tuple(references), tuple(ids), tuple(where), path)


def default_regime(
    reward_range: tuple[float, float] | None = None,
    max_reward: float | None = None,
    std_threshold: float | None = None,
    gap: float | None = None,
) -> Regime:
    """diagnose's :class:`~rftgrad.diagnose.Regime` over ``reward_range`` (default ``[-1, 1]``, rftgrad's reward
    contract): ``std_threshold = 0.1·(hi - lo)`` and ``gap = 0.5·(hi - lo)`` unless given, ``max_reward = hi``.

    With the defaults a prompt is stalled when ``STD < 0.2`` and ``V < 0``: ``rftgrad diagnose --reward-range=-1,1``.

    Raises:
        * :exc:`ConfigError`: a value that is not finite, a negative threshold or gap, ``lo >= hi``, a
          ``max_reward`` outside the range.
    """
    given, max_reward, std_threshold, gap = check_regime_options(reward_range, max_reward, std_threshold, gap)
    lo, hi = REWARD_RANGE if given is None else given
    if max_reward is not None and not lo <= max_reward <= hi:
        raise ConfigError(f"--max-reward {max_reward:g} is outside the reward range [{lo:g}, {hi:g}]; give one inside")
    range_source = "rftgrad's reward range" if given is None else "--reward-range"
    max_source = range_source if max_reward is None else "--max-reward"
    return Regime.from_range(
        (lo, hi), range_source, hi if max_reward is None else max_reward, max_source, std_threshold, gap
    )


def sampled_reward_stats(
    rewards: np.ndarray, reward_range: tuple[float, float] = REWARD_RANGE
) -> dict[str, np.ndarray]:
    """Per prompt, from ``S`` sampled rewards: mean, STD, their standard errors, a 95% upper bound on STD.

    With ``m_k = (1/S) Σ_i (r_i - r̄)^k`` (see the module docstring for why and the bias):
    ``reward_mean = r̄``, ``reward_mean_se = sqrt(m_2/(S-1))``, ``reward_std = sqrt(m_2)`` (population),
    ``reward_std_se = sqrt((m_4 - m_2²)/S) / (2 sqrt(m_2))`` (NaN where ``m_2 = 0``), and
    ``reward_std_upper95 = reward_std + z_0.95 · reward_std_se``, or ``D · sqrt(1 - 0.05^(1/S))`` with
    ``D = max(v - lo, hi - v)`` where all ``S`` rewards equal ``v``; at most ``(hi - lo)/2``, the largest STD of a
    reward in ``[lo, hi]``.

    Args:
        * ``rewards``: ``(N, S)`` float64 rewards, ``S >= 2``.
        * ``reward_range``: ``(lo, hi)``, the range every reward lies in.

    Returns:
        name -> ``(N,)`` arrays.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    num_samples = rewards.shape[-1]
    if num_samples < 2:
        raise ConfigError(
            f"the sampled STD needs at least 2 samples per prompt, got {num_samples}; pass --samples >= 2"
        )
    lo, hi = reward_range
    mean = rewards.mean(-1)  # (N,)
    centred = rewards - mean[:, None]  # (N, S)
    m2 = (centred**2).mean(-1)  # (N,)
    m4 = (centred**4).mean(-1)  # (N,)
    std = np.sqrt(m2)
    equal = rewards.min(-1) == rewards.max(-1)  # (N,) every sample got the same reward
    with np.errstate(divide="ignore", invalid="ignore"):
        std_se = np.where(equal, np.nan, np.sqrt(np.maximum(m4 - m2**2, 0.0) / num_samples) / (2 * std))
    z = statistics.NormalDist().inv_cdf(UPPER_CONFIDENCE)
    q_upper = 1.0 - (1.0 - UPPER_CONFIDENCE) ** (1.0 / num_samples)  # Clopper-Pearson with 0 of S differing
    spread = np.maximum(rewards[:, 0] - lo, hi - rewards[:, 0])  # D, used where all samples equal r_0
    upper = np.where(equal, spread * math.sqrt(q_upper), std + z * np.nan_to_num(std_se))
    upper = np.minimum(upper, (hi - lo) / 2)  # no reward in [lo, hi] has a larger STD
    return {
        "reward_mean": mean,
        "reward_mean_se": np.sqrt(m2 / (num_samples - 1)),
        "reward_std": std,
        "reward_std_se": std_se,
        "reward_std_upper95": upper,
    }


def _distribution_all_equal(probs: np.ndarray, rewards: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``Σ_j q_j^G`` and the number of distinct reward values per prompt, from the exact distribution.

    ``probs``, ``rewards``: ``(N, Y)``; values equal to ``VALUE_DECIMALS`` decimals are one value, as in diagnose.
    """
    prob_equal = np.empty(len(probs))
    num_values = np.empty(len(probs), dtype=np.int64)
    for n, (p, r) in enumerate(zip(probs, rewards, strict=True)):
        _, value_of = np.unique(np.round(r, VALUE_DECIMALS), return_inverse=True)  # (Y,)
        q = np.bincount(value_of, weights=p)  # (K,) probability of each reward value
        prob_equal[n] = prob_all_equal(q / q.sum(), group_size)
        num_values[n] = len(q)
    return prob_equal, num_values


class _InputSubset(RewardEnv):
    """The inputs ``index`` of ``env`` as an environment of their own (a chunk of the exact evaluation)."""

    def __init__(self, env: RewardEnv, index: torch.Tensor) -> None:
        super().__init__()
        self.parent, self.index = env, index
        self.name = env.name
        self.output_space = env.output_space
        self.features = env.features[index]
        self.targets = env.targets[index]
        self.prompts = None if env.prompts is None else env.prompts[index]
        self.prompt_vocab_size = env.prompt_vocab_size
        answer_tokens = getattr(env, "answer_tokens", None)  # a text environment's (HFCausalLM checks them)
        if answer_tokens is not None:
            self.answer_tokens = answer_tokens

    def _reward(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return self.parent.reward(self.index[input_ids], outputs)


def _prompt_seed(seed: int, prompt: int) -> int:
    """The sampling seed of prompt ``prompt``: its draws depend on ``(seed, prompt)`` only."""
    return int(np.random.SeedSequence([seed, prompt]).generate_state(1)[0]) % 2**31


@dataclass(frozen=True)
class Preflight:
    """What :func:`preflight` finds: the per-prompt table, the regime, the prompts and the summary."""

    table: pd.DataFrame
    regime: Regime
    prompts: PromptSet
    summary: dict[str, Any]

    def as_diagnosis(self) -> Diagnosis:
        """The result as a :class:`~rftgrad.diagnose.Diagnosis` of one group per prompt, for diagnose's
        :func:`~rftgrad.diagnose.export_stalled` (the same files) and :func:`~rftgrad.diagnose.plot_mean_vs_std`."""
        path = self.prompts.path or Path("preflight")
        samples = pd.DataFrame(
            {
                "group": list(self.prompts.texts),
                "prompt": list(self.prompts.texts),
                "reward": self.table["reward_mean"].to_numpy(),
                "where": list(self.prompts.where),
                "reference": list(self.prompts.references),
            }
        )
        log = RolloutLog(
            samples=samples,
            terms=samples[["group", "reward"]],
            path=path,
            files=(path,) if self.prompts.path else (),
            fmt="jsonl",
            layout="preflight",
            shape="per-prompt",
            grouping="prompt",
            group_size=None,
            group_size_source=None,
            prompt_col="prompt",
            reward_cols=("reward",),
            reward_weights=(1.0,),
            step_col=None,
            rows=len(self.prompts),
            reference_col="answer" if any(r is not None for r in self.prompts.references) else None,
            chat_prompts=False,
            unscorable=0,
        )
        return Diagnosis(log, self.regime, self.table, self.table.iloc[:0], self.summary)


def preflight(
    policy: SoftmaxPolicy,
    env: RewardEnv,
    group_size: int = 8,
    *,
    samples: int = DEFAULT_SAMPLES,
    max_outputs: int = PREFLIGHT_MAX_OUTPUTS,
    seed: int = 0,
    regime: Regime | None = None,
    prompts: PromptSet | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
) -> Preflight:
    """Per prompt of ``env``: reward mean and STD under ``policy`` (exact or sampled), the stalled flag and
    the chance that a group of ``group_size`` samples has all-equal rewards (see the module docstring).

    Exact where ``V^L <= max_outputs`` (:func:`rftgrad.theory.evaluate`, ``chunk_size`` prompts at a time),
    else from ``samples`` outputs per prompt (:meth:`~rftgrad.models.SoftmaxPolicy.sample` with a seed of
    ``(seed, prompt)``, so a prompt's draws do not depend on the others).

    Args:
        * ``policy``: a single-replica softmax policy that fits ``env``.
        * ``env``: the prompts and their reward.
        * ``group_size``: ``G``, the trainer's group size (TRL's ``num_generations``).
        * ``samples``: ``S >= max(2, G)`` outputs per prompt when sampling.
        * ``max_outputs``: enumerate exactly up to this many outputs ``V^L``.
        * ``seed``: seed of the sampled outputs.
        * ``regime``: the stalled rule (default :func:`default_regime`: ``[-1, 1]``, STD < 0.2, mean < 0).
        * ``prompts``: texts, references and origins of the inputs (default :meth:`PromptSet.for_env`).
        * ``chunk_size``: prompts per exact evaluation (memory and progress granularity; the numbers do not
          depend on it beyond rounding).
        * ``progress``: show a progress bar over prompts.

    Returns:
        :class:`Preflight`; its table has one row per prompt: ``input, [id], prompt, method`` (``exact`` or
        ``sampled``), ``n`` (outputs enumerated, or samples), ``reward_mean, reward_mean_se, reward_std,
        reward_std_se, reward_std_upper95, reward_min, reward_max, num_values, vanishing, p_all_equal_G{G},
        first_row``.

    Raises:
        * :exc:`ConfigError`: a policy with several replicas, ``group_size`` not a whole number >= 1, ``samples``
          < 2 or < ``group_size`` when sampling, ``chunk_size`` < 1, prompts of another length than ``env``, a
          reward outside the regime's ``reward_range`` or above its ``max_reward``.
        * :exc:`ShapeMismatchError`: the policy does not fit ``env``.
        * :exc:`RewardRangeError`: a reward outside ``[-1, 1]`` or NaN (the environment's check).
    """
    (group_size,) = check_group_sizes([group_size], "--group-size")
    if policy.num_replicas != 1:
        raise ConfigError(f"preflight takes a policy with one replica, got R={policy.num_replicas}; build it with one")
    if not is_count(chunk_size):
        raise ConfigError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    prompts = PromptSet.for_env(env) if prompts is None else prompts
    if len(prompts) != env.num_inputs:
        raise ConfigError(f"{len(prompts)} prompts for an environment of {env.num_inputs} inputs; give one per input")
    regime = default_regime() if regime is None else regime
    policy.check_compatible(env)
    space = env.output_space
    exact_mode = space.num_outputs <= max_outputs
    if not exact_mode and (not is_count(samples, 2) or samples < group_size):
        raise ConfigError(
            f"--samples must be a whole number >= 2 and >= --group-size {group_size} to estimate by sampling "
            f"(V^L = {space.vocab_size}^{space.length} is past --max-outputs {max_outputs}), got {samples!r}"
        )
    if exact_mode:
        found = _exact_columns(policy, env, group_size, chunk_size, progress)
    else:
        found = _sampled_columns(policy, env, group_size, samples, seed, regime.reward_range, progress)
    _check_in_regime(found, regime, prompts)
    table = pd.DataFrame({"input": np.arange(env.num_inputs)})
    if any(i is not None for i in prompts.ids):
        table["id"] = list(prompts.ids)
    table["prompt"] = list(prompts.texts)
    table["method"] = "exact" if exact_mode else "sampled"
    table["n"] = space.num_outputs if exact_mode else samples
    for name, values in found.items():
        table[name] = values
    table.insert(
        table.columns.get_loc("p_all_equal"), "vanishing", regime.vanishing(table["reward_mean"], table["reward_std"])
    )
    table = table.rename(columns={"p_all_equal": f"p_all_equal_G{group_size}"})
    table["first_row"] = list(prompts.where)
    summary = _summary(table, regime, space, exact_mode, samples, group_size, max_outputs, seed, prompts)
    return Preflight(table, regime, prompts, summary)


def _check_in_regime(found: dict[str, np.ndarray], regime: Regime, prompts: PromptSet) -> None:
    """Every reward seen lies in the regime's range and at most its ``max_reward`` (as ``rftgrad diagnose`` checks).

    Raises:
        * :exc:`ConfigError`: a reward outside ``reward_range`` or above ``max_reward``, naming the prompt.
    """
    lo, hi = regime.reward_range
    for bad, reward, what in (
        (found["reward_min"] < lo, found["reward_min"], f"is outside the reward range [{lo:g}, {hi:g}]"),
        (found["reward_max"] > hi, found["reward_max"], f"is outside the reward range [{lo:g}, {hi:g}]"),
        (found["reward_max"] > regime.max_reward, found["reward_max"], f"is above --max-reward {regime.max_reward:g}"),
    ):
        if bad.any():
            n = int(np.flatnonzero(bad)[0])
            raise ConfigError(
                f"reward {reward[n]:g} of the prompt of {prompts.where[n]} {what}; give --reward-range and "
                "--max-reward that hold every reward (rftgrad's rewards lie in [-1, 1])"
            )


def _exact_columns(
    policy: SoftmaxPolicy, env: RewardEnv, group_size: int, chunk_size: int, progress: bool
) -> dict[str, np.ndarray]:
    """Exact statistics of every prompt, ``chunk_size`` prompts per :func:`rftgrad.theory.evaluate` call."""
    num_inputs, max_outputs = env.num_inputs, env.output_space.num_outputs
    # a tabular policy reads input indices, which a chunk would renumber: evaluate it whole
    step = num_inputs if policy.input_kind == "index" else chunk_size
    parts: list[dict[str, np.ndarray]] = []
    with tqdm(
        total=num_inputs, desc="preflight (exact)", unit="prompt", disable=not progress, dynamic_ncols=True
    ) as bar:
        for start in range(0, num_inputs, step):
            index = torch.arange(start, min(start + step, num_inputs))
            chunk = env if len(index) == num_inputs else _InputSubset(env, index)
            result = evaluate(policy, chunk, max_outputs=max_outputs)
            probs = result.probs[0].detach().to("cpu", torch.float64).numpy()  # (n, Y)
            rewards = result.rewards.detach().to("cpu", torch.float64).numpy()  # (n, Y)
            prob_equal, num_values = _distribution_all_equal(probs, rewards, group_size)
            zeros = np.zeros(len(index))
            std = result.std[0].detach().to("cpu", torch.float64).numpy()
            parts.append(
                {
                    "reward_mean": result.value[0].detach().to("cpu", torch.float64).numpy(),
                    "reward_mean_se": zeros,
                    "reward_std": std,
                    "reward_std_se": zeros,
                    "reward_std_upper95": std,
                    "reward_min": rewards.min(-1),
                    "reward_max": rewards.max(-1),
                    "num_values": num_values,
                    "p_all_equal": prob_equal,
                }
            )
            bar.update(len(index))
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _sampled_columns(
    policy: SoftmaxPolicy,
    env: RewardEnv,
    group_size: int,
    samples: int,
    seed: int,
    reward_range: tuple[float, float],
    progress: bool,
) -> dict[str, np.ndarray]:
    """Statistics of every prompt from ``samples`` sampled outputs each, one prompt at a time."""
    x = policy.inputs_from(env)  # (N, ...)
    length = env.output_space.length
    rewards = np.empty((env.num_inputs, samples))  # (N, S)
    for n in tqdm(range(env.num_inputs), desc="preflight (sampled)", unit="prompt", disable=not progress,
                  dynamic_ncols=True):  # fmt: skip
        ids = torch.tensor([n], device=policy.device)
        outputs = policy.sample(ids, x[n : n + 1], samples, length, seed=_prompt_seed(seed, n))[0, 0]  # (S, L)
        rewards[n] = env.reward(torch.full((samples,), n), outputs.cpu()).numpy()
    stats = sampled_reward_stats(rewards, reward_range)
    counts = value_counts(np.repeat(np.arange(env.num_inputs), samples), rewards.reshape(-1), env.num_inputs)
    return {
        **stats,
        "reward_min": rewards.min(-1),
        "reward_max": rewards.max(-1),
        "num_values": (counts > 0).sum(-1),
        "p_all_equal": unbiased_prob_all_equal(counts, group_size),
    }


def _summary(
    table: pd.DataFrame,
    regime: Regime,
    space: Any,  # noqa: ANN401 - an OutputSpace
    exact_mode: bool,
    samples: int,
    group_size: int,
    max_outputs: int,
    seed: int,
    prompts: PromptSet,
) -> dict[str, Any]:
    """The overall numbers (``summary.json``)."""
    vanishing = table["vanishing"]
    confirmed = vanishing & (table["reward_std_upper95"] < regime.std_threshold)
    unreachable = int((table["reward_max"] < regime.max_reward).sum()) if exact_mode else None
    return {
        "prompts_file": None if prompts.path is None else str(prompts.path),
        "prompts": len(table),
        "method": "exact" if exact_mode else "sampled",
        "vocab_size": space.vocab_size,
        "length": space.length,
        "outputs": space.num_outputs,
        "max_outputs": max_outputs,
        "samples": None if exact_mode else samples,
        "seed": None if exact_mode else seed,
        "std_estimator": EXACT_STD if exact_mode else SAMPLED_STD,
        "regime": {**asdict(regime), "mean_below": regime.mean_below},
        "reward_mean": float(table["reward_mean"].mean()),
        "reward_std_mean": float(table["reward_std"].mean()),
        "vanishing": {"count": int(vanishing.sum()), "share": float(vanishing.mean())},
        "vanishing_confirmed": {
            "count": int(confirmed.sum()),
            "definition": "vanishing and reward_std_upper95 < std_threshold (every stalled prompt when exact)",
        },
        "unreachable": {
            "count": unreachable,
            "definition": "prompts whose best output earns less than max_reward (exact only): stalled by the rule, "
            "but no output of this answer space reaches the best reward",
        },
        "predicted_frac_reward_zero_std": {
            "group_size": group_size,
            "value": float(table[f"p_all_equal_G{group_size}"].mean()),
            "estimate": "exact: mean over prompts of sum_j q_j^G"
            if exact_mode
            else "unbiased: mean over prompts of sum_j C(n_j, G) / C(S, G) from the S samples",
        },
    }


def format_preflight(result: Preflight, max_rows: int = 6) -> str:
    """The short summary ``rftgrad preflight`` prints: counts, then the stalled and lowest-mean prompts first."""
    s, regime = result.summary, result.regime
    sampled = s["method"] == "sampled"
    if sampled:
        how = (
            f"sampled, {s['samples']} outputs per prompt (V^L = {s['vocab_size']}^{s['length']} > --max-outputs "
            f"{s['max_outputs']}); STD is the population STD of the samples, biased low (E[std^2] = (S-1)/S STD^2)"
        )
    else:
        how = f"exact over all V^L = {s['vocab_size']}^{s['length']} = {s['outputs']} outputs"
    vanishing, predicted = s["vanishing"], s["predicted_frac_reward_zero_std"]
    group = predicted["group_size"]
    confirmed = (
        f"; confirmed at 95% (upper bound on STD < {regime.std_threshold:g}): {s['vanishing_confirmed']['count']}"
        if sampled
        else ""
    )
    lines = [
        f"{s['prompts']} prompts, {how}",
        f"mean reward {s['reward_mean']:.3f}, mean reward STD {s['reward_std_mean']:.3f}",
        f"stalled (STD < {regime.std_threshold:g} and mean < {regime.mean_below:g}): "
        f"{vanishing['count']} of {s['prompts']} prompts ({vanishing['share']:.1%}){confirmed}",
        f"predicted frac_reward_zero_std at G = {group} (share of groups whose {group} rewards are all equal): "
        f"{predicted['value']:.3f} ({'unbiased estimate' if sampled else 'exact'})",
    ]
    if s["unreachable"]["count"]:
        lines.append(
            f"{s['unreachable']['count']} prompts cannot reach reward {regime.max_reward:g} with any output of this "
            "answer space (reward_max in prompts.csv): check the answers or the reward"
        )
    errors = f" {'±SE':>6} {'STD<=':>6}" if sampled else ""
    lines.append(f"  {'prompt':<34} {'mean':>7} {'STD':>6}{errors} {f'P(G={group} equal)':>14}  stalled")
    shown = result.table.sort_values(["vanishing", "reward_mean"], ascending=[False, True], kind="stable")
    for row in shown.head(max_rows).itertuples(index=False):
        if sampled:
            se = "-" if math.isnan(row.reward_std_se) else f"{row.reward_std_se:.3f}"
            errors = f" {se:>6} {row.reward_std_upper95:>6.3f}"
        p_equal = getattr(row, f"p_all_equal_G{group}")
        lines.append(
            f"  {_clip(row.prompt):<34} {row.reward_mean:>7.3f} {row.reward_std:>6.3f}{errors} {p_equal:>14.3f}  "
            f"{'yes' if row.vanishing else 'no'}"
        )
    if len(shown) > max_rows:
        lines.append(f"  ... ({len(shown)} prompts in prompts.csv)")
    return "\n".join(lines)


def _clip(text: str, limit: int = 34) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def write_preflight(
    result: Preflight, out_dir: str | Path, config: dict[str, Any] | None = None, device: str | torch.device = "cpu"
) -> list[Path]:
    """Write ``config.json`` (``config``), ``environment.json`` (versions, ``device``, threads), ``prompts.csv`` and
    ``summary.json`` (strict JSON) into ``out_dir``, each atomically (:func:`rftgrad.results.write_run`); returns the
    paths."""
    summary = json.dumps(result.summary, indent=2, default=str, allow_nan=False) + "\n"  # before any write
    out = Path(out_dir)
    write_run(out, config or {}, {TABLE_NAME: result.table}, device)
    atomic_write_text(out / "summary.json", summary)
    return [out / name for name in ("config.json", "environment.json", f"{TABLE_NAME}.csv", "summary.json")]


def export_preflight_stalled(result: Preflight, path: str | Path, overwrite: bool = False) -> StalledExport:
    """The stalled prompts in ``rftgrad diagnose --export-stalled``'s files (:func:`rftgrad.diagnose.export_stalled`):
    ``path`` with ``{"prompt", "completion"}`` rows for the prompts with an answer, ``<stem>.to_label.jsonl``
    for the others (with ``reward_mean``, ``reward_std``, ``n``, ``first_row``)."""
    return export_stalled(result.as_diagnosis(), path, overwrite)


def check_preflight_export(path: str | Path, inputs: Sequence[str | Path] = (), overwrite: bool = False) -> Path:
    """``--export-stalled FILE`` checked before any work, as ``rftgrad diagnose`` checks it."""
    return check_export_path(path, inputs, overwrite)


# ------------------------------------------------------------------------------------ a local model on text prompts

#: the built-in text reward: +1 if the decoded output equals the prompt's answer (both ``strip()``-ed), else -1.
EXACT_MATCH = "exact_match"


def load_reward(spec: str) -> Callable[[str, str], Any] | str:
    """``"exact_match"``, or the callable ``(prompt: str, output: str) -> float`` that ``spec`` names:
    ``module:function`` (an importable module) or ``path/to/file.py:function`` (a file, imported by path).

    Raises:
        * :exc:`ConfigError`: an unknown name, a module or file that does not import (naming its error), a
          missing attribute, or one that is not callable.
    """
    if spec == EXACT_MATCH:
        return EXACT_MATCH
    where, colon, name = str(spec).rpartition(":")
    if not colon or not where or not name:
        raise ConfigError(
            f"unknown --reward {spec!r}; give exact_match, module:function or path/to/file.py:function "
            "(a callable (prompt, output) -> float in [-1, 1])"
        )
    is_file = where.endswith(".py") or "/" in where or "\\" in where
    try:
        if is_file:
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"--reward {spec!r}: no file {where}; check the path")
            module_spec = importlib.util.spec_from_file_location(f"rftgrad_reward_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"--reward {spec!r}: no module named {err.name!r}; check the name and PYTHONPATH, or give a file "
            "path/to/file.py:function"
        ) from None
    except Exception as err:  # the user's module failed to import: their error, named in one line
        raise ConfigError(
            f"--reward {spec!r}: importing {where} raised {type(err).__name__}: {first_line(err)}"
        ) from None
    function = getattr(module, name, None)
    if function is None:
        raise ConfigError(f"--reward {spec!r}: {where} has no {name!r}; name a function defined there")
    if not callable(function):
        raise ConfigError(f"--reward {spec!r}: {where}.{name} is a {type(function).__name__}, not a function")
    return function


class CheckedReward:
    """A user's text reward ``(prompt, output) -> float``, each value checked: a real number in ``[-1, 1]``
    (Theorem 1 needs bounded rewards, docs/paper.md §1), not NaN; any error names the prompt's line and the output.

    Raises (when called):
        * :exc:`RewardRangeError`: a value that is not a number, NaN, or outside ``[-1, 1]``.
        * :exc:`ConfigError`: the function raised (its exception type and first line are named).
    """

    def __init__(self, function: Callable[[str, str], Any], spec: str, prompts: PromptSet) -> None:
        self.function, self.spec = function, spec
        self.where: dict[str, str] = {}
        for text, where in zip(prompts.texts, prompts.where, strict=True):
            self.where.setdefault(text, where)

    def _context(self, prompt: str, output: str) -> str:
        where = self.where.get(prompt)
        return f"the prompt of {where}" if where else f"prompt {_clip(prompt)}"

    def __call__(self, prompt: str, output: str) -> float:
        try:
            value = self.function(prompt, output)
        except Exception as err:  # the user's function failed: one line naming where
            raise ConfigError(
                f"--reward {self.spec} raised {type(err).__name__}: {first_line(err)} on "
                f"{self._context(prompt, output)} and output {output!r}; fix the function"
            ) from None
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
            raise RewardRangeError(
                f"--reward {self.spec} returned {value!r} ({type(value).__name__}) on {self._context(prompt, output)} "
                f"and output {output!r}; return a float in [-1, 1]"
            )
        number = float(value)
        if math.isnan(number) or not -1.0 <= number <= 1.0:
            raise RewardRangeError(
                f"--reward {self.spec} returned {number!r} on {self._context(prompt, output)} and output {output!r}, "
                "outside [-1, 1]; rescale it into [-1, 1] (e.g. r -> 2r - 1 for r in [0, 1])"
            )
        return number


class LazyTextEnv(RewardEnv):
    """Text prompts and a text reward computed only for the outputs asked for: the sampled preflight's environment.

    :class:`rftgrad.envs.TextEnv` fills an ``(N, V^L)`` reward table up front, which a large output space (a
    real vocabulary, ``L >= 2``) cannot hold; this one decodes each output it is asked about
    (``tokenizer.decode([answer_tokens[y_1], ..., answer_tokens[y_L]])``) and scores it with
    ``score(n, output_text)``. Prompts are tokenised as TextEnv tokenises them
    (``tokenizer.encode(text, add_special_tokens=True)``, left-padded with ``-1``), so
    :class:`rftgrad.models.HFCausalLM` reads the same inputs. It has no SFT targets (zeros) and a zero
    feature placeholder, like TextEnv.

    Args:
        * ``texts``: ``N`` prompt texts.
        * ``tokenizer``: anything with ``encode(text, add_special_tokens=...)`` and ``decode(ids)``.
        * ``answer_tokens``: the ``V`` token ids outputs are made of.
        * ``length``: ``L``.
        * ``score``: ``(prompt index, output text) -> reward`` in [-1, 1] (checked by
          :meth:`~rftgrad.envs.RewardEnv.reward`).
    """

    def __init__(
        self,
        texts: Sequence[str],
        tokenizer: Any,  # noqa: ANN401 - a transformers tokenizer, or anything with encode and decode
        answer_tokens: Sequence[int],
        length: int,
        score: Callable[[int, str], float],
        name: str = "text",
    ) -> None:
        super().__init__()
        self.name = name
        encoded = [[int(t) for t in tokenizer.encode(text, add_special_tokens=True)] for text in texts]
        empty = [n for n, ids in enumerate(encoded) if not ids]
        if empty:
            raise ConfigError(f"prompt {empty[0]} encodes to no tokens; give prompts of at least one token")
        self.prompts = left_pad(encoded)  # (N, P)
        self.answer_tokens: tuple[int, ...] = tuple(int(t) for t in answer_tokens)
        self.output_space = OutputSpace(len(self.answer_tokens), length)
        self.targets = torch.zeros(len(encoded), length, dtype=torch.long)  # no SFT labels without enumerating
        self.features = torch.zeros(len(encoded), 1, dtype=torch.float64)
        self.prompt_vocab_size = len(tokenizer) if hasattr(tokenizer, "__len__") else int(self.prompts.max()) + 1
        self.prompt_texts = [str(text) for text in texts]
        self.tokenizer, self.score = tokenizer, score
        self._answer_ids = torch.tensor(self.answer_tokens, dtype=torch.long)  # (V,)

    def _reward(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        tokens = self._answer_ids[outputs.cpu()].tolist()  # (B, L) token ids
        texts = [str(self.tokenizer.decode(row)) for row in tokens]
        return torch.tensor(
            [self.score(n, text) for n, text in zip(input_ids.tolist(), texts, strict=True)], dtype=torch.float64
        )


def answer_token_ids(tokenizer: Any, answers: Sequence[str]) -> tuple[int, ...]:  # noqa: ANN401
    """``--answers``' token ids: :func:`rftgrad.envs.single_token_ids` with the option's name in its messages."""
    return single_token_ids(tokenizer, answers, what="--answers")


def check_references(
    prompts: PromptSet,
    tokenizer: Any,  # noqa: ANN401 - a transformers tokenizer
    answer_tokens: Sequence[int],
    length: int,
    enumerated: bool = False,
) -> None:
    """``exact_match``'s references: every prompt has an ``answer`` that some output can earn +1 with.

    Where the outputs are enumerated (``enumerated``, or ``L = 1``) the answer's stripped text must be the stripped
    decoding of one of them, exactly as :class:`rftgrad.envs.TextEnv` scores it. Otherwise it must encode to ``L``
    answer tokens that decode back to it: a sufficient condition (a BPE tokenizer may merge tokens that outputs keep
    apart), checked because a sampled preflight could not tell an unreachable answer from a stalled prompt.

    Raises:
        * :exc:`PromptsFileError`: a prompt without an answer, or an answer no output reaches (naming its line).
    """
    path = prompts.path or "prompts"
    for answer, where in zip(prompts.references, prompts.where, strict=True):
        if answer is None:
            raise PromptsFileError(
                f'{path}: {where} has no "answer"; --reward exact_match needs a reference answer on every line '
                "(or use --reward module:function)"
            )
    vocab = [int(t) for t in answer_tokens]
    texts = None
    if length == 1 or enumerated:  # every output's text, as TextEnv decodes it
        outputs = OutputSpace(len(vocab), length).prefixes(length).tolist()  # (Y, L) answer indices
        texts = {str(tokenizer.decode([vocab[i] for i in output])).strip() for output in outputs}
    for answer, where in zip(prompts.references, prompts.where, strict=True):
        tokens = [int(t) for t in tokenizer.encode(answer, add_special_tokens=False)]
        if texts is not None:
            reachable = answer.strip() in texts
        else:
            reachable = (
                len(tokens) == length
                and set(vocab).issuperset(tokens)
                and str(tokenizer.decode(tokens)).strip() == answer.strip()
            )
        if not reachable:
            if len(tokens) != length:
                what = f"is {len(tokens)} tokens, not --length {length}"
            else:
                what = "is not made of the answer tokens"
            raise PromptsFileError(
                f"{path}: {where}: answer {answer!r} {what}; every output is {length} answer token(s), so this "
                "prompt could never earn +1: fix the answer, add its tokens to --answers, or change --length"
            )


def default_out_dir(prompts_file: str | Path) -> Path:
    """``preflight_<prompts file stem>`` in the working directory."""
    return Path(f"preflight_{Path(prompts_file).stem}")


def _load_tokenizer(path: str | Path) -> Any:  # noqa: ANN401 - a transformers tokenizer
    """The tokenizer saved in the local directory ``path`` (nothing is downloaded)."""
    from transformers import AutoTokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"tokenizer directory {str(folder)!r} does not exist; give the folder save_pretrained wrote")
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"cannot load a tokenizer from {str(folder)!r}: {first_line(err)}; save it there with "
            "tokenizer.save_pretrained(DIR), or pass --tokenizer DIR"
        ) from None


def run_preflight(
    model: str | Path,
    prompts_file: str | Path,
    reward: str = EXACT_MATCH,
    out_dir: str | Path | None = None,
    *,
    tokenizer: str | Path | None = None,
    answers: Sequence[str] | None = None,
    answer_tokens: Sequence[int] | None = None,
    length: int = 1,
    group_size: int = 8,
    samples: int = DEFAULT_SAMPLES,
    max_outputs: int = PREFLIGHT_MAX_OUTPUTS,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "float32",
    reward_range: tuple[float, float] | None = None,
    max_reward: float | None = None,
    std_threshold: float | None = None,
    gap: float | None = None,
    export_stalled_to: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    config: dict[str, Any] | None = None,
) -> tuple[Preflight, list[Path]]:
    """``rftgrad preflight``: a local ``transformers`` causal LM on a prompts file, the report written to ``out_dir``.

    The policy is :class:`rftgrad.models.HFCausalLM` over the answer vocabulary (``answers`` or ``answer_tokens``;
    default the model's whole vocabulary) with outputs of ``length`` tokens: the model's next-token distribution
    restricted to those tokens and renormalised. Exact (:class:`rftgrad.envs.TextEnv`'s reward table) where
    ``V^L <= max_outputs``, else sampled (:class:`LazyTextEnv`); see :func:`preflight`.

    The output folder is claimed first (:func:`rftgrad.results.claim_run_dir`; default ``preflight_<stem>``,
    numbered if taken), everything is computed before anything is written, and a refused or failed run leaves
    neither the folder nor the export behind.

    Args:
        * ``model``: a local directory written by ``save_pretrained`` (config and weights); nothing is downloaded.
        * ``prompts_file``: JSONL, one ``{"prompt", "answer"?, "id"?}`` per line (:func:`read_prompts`).
        * ``reward``: ``exact_match`` (``answer`` on every line) or ``module:function`` /
          ``path/to/file.py:function``, a callable ``(prompt, output) -> float`` in [-1, 1] (:func:`load_reward`).
        * ``tokenizer``: the tokenizer's local directory (default ``model``).
        * ``answers`` / ``answer_tokens``: the answer vocabulary, as single-token strings or as token ids.
        * ``length``, ``group_size``, ``samples``, ``max_outputs``, ``seed``: as :func:`preflight`.
        * ``device``, ``dtype``: where and in what precision the model runs.
        * ``reward_range``, ``max_reward``, ``std_threshold``, ``gap``: the stalled rule (:func:`default_regime`).
        * ``export_stalled_to``: write the stalled prompts there in ``rftgrad diagnose --export-stalled``'s files.
        * ``overwrite``: replace a finished report in ``out_dir`` and an existing export.
        * ``progress``: a progress bar over prompts.
        * ``config``: what ``config.json`` records (default: these arguments).

    Returns:
        The result and the files written.

    Raises:
        * :exc:`ConfigError`: a bad option, reward, model or tokenizer directory (one line naming the fix).
        * :exc:`PromptsFileError`: a prompts file that cannot be read (naming its line).
        * :exc:`RewardRangeError`: a reward function returning a value outside [-1, 1], NaN or a non-number.
        * :exc:`OutputError`: an output folder or export file that cannot be used.
    """
    options = {
        "model": str(model), "prompts": str(prompts_file), "reward": reward, "tokenizer": None if tokenizer is None
        else str(tokenizer), "answers": None if answers is None else list(answers), "answer_tokens": None
        if answer_tokens is None else [int(t) for t in answer_tokens], "length": length, "group_size": group_size,
        "samples": samples, "max_outputs": max_outputs, "seed": seed, "device": device, "dtype": dtype,
        "reward_range": reward_range, "max_reward": max_reward, "std_threshold": std_threshold, "gap": gap,
        "export_stalled": None if export_stalled_to is None else str(export_stalled_to),
    }  # fmt: skip
    regime = default_regime(reward_range, max_reward, std_threshold, gap)
    (group_size,) = check_group_sizes([group_size], "--group-size")
    for option, value, least in (("--length", length, 1), ("--samples", samples, 2), ("--max-outputs", max_outputs, 1),
                                 ("--seed", seed, 0)):  # fmt: skip
        if not is_count(value, least):
            raise ConfigError(f"{option} takes a whole number >= {least}, got {value!r}")
    if answers is not None and answer_tokens is not None:
        raise ConfigError("--answers and --answer-tokens both name the answer vocabulary; give one of them")
    score = load_reward(reward)
    if export_stalled_to is not None:
        check_export_path(export_stalled_to, [prompts_file], overwrite)
    fingerprint = config_fingerprint(options)
    out = free_run_dir(default_out_dir(prompts_file), "preflight", fingerprint) if out_dir is None else out_dir
    with claim_run_dir(out, "preflight", fingerprint, overwrite=overwrite, inputs=[prompts_file, model]) as claim:
        prompts = read_prompts(prompts_file)
        from rftgrad.models import HFCausalLM  # imports transformers (ConfigError naming the extra if absent)

        try:
            tok = _load_tokenizer(model if tokenizer is None else tokenizer)
        except ConfigError:
            if tokenizer is None:  # a folder that is no model at all: say that (the model's own error) instead
                HFCausalLM.from_pretrained(model, max_length=1, device="cpu", dtype=dtype, max_outputs=math.inf)
            raise
        ids = None if answers is None else answer_token_ids(tok, answers)
        ids = ids if answer_tokens is None else tuple(int(t) for t in answer_tokens)

        def check_answers(vocab: tuple[int, ...]) -> bool:
            """Whether ``V^L`` is enumerated; exact_match's answers checked (a callable reads the texts itself,
            and answers then only feed --export-stalled)."""
            enumerated = len(vocab) ** length <= max_outputs
            if score == EXACT_MATCH:
                check_references(prompts, tok, vocab, length, enumerated)
            return enumerated

        if ids is not None:  # before loading the model, which may take a while
            check_answers(ids)
        # no enumeration limit on the policy: preflight samples where V^L is past max_outputs
        policy = HFCausalLM.from_pretrained(
            model, answer_tokens=ids, max_length=length, device=device, dtype=dtype, max_outputs=math.inf
        )
        vocab = tuple(int(t) for t in policy.answer_ids.tolist())  # the answer token ids (all of them: full vocab)
        enumerated = check_answers(vocab) if ids is None else len(vocab) ** length <= max_outputs
        space = OutputSpace(len(vocab), length)
        checked = None if score == EXACT_MATCH else CheckedReward(score, reward, prompts)
        if enumerated:
            env: RewardEnv = TextEnv.from_texts(
                list(prompts.texts), tok, answer_tokens=list(vocab), length=length,
                reward=EXACT_MATCH if checked is None else checked,
                references=list(prompts.references) if checked is None else None, max_outputs=space.num_outputs,
            )  # fmt: skip
        else:
            references = prompts.references

            def text_score(n: int, output: str) -> float:
                if checked is None:  # exact_match, as TextEnv scores it
                    return exact_match_reward(output, references[n])
                return checked(prompts.texts[n], output)

            env = LazyTextEnv(prompts.texts, tok, vocab, length, text_score)
        result = preflight(
            policy, env, group_size, samples=samples, max_outputs=max_outputs, seed=seed, regime=regime,
            prompts=prompts, progress=progress,
        )  # fmt: skip
        written = write_preflight(result, claim.path, options if config is None else config, policy.device)
        if export_stalled_to is not None:
            export = export_preflight_stalled(result, export_stalled_to, overwrite)
            written += [p for p in (export.sft_file, export.to_label_file) if p is not None]
        claim.finish()
    return result, written

"""Live vanishing-gradient statistics inside a TRL ``GRPOTrainer`` or ``RLOOTrainer`` run (docs/trl.md).

::

    from rftgrad.integrations.trl import GroupMonitor

    monitor = GroupMonitor(reward_range=(0.0, 1.0))
    trainer = GRPOTrainer(model=..., args=GRPOConfig(...), train_dataset=...,
                          reward_funcs=monitor.wrap([accuracy_reward, format_reward]),
                          callbacks=[monitor])
    trainer.train()   # TRL's logs now hold rftgrad/* next to reward, reward_std, frac_reward_zero_std

**The hook.** TRL 1.16 calls every reward function of a generation batch with the keyword
arguments ``prompts, completions, completion_ids``, the dataset's columns, ``trainer_state``,
``log_extra`` and ``log_metric`` (``GRPOTrainer._calculate_rewards``, trl/trainer/grpo_trainer.py;
the same in ``RLOOTrainer``). :meth:`GroupMonitor.wrap` returns the reward functions wrapped
(same ``__name__``, same return values, ``None`` kept, async functions stay async), so the monitor
sees each function's rewards; once every function of the batch has returned it forms TRL's total,
groups it as TRL does, and reports through ``log_metric(name, value)``. TRL averages those values
over the generation batches of a logging window and logs them with its own metrics (``kl``,
``reward``, ...), to every backend it reports to. The monitor is also a ``TrainerCallback``:
``on_train_begin`` reads ``num_generations``, ``reward_weights``, ``scale_rewards`` and
``output_dir`` from the config, so it must be in ``callbacks``.

**What it computes**, for a batch of ``N`` samples and reward functions ``k`` with weights ``w_k``
(``args.reward_weights``, ones by default), as TRL does (``_generate_and_score_completions``):

* each function's rewards as float32, ``None -> NaN``; the total ``r = Σ_k w_k r_k`` summed over the
  functions that scored the sample (``nansum``), NaN where every function gave ``None``
  (*unscorable*: TRL leaves it out of means and STDs and gives it advantage 0);
* groups: consecutive blocks of ``G = num_generations`` samples (``num_generations_eval`` during
  evaluation); the statistics below use a group's scorable samples (``n <= G`` of them) and leave
  out a group with none;
* per group the mean ``r̄`` and the **population** STD ``sqrt(1/n Σ_i (r_i - r̄)²)`` (``ddof=0``:
  docs/diagnose.md says why; TRL's ``reward_std`` is the Bessel STD of the whole batch).

Metrics, one value per generation batch (means over its groups):

* ``rftgrad/vanishing_share``: the share of groups in the vanishing regime, STD below
  ``std_threshold`` while ``r̄ < max_reward - gap`` (:class:`rftgrad.diagnose.Regime`; defaults
  ``0.1·(hi - lo)``, ``0.5·(hi - lo)`` and ``hi`` of ``reward_range``, as ``rftgrad diagnose``);
* ``rftgrad/group_std/mean``, ``/min``, ``/median``, ``/max``: the distribution of the group STDs;
* ``rftgrad/frac_zero_std_groups``: the share of groups whose scorable rewards are all equal (to
  :data:`rftgrad.diagnose.VALUE_DECIMALS` decimals); a group with one scorable sample counts as
  equal. TRL's ``frac_reward_zero_std`` is the per-*sample* share with ``isclose(std, 0)`` of the
  Bessel STD, NaN (not zero) for a group with one scorable sample, and with
  ``scale_rewards="batch"`` the batch STD instead;
* ``rftgrad/predicted_frac_zero_std/G{g}`` for ``g`` in ``group_sizes``: what
  ``frac_reward_zero_std`` would be with groups of ``g``, the mean over groups of the **unbiased**
  ``Σ_j C(n_j, g)/C(n, g)`` (:func:`rftgrad.diagnose.unbiased_prob_all_equal`) where ``g <= n`` and
  the **plug-in** ``Σ_j (n_j/n)^g`` (:func:`rftgrad.diagnose.plugin_prob_all_equal`, biased
  upwards) where ``g > n``, with the group's value counts ``n_j`` (docs/diagnose.md);
* ``rftgrad/update_shrink`` and ``rftgrad/update_shrink/min``: the mean and the smallest over
  groups of ``E u(p) / E u(1/2)``, the closed-form expected update along a correct output
  (:func:`rftgrad.theory.expected_update`, docs/paper.md §7) at the group's success rate
  ``p = (r̄ - lo)/(hi - lo)``, group size ``G``, rewards ``hi``/``lo``, ``std_eps = 1e-4`` (TRL's),
  as a fraction of its value at ``p = 1/2``. The estimator is ``GroupMonitor.estimator``:
  ``grpo`` for ``GRPOTrainer`` with ``scale_rewards="group"``; ``dr_grpo`` for ``"none"`` and
  ``"batch"`` (a batch STD rescales every group alike, so the fraction is Dr. GRPO's
  ``4p(1-p)``); ``rloo`` for ``RLOOTrainer`` (also ``4p(1-p)``). Exact for a binary reward; for
  other rewards ``p`` is the mean's place in the range.

A batch with no scorable group logs nothing (TRL then averages over the other batches).

**Rollout log.** With ``log_path`` (default ``<output_dir>/rftgrad_rollouts.jsonl``) each training
batch appends one JSON line per sample, flushed per batch (an interrupted run keeps its finished
batches; a fresh run, ``global_step == 0`` at ``on_train_begin``, starts the file anew, a resumed one
appends)::

    {"step": 3, "group": 1, "prompt": "...", "completion": "...",
     "rewards": {"accuracy_reward": 1.0, "format_reward": null}, "reward": 1.0}

``step`` is ``trainer_state.global_step + 1`` at reward time: the optimisation step the batch is
generated for, which is the ``step`` of TRL's ``completions/completions_{step:05d}.parquet`` when
``logging_steps=1`` and ``steps_per_generation=1`` (TRL writes only the latest generation batch at
each logging step). ``group`` is the group's index in the batch, ``reward`` the total (null when
unscorable), ``rewards`` each function's value (null for ``None``); prompts and completions are
text or chat messages as TRL passed them. Evaluation batches are measured (TRL logs them as
``eval_rftgrad/...``) but not written to the rollout log.

**Limitations.** One process only: with several, each process's reward functions see only its
slice of the batch, whose groups may be split, so the monitor refuses (:class:`MonitorError`) when
``world_size > 1``. It sees Python reward functions only: reward models (``nn.Module`` or a model
id) are scored inside TRL and cannot be wrapped. The totals are the reward functions' weighted
sum: RLOO's KL penalty (``beta``) and ``reward_clip_range``, and GRPO's
``multi_objective_aggregation="normalize_then_sum"`` act after it and are not in the statistics.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from rftgrad.diagnose import (
    GROUP_SIZES,
    Regime,
    check_group_sizes,
    check_number,
    check_reward_range,
    plugin_prob_all_equal,
    unbiased_prob_all_equal,
    value_counts,
)
from rftgrad.errors import ConfigError, RftgradError
from rftgrad.theory import expected_update

__all__ = ["GroupMonitor", "MonitorError", "METRIC_PREFIX", "STD_EPS", "batch_metrics"]

#: every metric the monitor logs starts with this.
METRIC_PREFIX = "rftgrad/"
#: the ε TRL adds to the group STD in GRPO's advantage, ``(r - mean)/(std + 1e-4)``.
STD_EPS = 1e-4
#: the line that says how to use the monitor, repeated in its errors.
USAGE = "GRPOTrainer(..., reward_funcs=monitor.wrap(reward_funcs), callbacks=[monitor])"


class MonitorError(RftgradError, RuntimeError):
    """The monitor cannot measure this run: not passed as a callback, reward functions not wrapped,
    several processes, or TRL calling the reward functions in a way it does not expect."""


def _callable_name(func: Callable) -> str:
    """The name TRL gives a reward function (``trl.trainer.utils.get_callable_name``)."""
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def _is_async(func: Callable) -> bool:
    """Calling ``func`` returns a coroutine (``trl.trainer.utils.is_async_callable``)."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


def batch_metrics(
    totals: np.ndarray,
    num_generations: int,
    regime: Regime,
    group_sizes: Sequence[int],
    estimator: str,
) -> dict[str, float]:
    """The monitor's metrics of one generation batch (module docstring), ``{}`` if no group is scorable.

    Args:
        * ``totals``: ``(N,)`` total rewards, NaN for unscorable samples; ``N`` a multiple of ``num_generations``.
        * ``num_generations``: ``G``, the size of TRL's groups (consecutive blocks of ``totals``).
        * ``regime``: the vanishing regime; its ``reward_range`` gives ``lo, hi`` for the success rate.
        * ``group_sizes``: the ``g`` of ``rftgrad/predicted_frac_zero_std/G{g}``.
        * ``estimator``: the :func:`rftgrad.theory.expected_update` form of ``rftgrad/update_shrink``.
    """
    grouped = np.asarray(totals, dtype=np.float64).reshape(-1, num_generations)  # (P, G)
    grouped = grouped[~np.isnan(grouped).all(axis=1)]  # groups with a scorable sample
    if not len(grouped):
        return {}
    scorable = ~np.isnan(grouped)  # (P, G)
    n = scorable.sum(axis=1)  # (P,)
    mean = np.nanmean(grouped, axis=1)  # (P,)
    std = np.sqrt(np.nanmean((grouped - mean[:, None]) ** 2, axis=1))  # (P,) population STD
    group_ids = np.broadcast_to(np.arange(len(grouped))[:, None], grouped.shape)[scorable]
    counts = value_counts(group_ids, grouped[scorable], len(grouped))  # (P, K)
    metrics = {
        "vanishing_share": float(np.mean(regime.vanishing(mean, std))),
        "group_std/mean": float(std.mean()),
        "group_std/min": float(std.min()),
        "group_std/median": float(np.median(std)),
        "group_std/max": float(std.max()),
        "frac_zero_std_groups": float(np.mean((counts > 0).sum(axis=1) == 1)),
    }
    for g in group_sizes:
        estimate = np.where(n >= g, unbiased_prob_all_equal(counts, g), plugin_prob_all_equal(counts, g))
        metrics[f"predicted_frac_zero_std/G{g}"] = float(estimate.mean())
    if num_generations >= 2:
        lo, hi = regime.reward_range
        success = np.clip((mean - lo) / (hi - lo), 0.0, 1.0)
        form = dict(success=hi, failure=lo, std_eps=STD_EPS)
        shrink = expected_update(success, num_generations, estimator, **form) / expected_update(
            0.5, num_generations, estimator, **form
        )
        metrics["update_shrink"] = float(shrink.mean())
        metrics["update_shrink/min"] = float(shrink.min())
    return {METRIC_PREFIX + name: value for name, value in metrics.items()}


class GroupMonitor(TrainerCallback):
    """Adds ``rftgrad/*`` group statistics to a TRL GRPO/RLOO run's logs and writes a rollout log.

    Formulas, metric names, the rollout-log format and the limitations: the module docstring.
    Pass the reward functions through :meth:`wrap` and the monitor in ``callbacks``::

        monitor = GroupMonitor(reward_range=(0.0, 1.0))
        trainer = GRPOTrainer(..., reward_funcs=monitor.wrap(reward_funcs), callbacks=[monitor])

    Args:
        * ``reward_range``: ``(lo, hi)`` that holds every **total** reward (the weighted sum over the
          functions: with ``reward_weights=[1.0, 0.5]`` and two 0/1 functions, ``(0, 1.5)``).
          A total outside it stops training with a :class:`~rftgrad.errors.ConfigError`.
        * ``group_sizes``: the ``g`` of ``rftgrad/predicted_frac_zero_std/G{g}``.
        * ``log_path``: the rollout log (JSON lines); ``None``: ``<output_dir>/rftgrad_rollouts.jsonl``;
          ``False``: none.
        * ``std_threshold``: the regime's STD threshold; ``None``: ``0.1·(hi - lo)``.
        * ``gap``: how far below ``hi`` a group mean must be; ``None``: ``0.5·(hi - lo)``.

    Attributes:
        * ``regime``: the :class:`rftgrad.diagnose.Regime` it counts groups in.
        * ``estimator``: the update form of ``rftgrad/update_shrink`` (set by ``on_train_begin``).
        * ``log_file``: the rollout log's path (set by ``on_train_begin``), or None.
        * ``batches``: generation batches measured so far.
    """

    def __init__(
        self,
        reward_range: tuple[float, float] = (0.0, 1.0),
        group_sizes: Sequence[int] = GROUP_SIZES,
        log_path: str | Path | bool | None = None,
        *,
        std_threshold: float | None = None,
        gap: float | None = None,
    ) -> None:
        lo, hi = check_reward_range(reward_range, option="reward_range")
        self.group_sizes = check_group_sizes(group_sizes, option="group_sizes")
        if log_path is True or not (log_path is None or log_path is False or isinstance(log_path, str | Path)):
            raise ConfigError(f"log_path takes a path, None (the default place) or False (no log), got {log_path!r}")
        self.log_path = log_path
        threshold, gap = (
            None if value is None else check_number(value, name, minimum=0.0)
            for value, name in ((std_threshold, "std_threshold"), (gap, "gap"))
        )
        source = "GroupMonitor(reward_range)"
        self.regime = Regime.from_range((lo, hi), source, hi, source, threshold, gap)
        self.estimator: str | None = None
        self.log_file: Path | None = None
        self.batches = 0
        self._names: list[str] | None = None  # the wrapped functions' names, in TRL's order
        self._weights: np.ndarray | None = None  # (K,) float32, as TRL holds them
        self._num_generations: tuple[int, int] | None = None  # (train, eval)
        self._model: Any = None
        self._pending: dict[int, np.ndarray] = {}
        self._batch: dict[str, Any] = {}

    # ------------------------------------------------------------------ wrapping
    def wrap(self, reward_funcs: Callable | Sequence[Callable]) -> Callable | list[Callable]:
        """The reward functions, wrapped so the monitor sees their rewards; pass the result to the trainer.

        Each wrapper calls its function with the same arguments, returns what it returns (``None``
        entries included) and has its name (TRL's metric and column names stay the same); async
        functions give async wrappers. Wrap the trainer's whole list, once.

        Args:
            * ``reward_funcs``: a reward function or a list of them, as ``GRPOTrainer(reward_funcs=...)`` takes.

        Returns:
            the wrapped function, or a list of them in the same order.

        Raises:
            * :exc:`ConfigError`: an entry that is not a Python callable (a reward model or model id: TRL scores
              those itself, out of the monitor's sight), or an empty list.
            * :exc:`MonitorError`: ``wrap`` was already called on this monitor.
        """
        if self._names is not None:
            raise MonitorError(
                "this GroupMonitor already wrapped a list of reward functions; use one monitor per trainer "
                "and wrap the trainer's whole list once"
            )
        single = callable(reward_funcs) and not isinstance(reward_funcs, Sequence | torch.nn.Module)
        funcs = [reward_funcs] if single else reward_funcs
        if isinstance(funcs, str | bytes) or not isinstance(funcs, Sequence) or not funcs:
            raise ConfigError(f"wrap() takes a reward function or a non-empty list of them, got {reward_funcs!r}")
        for index, func in enumerate(funcs):
            if isinstance(func, str | torch.nn.Module):
                raise ConfigError(
                    f"reward function {index} is a reward model ({_short(func)}): TRL scores reward models itself, "
                    "so GroupMonitor cannot see their rewards; wrap Python reward functions only (call the reward "
                    "model inside one of them to monitor it)"
                )
            if not callable(func):
                raise ConfigError(
                    f"reward function {index} is not callable: {_short(func)}; wrap() takes functions "
                    "f(prompts, completions, **kwargs) -> list[float | None]"
                )
        self._names = [_callable_name(func) for func in funcs]
        wrapped = [self._wrap_one(index, func) for index, func in enumerate(funcs)]
        return wrapped[0] if single else wrapped

    def _wrap_one(self, index: int, func: Callable) -> Callable:
        if _is_async(func):

            async def monitored(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - what func returns
                output = await func(*args, **kwargs)
                self._record(index, output, kwargs)
                return output

        else:

            def monitored(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - what func returns
                output = func(*args, **kwargs)
                self._record(index, output, kwargs)
                return output

        functools.update_wrapper(monitored, func)  # __doc__, __module__, __qualname__, __wrapped__ where present
        monitored.__name__ = _callable_name(func)  # what TRL names it by (partials and instances too)
        return monitored

    # ------------------------------------------------------------------ callback
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: ANN401
        """Reads the run's settings from the GRPOConfig/RLOOConfig; starts (or continues) the rollout log.

        Raises:
            * :exc:`MonitorError`: :meth:`wrap` not called, not a GRPO/RLOO config, several processes, or
              ``reward_weights`` of another length than the wrapped list.
        """
        if self._names is None:
            raise MonitorError(f"GroupMonitor has no reward functions: wrap them, {USAGE}")
        if getattr(args, "num_generations", None) is None:
            raise MonitorError(
                f"GroupMonitor works with TRL's GRPOTrainer and RLOOTrainer (a config with num_generations), "
                f"got {type(args).__name__}"
            )
        if getattr(args, "world_size", 1) > 1:
            raise MonitorError(
                f"GroupMonitor runs in one process only, this run has {args.world_size}: each process's reward "
                "functions see only its slice of a batch, whose groups may be split; run it in one process, or "
                "diagnose TRL's completions files after the run (rftgrad diagnose)"
            )
        count = len(self._names)
        weights = args.reward_weights
        if weights is not None and len(weights) != count:
            raise MonitorError(
                f"reward_weights has {len(weights)} entries but GroupMonitor wrapped {count} reward functions; "
                "wrap the trainer's whole reward_funcs list"
            )
        self._weights = np.asarray([1.0] * count if weights is None else weights, dtype=np.float32)
        generations = int(args.num_generations)
        self._num_generations = (generations, int(getattr(args, "num_generations_eval", None) or generations))
        if hasattr(args, "scale_rewards"):  # GRPOConfig; RLOOConfig has none
            self.estimator = "grpo" if args.scale_rewards == "group" else "dr_grpo"
        else:
            self.estimator = "rloo"
        self._model = kwargs.get("model")
        self._pending, self._batch = {}, {}
        if self.log_path is False:
            self.log_file = None
        else:
            default = Path(args.output_dir) / "rftgrad_rollouts.jsonl"
            self.log_file = default if self.log_path is None else Path(self.log_path)
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            if state.global_step == 0:  # a fresh run starts the log anew; a resumed one appends
                self.log_file.write_text("", encoding="utf-8")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:  # noqa: ANN401
        """Checks that the monitor wrapped every reward function TRL reports (``rewards/<name>/mean``).

        Raises:
            * :exc:`MonitorError`: TRL logged a reward function the monitor did not wrap (its totals would be wrong).
        """
        logged = {key[len("rewards/") : -len("/mean")] for key in logs or {} if _is_function_mean(key)}
        unseen = sorted(logged - set(self._names or ()))
        if unseen:
            raise MonitorError(
                f"the trainer has reward functions GroupMonitor did not wrap ({', '.join(map(repr, unseen))}), so "
                f"its totals leave them out; wrap the whole list, {USAGE}"
            )

    # ------------------------------------------------------------------ per batch
    def _record(self, index: int, output: Any, kwargs: dict[str, Any]) -> None:  # noqa: ANN401
        """Keep one function's rewards; measure the batch once every function has returned."""
        if self._weights is None:
            raise MonitorError(
                f"GroupMonitor was called for rewards before the run started: pass it as a callback, {USAGE}"
            )
        completions = kwargs.get("completions")
        try:
            values = np.array([np.nan if r is None else float(r) for r in output], dtype=np.float32)
        except (TypeError, ValueError):
            return  # TRL raises its own error about the reward function's output right after
        if completions is None or len(values) != len(completions):
            return  # the same
        if index in self._pending:
            raise MonitorError(
                f"reward function {self._names[index]!r} was called twice for one batch before "
                f"{', '.join(repr(self._names[i]) for i in range(len(self._names)) if i not in self._pending)}; "
                f"the monitor needs every reward function of the trainer wrapped, {USAGE}"
            )
        self._pending[index] = values  # float32 with None as NaN, as TRL converts them
        if not self._batch:
            self._batch = kwargs
        if len(self._pending) == len(self._names):
            per_function = np.stack([self._pending[i] for i in range(len(self._names))], axis=1)  # (N, K)
            batch, self._pending, self._batch = self._batch, {}, {}
            self._measure(per_function, batch)

    def _measure(self, per_function: np.ndarray, batch: dict[str, Any]) -> None:
        training = self._model is None or getattr(self._model, "training", True)
        num_generations = self._num_generations[0 if training else 1]
        unscorable = np.isnan(per_function).all(axis=1)  # (N,)
        totals = np.nansum(per_function.astype(np.float64) * self._weights, axis=1)  # (N,)
        totals[unscorable] = np.nan
        lo, hi = self.regime.reward_range
        outside = np.flatnonzero(~unscorable & ((totals < lo) | (totals > hi)))
        if len(outside):
            at = int(outside[0])
            raise ConfigError(
                f"total reward {totals[at]:g} (sample {at} of the batch at step {self._step(batch)}) is outside "
                f"GroupMonitor(reward_range=({lo:g}, {hi:g})); pass a range that holds every weighted total "
                "Σ_k w_k r_k of the reward functions"
            )
        if len(totals) % num_generations:
            raise MonitorError(
                f"the batch has {len(totals)} samples, not a multiple of num_generations={num_generations}"
            )
        log_metric = batch.get("log_metric")
        if not callable(log_metric):
            raise MonitorError(
                "TRL did not pass log_metric to the reward functions (TRL 1.16 does); GroupMonitor needs it to log"
            )
        self.batches += 1
        metrics = batch_metrics(totals, num_generations, self.regime, self.group_sizes, self.estimator)
        for name, value in metrics.items():
            log_metric(name, value)
        if training and self.log_file is not None:
            self._append(per_function, totals, batch, num_generations)

    @staticmethod
    def _step(batch: dict[str, Any]) -> int:
        """The optimisation step the batch is generated for: ``global_step + 1`` (module docstring)."""
        state = batch.get("trainer_state")
        return int(state.global_step) + 1 if state is not None else 0

    def _append(self, per_function: np.ndarray, totals: np.ndarray, batch: dict[str, Any], size: int) -> None:
        step, prompts, completions = self._step(batch), batch.get("prompts"), batch["completions"]
        lines = []
        for i, completion in enumerate(completions):
            row = {
                "step": step,
                "group": i // size,
                "prompt": None if prompts is None else prompts[i],
                "completion": completion,
                "rewards": {name: _number(per_function[i, k]) for k, name in enumerate(self._names)},
                "reward": _number(totals[i]),
            }
            lines.append(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        with self.log_file.open("a", encoding="utf-8") as handle:
            handle.writelines(lines)
            handle.flush()


def _is_function_mean(key: str) -> bool:
    return key.startswith("rewards/") and key.endswith("/mean") and len(key) > len("rewards//mean")


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _short(value: Any, limit: int = 60) -> str:  # noqa: ANN401 - anything passed as a reward function
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""The batched trainer: R replicas, arms of phases, exact evaluation, checkpoints.

:func:`train` trains each arm of a :class:`~rftgrad.finetune.config.TrainConfig` (e.g.
``rft:200`` and ``sft:200`` side by side) from the same initial policy. All replicas
(seeds x hyperparameter settings, :func:`~rftgrad.finetune.config.replica_grid`) are one
tensor program: the policy carries them on its leading axis and the optimiser keeps one
state per replica.

Randomness is stateless: the minibatch, the SFT subset and the samples of step ``t`` are
drawn from generators keyed by ``(replica seed, t)``, so replica ``r`` equals a single run
with its seed and settings, and a run resumed from a checkpoint draws exactly what an
uninterrupted run would.

Evaluation (every ``eval_every`` steps, the first and the last) is exact: per input,
V (``reward_mean``), STD (``reward_std``), ``||∇_θ V||`` (``grad_norm``), ``accuracy`` (the
most likely output earns the input's best reward), ``target_prob`` and ``target_nll`` of the
SFT target, ``stalled`` (STD below ``std_threshold`` with V far from the best reward),
averaged within input groups: the environment's groups, ``all``, and ``small_std`` /
``large_std`` (STD at the start below / at or above ``std_threshold``).
Step metrics of the estimator (``split = "batch"``: sampled ``reward_mean``,
``reward_std``, ``frac_reward_zero_std``, ``grad_norm`` of the update, ...) are averaged
over the steps since the previous evaluation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from rftgrad.envs.base import RewardEnv
from rftgrad.errors import ConfigError
from rftgrad.finetune.config import Phase, ReplicaSettings, TrainConfig, replica_grid
from rftgrad.finetune.objectives import make_objective
from rftgrad.finetune.optim import make_optimizer
from rftgrad.models.base import Params, SoftmaxPolicy
from rftgrad.results import read_checksummed, write_checksummed
from rftgrad.runtime import resolve_device, resolve_dtype, stream, stream_seed
from rftgrad.theory.bounds import stalled
from rftgrad.theory.exact import ExactWorkspace, evaluate, exact

#: builds the initial policy: (settings, device, dtype) -> SoftmaxPolicy with one replica per
#: ``settings.seeds`` entry and temperatures ``settings.temperature`` (set before any
#: initialisation that depends on them, e.g. ``set_output_probability``).
PolicyFactory = Callable[[ReplicaSettings, torch.device, torch.dtype], SoftmaxPolicy]

#: the columns of the trainer's tidy records, one row per (arm, phase, step, replica, split, group, metric).
RECORD_COLUMNS = ("arm", "phase", "step", "replica", "split", "group", "metric", "value")
_STREAM_BATCH, _STREAM_SUBSET, _STREAM_SAMPLE = 1, 2, 3


def replica_uniform(seeds: Sequence[int], key: tuple[int, ...], size: int) -> torch.Tensor:
    """``(R, size)`` float64 uniforms; row ``r`` depends only on ``seeds[r]`` and ``key``."""
    rows = [torch.rand(size, generator=stream(seed, *key)) for seed in seeds]
    return torch.stack(rows).to(torch.float64)


def takes_every_input(eligible: torch.Tensor, count: int) -> bool:
    """Whether a draw of ``count`` inputs among ``eligible`` ``(R, N)`` takes them all (``count`` 0, or at least
    the fewest eligible inputs of any replica): then :func:`choose_inputs` returns ``eligible`` itself."""
    return count <= 0 or count >= int(eligible.sum(-1).min())


def choose_inputs(eligible: torch.Tensor, count: int, seeds: Sequence[int], key: tuple[int, ...]) -> torch.Tensor:
    """Per replica, ``count`` random inputs among ``eligible`` ``(R, N)`` (all if ``count`` is 0 or
    larger): a bool mask ``(R, N)``, drawn from keys seeded by ``(seed, *key)``."""
    if takes_every_input(eligible, count):
        return eligible.clone()
    keys = replica_uniform(seeds, key, eligible.shape[1]).to(eligible.device)
    keys = keys.masked_fill(~eligible, 2.0)  # never before an eligible input
    chosen = keys.argsort(dim=-1)[:, :count]  # (R, count)
    return torch.zeros_like(eligible).scatter_(1, chosen, True)


def phase_subset(num_inputs: int, fraction: float, seeds: Sequence[int], phase_index: int) -> torch.Tensor:
    """The inputs phase ``phase_index`` of an arm trains on: ``(R, N)`` bool, a seeded share ``fraction`` of the
    ``N`` inputs per replica seed (at least one; all when ``fraction`` is 1). Public so that an experiment can
    say which inputs an ``sft:S@f`` phase saw."""
    eligible = torch.ones(len(seeds), num_inputs, dtype=torch.bool)
    if fraction >= 1.0:
        return eligible
    count = max(1, round(fraction * num_inputs))
    return choose_inputs(eligible, count, seeds, (_STREAM_SUBSET, phase_index))


@dataclass
class TrainResult:
    """What :func:`train` returns: tidy records, the replica settings, final parameters per arm."""

    records: pd.DataFrame  # columns RECORD_COLUMNS
    replicas: pd.DataFrame  # replica, seed, lr, temperature, entropy_coef, kl_coef
    params: dict[str, Params]  # arm -> final parameters (R, ...) on the CPU


class _Recorder:
    """Collects long-format rows ``(arm, phase, step, replica, split, group, metric, value)``."""

    def __init__(self, rows: dict[str, list[Any]] | None = None) -> None:
        self.rows: dict[str, list[Any]] = rows or {column: [] for column in RECORD_COLUMNS}

    def add(
        self, arm: str, phase: str, step: int, split: str, keys: Sequence[tuple[str, str]], values: torch.Tensor
    ) -> None:
        """Append one row per replica and ``(group, metric)`` of ``keys`` from ``values`` ``(K, R)``, key by key
        (one device-to-host copy for all of them); NaN entries (empty groups) are skipped."""
        columns = self.rows
        for (group, metric), row in zip(keys, values.detach().double().cpu().tolist(), strict=True):
            kept = [(replica, value) for replica, value in enumerate(row) if value == value]  # not NaN
            count = len(kept)
            for column, item in (("arm", arm), ("phase", phase), ("step", step), ("split", split)):
                columns[column].extend([item] * count)
            columns["group"].extend([group] * count)
            columns["metric"].extend([metric] * count)
            columns["replica"].extend(replica for replica, _ in kept)
            columns["value"].extend(value for _, value in kept)

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame."""
        return pd.DataFrame(self.rows, columns=list(RECORD_COLUMNS))


def per_input_metrics(
    policy: SoftmaxPolicy,
    env: RewardEnv,
    with_grad_norm: bool,
    std_threshold: float | None = None,
    workspace: ExactWorkspace | None = None,
) -> dict[str, torch.Tensor]:
    """Exact per-input metrics ``(R, N)``: reward_mean, reward_std, grad_norm, accuracy, target_prob, target_nll.

    With ``std_threshold``, also ``stalled``: 1 where the input is in the vanishing-gradient
    regime, STD below the threshold while V is more than half the reward range below the
    input's best reward (docs/paper.md §2); its group mean is the share of such inputs.
    ``workspace``: an :class:`~rftgrad.theory.ExactWorkspace` whose buffers the exact pass reuses
    (the trainer keeps one per split for its evaluations); the metrics do not live in it.
    """
    result = exact(policy, env, workspace=workspace) if with_grad_norm else evaluate(policy, env, workspace=workspace)
    rewards = result.rewards  # (N, Y)
    # most likely output (R, N), the first of equal maxima: reduced over the outputs' axis in memory order
    # (log_probs is a view of a state-major (Y, R, N) tensor; an argmax over its strided last axis is 10x slower)
    best = _argmax_last(result.log_probs, workspace)
    best_reward = rewards.gather(1, best.T).T  # (R, N)
    target_logp = result.log_probs[:, torch.arange(env.num_inputs), env.target_index().to(policy.device)]  # (R, N)
    metrics = {
        "reward_mean": result.value,
        "reward_std": result.std,
        "accuracy": (best_reward >= rewards.max(-1).values - 1e-12).to(result.value.dtype),
        "target_prob": target_logp.exp(),
        "target_nll": -target_logp,
    }
    if std_threshold is not None:
        best, worst = rewards.max(-1).values, rewards.min(-1).values  # (N,)
        metrics["stalled"] = stalled(result.value, result.std, best, worst, std_threshold).to(result.value.dtype)
    if with_grad_norm:
        metrics["grad_norm"] = result.grad_norm
    return metrics


def _argmax_last(values: torch.Tensor, workspace: ExactWorkspace | None = None) -> torch.Tensor:
    """``values.argmax(-1)``: the index of the first maximum along the last axis, found as the smallest of
    ``index + count · [value < max]`` by float reductions over the outermost axis (torch's argmax takes about
    ten times as long on (64, 64, 100) log-probabilities); torch's argmax for NaN or other dtypes. The one
    temporary of ``values``' size comes from ``workspace`` when given (a fresh one costs page faults)."""
    count = values.shape[-1]
    if values.dtype not in (torch.float32, torch.float64) or count >= 2**22 or values.ndim < 2:
        return values.argmax(-1)
    moved = values.movedim(-1, 0)  # (Y, ...): for log_probs a contiguous view of the (Y, R, N) tensor
    index = torch.arange(count, device=values.device, dtype=values.dtype).view(count, *[1] * (moved.ndim - 1))
    peak = moved.amax(0)
    if bool(peak.isnan().any()):
        return values.argmax(-1)
    scratch = None if workspace is None else workspace.take("metrics.argmax", tuple(moved.shape), moved)
    below = torch.sub(moved, peak, out=scratch).sign_()  # -1 below the maximum, 0 at it
    return below.mul_(-count).add_(index).amin(0).long()  # index + count below the maximum: the first at it


def group_means(values: torch.Tensor, groups: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean of ``values`` ``(..., R, N)`` over each group mask ``(R, N)`` (or ``(N,)``) -> ``(..., R)``, NaN where
    a group is empty: ``Σ_n m_gn v_n / Σ_n m_gn``, every group in one tensor program."""
    names = list(groups)
    weights = torch.stack(torch.broadcast_tensors(*(groups[name].to(values.dtype) for name in names)))  # (G, *mask)
    mask_ndim = weights.ndim - 1
    count = weights.sum(-1)  # (G, *mask[:-1])
    sums = (values.unsqueeze(-mask_ndim - 1) * weights).sum(-1)  # (..., G, *mask[:-1])
    means = torch.where(count > 0, sums / count.clamp_min(1), torch.nan)
    return {name: means.select(-mask_ndim, index) for index, name in enumerate(names)}


class _ArmRun:
    """Training state of one arm; :meth:`run` trains it to the end, checkpointing on the way."""

    def __init__(
        self,
        arm: str,
        phases: tuple[Phase, ...],
        policy: SoftmaxPolicy,
        envs: Mapping[str, RewardEnv],
        config: TrainConfig,
        settings: ReplicaSettings,
        checkpoint: Path | None,
        fingerprint: str,
        first_inputs: torch.Tensor | None = None,
    ) -> None:
        self.arm, self.phases, self.policy, self.envs = arm, phases, policy, envs
        self.first_inputs = first_inputs  # (R, N) bool: the first phase's inputs, replacing its seeded subset
        self.config, self.settings, self.checkpoint, self.fingerprint = config, settings, checkpoint, fingerprint
        self.train_env = envs["train"]
        as_tensor = dict(device=policy.device, dtype=policy.dtype)
        self.lr = torch.tensor(settings.lr, **as_tensor)
        self.entropy_coef = torch.tensor(settings.entropy_coef, **as_tensor)
        self.kl_coef = torch.tensor(settings.kl_coef, **as_tensor)
        self.ref_params = {key: value.clone() for key, value in policy.params.items()}
        self.step = 0  # global step across phases
        self.phase_index = 0
        self.phase_step = 0
        self.optimizer_state: dict[str, object] | None = None
        self.groups: dict[str, dict[str, torch.Tensor]] = {}
        self.recorder = _Recorder()
        self.batch_metrics: tuple[str, ...] = ()  # names of the rows of batch_total
        self.batch_total: torch.Tensor | None = None  # (M, R) step metrics summed since the last evaluation
        self.batch_count = 0
        self.eval_workspaces: dict[str, ExactWorkspace] = {}  # split -> the exact engine's buffers

    # ------------------------------------------------------------ checkpoints
    def save(self) -> None:
        """Write the state atomically (a temporary file renamed into place) behind its sha256, so that a damaged
        checkpoint is refused on resume (:func:`rftgrad.results.read_checksummed`) rather than half-loaded."""
        if self.checkpoint is None:
            return
        state = {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "phase_index": self.phase_index,
            "phase_step": self.phase_step,
            "params": self.policy.params,
            "optimizer": self.optimizer_state,
            "groups": self.groups,
            # pickled apart: torch.save's pickler visits every list item in Python (0.4 s for 52k rows), pickle does not
            "records": pickle.dumps(self.recorder.rows, protocol=pickle.HIGHEST_PROTOCOL),
            "batch_sums": self.batch_sums(),
            "batch_count": self.batch_count,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_checksummed(self.checkpoint, buffer.getvalue())

    def load(self) -> bool:
        """Restore the state from the checkpoint if there is one (False otherwise)."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return False
        data = read_checksummed(self.checkpoint)  # a truncated or corrupt file raises CheckpointError, naming it
        state = torch.load(io.BytesIO(data), map_location=self.policy.device, weights_only=False)
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(
                f"checkpoint {self.checkpoint} was written by a run with a different config; "
                "use a new --out directory or delete that checkpoint"
            )
        self.step, self.phase_index, self.phase_step = state["step"], state["phase_index"], state["phase_step"]
        self.policy.params = state["params"]
        self.optimizer_state, self.groups = state["optimizer"], state["groups"]
        rows = state["records"]  # bytes; a dict in checkpoints written before the records were pickled apart
        self.recorder = _Recorder(pickle.loads(rows) if isinstance(rows, bytes) else rows)
        sums: dict[str, torch.Tensor] = state["batch_sums"]
        self.batch_metrics, self.batch_count = tuple(sums), state["batch_count"]
        self.batch_total = torch.stack(list(sums.values())) if sums else None
        return True

    def batch_sums(self) -> dict[str, torch.Tensor]:
        """The summed step metrics as ``name -> (R,)`` (how a checkpoint stores them)."""
        if self.batch_total is None:
            return {}
        return dict(zip(self.batch_metrics, self.batch_total.unbind(), strict=True))

    # ------------------------------------------------------------ evaluation
    def evaluate(self, phase: str) -> None:
        """Exact metrics on every split, per group; the averaged step metrics since the last evaluation."""
        for split, env in self.envs.items():
            workspace = self.eval_workspaces.setdefault(split, ExactWorkspace())  # buffers kept between evaluations
            metrics = per_input_metrics(
                self.policy, env, self.config.eval_grad_norm, self.config.std_threshold, workspace=workspace
            )
            if split not in self.groups:  # the first evaluation fixes the groups
                shape = metrics["reward_std"].shape
                groups = {name: mask.to(self.policy.device).expand(shape) for name, mask in env.group_masks().items()}
                small = metrics["reward_std"] < self.config.std_threshold
                self.groups[split] = {**groups, "small_std": small, "large_std": ~small}
            means = group_means(torch.stack(list(metrics.values())), self.groups[split])  # group -> (M, R)
            keys = [(group, metric) for metric in metrics for group in means]
            values = torch.stack(list(means.values()), dim=1)  # (M, G, R)
            self.recorder.add(self.arm, phase, self.step, split, keys, values.flatten(0, 1))
        if self.batch_count:
            keys = [("all", metric) for metric in self.batch_metrics]
            self.recorder.add(self.arm, phase, self.step, "batch", keys, self.batch_total / self.batch_count)
        self.batch_metrics, self.batch_total, self.batch_count = (), None, 0

    def accumulate(self, metrics: Mapping[str, torch.Tensor], updates: int) -> None:
        """Add one update's step metrics ``(R,)`` each, divided by the ``updates`` of its step, to the running
        sums ``(M, R)`` (on the device: they reach the host once, at the next evaluation)."""
        values = torch.stack([value.detach() for value in metrics.values()])  # (M, R)
        if updates != 1:  # x / 1 is x: skipped
            values = values / updates
        if self.batch_total is None:
            self.batch_metrics, self.batch_total = tuple(metrics), values + 0  # 0 + x, as a sum started at 0
        elif tuple(metrics) != self.batch_metrics:
            raise RuntimeError(f"step metrics changed from {self.batch_metrics} to {tuple(metrics)} within a phase")
        else:
            self.batch_total = self.batch_total + values

    # ------------------------------------------------------------ training
    def phase_inputs(self, index: int, phase: Phase) -> torch.Tensor:
        """The inputs a phase trains on, ``(R, N)`` bool: the chosen ones for the first phase when
        :func:`train` got them (``phase_inputs``), else a seeded share (see :func:`phase_subset`)."""
        if index == 0 and self.first_inputs is not None:
            return self.first_inputs.to(self.policy.device)
        subset = phase_subset(self.train_env.num_inputs, phase.fraction, self.settings.seeds, index)
        return subset.to(self.policy.device)

    def input_weights(self, chosen: torch.Tensor) -> torch.Tensor:
        """``w_n = 1/|B|`` on the chosen inputs ``(R, N)`` bool, 0 elsewhere: ``(R, N)`` in the policy's dtype."""
        return chosen.to(self.policy.dtype) / chosen.sum(-1, keepdim=True)

    def run(self, advance: Callable[[int], object], callback: Callable[[int], None] | None) -> None:
        """Train every remaining phase; evaluate and checkpoint on the way (``advance(k)``: k steps done)."""
        if self.load():
            advance(self.step)  # steps restored from the checkpoint
        else:
            self.evaluate(self.phases[0].label)
            self.save()
        config = self.config
        while self.phase_index < len(self.phases):
            phase = self.phases[self.phase_index]
            objective = make_objective(
                phase.objective,
                self.policy,
                self.train_env,
                config,
                self.entropy_coef,
                self.kl_coef,
                self.ref_params,
            )
            optimizer = make_optimizer(config.optimizer, self.lr, config.adam_beta1, config.adam_beta2, config.adam_eps)
            if self.optimizer_state is not None:
                optimizer.load_state_dict(self.optimizer_state)
            eligible = self.phase_inputs(self.phase_index, phase)
            every_input = takes_every_input(eligible, config.batch_size)
            full_weights = self.input_weights(eligible) if every_input else None  # the same every step
            while self.phase_step < phase.steps:
                if full_weights is None:
                    key = (_STREAM_BATCH, self.step)
                    weights = self.input_weights(choose_inputs(eligible, config.batch_size, self.settings.seeds, key))
                else:
                    weights = full_weights
                batch = objective.prepare(weights, seed=stream_seed(_STREAM_SAMPLE, self.step) & 0xFFFF_FFFF)
                for _ in range(batch.updates):
                    ascent, metrics = objective.ascent(batch)
                    optimizer.step(self.policy.params, ascent)
                    self.accumulate(metrics, batch.updates)
                self.batch_count += 1
                self.step += 1
                self.phase_step += 1
                last = self.phase_step == phase.steps
                if last or self.step % config.eval_every == 0:
                    self.evaluate(phase.label)
                if not last and self.checkpoint is not None and self.step % config.checkpoint_every == 0:
                    self.optimizer_state = optimizer.state_dict()
                    self.save()
                advance(1)
                if callback is not None:
                    callback(self.step)
            self.phase_index, self.phase_step, self.optimizer_state = self.phase_index + 1, 0, None
            self.save()


def _check_policy(policy: SoftmaxPolicy, settings: ReplicaSettings) -> None:
    """Raise :class:`ConfigError` unless the factory's policy has the settings' seeds and temperatures."""
    temperature = torch.tensor(settings.temperature, dtype=policy.dtype, device=policy.device)
    if list(policy.seeds) != list(settings.seeds) or not torch.allclose(policy.temperature, temperature):
        raise ConfigError(
            f"make_policy built seeds {policy.seeds} at temperatures {policy.temperature.tolist()}; build it with "
            "seed=list(settings.seeds) and temperature=list(settings.temperature)"
        )


def _check_phase_inputs(
    phase_inputs: Mapping[str, torch.Tensor], config: TrainConfig, num_inputs: int, seeds: Sequence[int]
) -> dict[str, torch.Tensor]:
    """``arm -> (R, N)`` bool masks of the inputs each arm's first phase trains on, checked, on the CPU.

    Each mask replaces the seeded subset of its arm's first phase (:func:`phase_subset`) and must
    hold as many inputs per replica as that subset would (``max(1, round(f·N))`` for ``@f``, all
    ``N`` without), so the arm's name still states its budget. Raises :class:`ConfigError` on an
    unknown arm, a mask that is not ``(R, N)`` bool, or a row with another count.
    """
    arms = config.phases()
    checked = {}
    for arm, mask in phase_inputs.items():
        if arm not in arms:
            raise ConfigError(f"phase_inputs names arm {arm!r}, which is not one of the config's arms {list(arms)}")
        shape = (len(seeds), num_inputs)
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ConfigError(f"phase_inputs[{arm!r}] must be a bool tensor (R, N) = {shape}, got {got}")
        first = arms[arm][0]
        wanted = phase_subset(num_inputs, first.fraction, seeds, 0).sum(-1)  # (R,)
        counts = mask.sum(-1).cpu()  # (R,)
        if not torch.equal(counts, wanted):
            raise ConfigError(
                f"phase_inputs[{arm!r}] holds {counts.tolist()} inputs per replica but its first phase "
                f"{first.label} takes {int(wanted[0])}; choose that many or change the phase's @fraction"
            )
        checked[arm] = mask.detach().cpu().clone()
    return checked


def _mask_digest(mask: torch.Tensor) -> str:
    """sha256 (hex) of a bool mask's shape and values: part of what identifies a run with chosen inputs."""
    data = mask.detach().cpu().contiguous()
    return hashlib.sha256(f"{tuple(data.shape)}".encode() + data.numpy().tobytes()).hexdigest()


def train(
    make_policy: PolicyFactory,
    env: RewardEnv,
    config: TrainConfig,
    *,
    eval_envs: Mapping[str, RewardEnv] | None = None,
    checkpoint_dir: str | Path | None = None,
    run_key: Mapping[str, Any] | None = None,
    progress: bool = True,
    callback: Callable[[int], None] | None = None,
    phase_inputs: Mapping[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train every arm of ``config`` on ``env`` (split ``train``) from ``make_policy``'s policy.

    Args:
        * ``make_policy``: ``(settings, device, dtype) -> policy`` with one replica per
          ``settings.seeds`` entry at temperatures ``settings.temperature``; called once
          per arm, so every arm starts from the same parameters.
        * ``env``: the training environment.
        * ``config``: trainer settings (arms, estimator, optimiser, replicas, schedule).
        * ``eval_envs``: more splits to evaluate on (e.g. ``{"test": test_env}``).
        * ``checkpoint_dir``: where to keep one checkpoint per arm; an existing checkpoint of
          the same run resumes it (and a finished arm is not retrained).
        * ``run_key``: what identifies the run (default: the config); a checkpoint written under
          another key is refused with :class:`ConfigError`.
        * ``progress``: show a progress bar.
        * ``callback``: called with the global step after each step (e.g. live plots).
        * ``phase_inputs``: ``arm -> (R, N)`` bool mask of the inputs that arm's first phase trains on,
          replica by replica, instead of its seeded subset (e.g. the inputs a selection rule chose for
          ``sft:S@f``); each row holds that subset's count (checked before any training). A mask is part
          of what identifies its arm's checkpoint. Arms not named keep the seeded subset.

    Returns:
        :class:`TrainResult` with the records of every arm.
    """
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    settings = replica_grid(config)
    envs = {"train": env, **(eval_envs or {})}
    chosen = _check_phase_inputs(phase_inputs or {}, config, env.num_inputs, settings.seeds)
    key = json.dumps(dict(run_key) if run_key is not None else dataclasses.asdict(config), sort_keys=True, default=str)
    frames, params = [], {}
    total = sum(phase.steps for phases in config.phases().values() for phase in phases)
    with tqdm(total=total, disable=not progress, desc="train", unit="step", dynamic_ncols=True) as bar:
        for index, (arm, phases) in enumerate(config.phases().items()):
            policy = make_policy(settings, device, dtype)
            _check_policy(policy, settings)
            checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"arm{index}.pt"
            fingerprint = f"{key}|{arm}" + (f"|inputs={_mask_digest(chosen[arm])}" if arm in chosen else "")
            arm_run = _ArmRun(arm, phases, policy, envs, config, settings, checkpoint, fingerprint, chosen.get(arm))
            bar.set_description(arm)
            arm_run.run(bar.update, callback)
            frames.append(arm_run.recorder.frame())
            params[arm] = {name: value.detach().cpu() for name, value in policy.params.items()}
    replicas = pd.DataFrame(settings.rows())
    return TrainResult(pd.concat(frames, ignore_index=True), replicas, params)

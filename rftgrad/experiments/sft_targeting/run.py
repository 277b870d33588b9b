"""Run ``sft_targeting``: per task, choose each strategy's SFT inputs, then SFT + exact RFT from the same weights.

Steps, per task (``family``, ``language``):

1. the task and its pretrained policy: ``trainer.seeds`` replicas (the family task's linear
   policy pretrained per seed as ``sft_budget`` does; the language's one cached transformer,
   copied to every seed);
2. under it, per input and seed: the exact reward mean ``V`` and STD, the best and worst
   reward, the trainer's *stalled* flag (:func:`rftgrad.finetune.per_input_metrics`), and
   ``max(sample_sizes, flag_samples)`` sampled outputs (the first ``G`` are the ``G``-sample);
3. per strategy and budget ``f``, the ``count = max(1, round(f·N))`` inputs of the SFT phase per
   seed (:func:`choose`): ``random`` is the trainer's seeded subset of ``sft:S@f``
   (:func:`rftgrad.finetune.phase_subset`, as ``sft_budget`` draws it); the others take the
   ``count`` inputs of smallest score, ties broken at random per seed (:func:`strategy_scores`);
4. train: RFT alone and full SFT + RFT (``trainer.seeds`` replicas); then one arm per distinct
   count ``sft:S@f+rft:N`` whose replicas are every strategy x seed (one tensor program),
   each starting from its seed's pretrained weights with its chosen inputs
   (``phase_inputs`` of :func:`rftgrad.finetune.train`); budgets with the same count (a
   small task) share that arm;
5. every arm's final policy evaluated exactly per input: the mean reward over all inputs,
   the small-STD inputs (STD at the start below ``std_threshold``) and the stalled ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rftgrad.diagnose import Regime
from rftgrad.envs import RewardEnv, family_task_of, language_env, pretraining_mixture
from rftgrad.experiments.base import RunContext
from rftgrad.experiments.sft_targeting.config import Config
from rftgrad.finetune import (
    PretrainedPolicies,
    ReplicaSettings,
    TrainConfig,
    per_input_metrics,
    phase_subset,
    pretrained_transformer,
    replica_grid,
    train,
)
from rftgrad.models import SoftmaxPolicy, TinyTransformerPolicy, build_policy
from rftgrad.runtime import generator, resolve_device, resolve_dtype

#: builds an untrained policy of a task for some replica settings (only its shape and seeds matter).
PolicyBuilder = Callable[[ReplicaSettings, torch.device, torch.dtype], SoftmaxPolicy]
#: added to the sample seed for the tie-breaking keys, so that they differ from the sampled outputs' noise.
TIE_SALT = 7_919


@dataclass
class TaskModel:
    """A task ready to finetune: its training environment, trainer section, pretrained and empty policies."""

    env: RewardEnv
    trainer: TrainConfig  # without the arms
    pretrained: Callable[[ReplicaSettings, torch.device, torch.dtype], SoftmaxPolicy]  # seeds' pretrained weights
    build: PolicyBuilder  # an untrained policy of the same architecture
    shared_start: bool  # every seed starts from the same weights (then equal masks train equal replicas)


class TiledPolicies:
    """Policy factory for :func:`rftgrad.finetune.train` whose replicas start from chosen pretrained seeds: replica
    ``r`` takes the weights of seed ``seed_of[r]`` of the ``K`` (default ``r mod K``: ``S`` blocks of the ``K``
    seeds, one per strategy, in one tensor program); ``R = K`` gives the pretrained policy itself."""

    def __init__(self, model: TaskModel, seeds: ReplicaSettings, seed_of: torch.Tensor | None = None) -> None:
        self.model, self.seeds, self.seed_of = model, seeds, seed_of  # seeds: the K pretrained seeds' settings

    def __call__(self, settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> SoftmaxPolicy:
        k = self.seeds.num_replicas
        base = self.model.pretrained(self.seeds, device, dtype)
        if settings == self.seeds and self.seed_of is None:
            return base
        policy = self.model.build(settings, device, dtype)
        index = torch.arange(settings.num_replicas) % k if self.seed_of is None else self.seed_of  # (R,)
        index = index.to(device)
        policy.params = {name: value[index].clone() for name, value in base.params.items()}
        return policy


def family_model(config: Config, progress: bool) -> TaskModel:
    """The ``sft_budget`` family task with its linear policy pretrained per seed."""
    task = family_task_of(config)
    pretrained = PretrainedPolicies(
        "linear", task.train, task.pretrain_outputs, steps=config.pretrain_steps, lr=config.pretrain_lr,
        progress=progress,
    )  # fmt: skip

    def build(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> SoftmaxPolicy:
        policy = build_policy("linear", task.train, settings.seeds, device, dtype, features="input")
        policy.set_temperature(settings.temperature)
        return policy

    return TaskModel(task.train, config.trainer, pretrained, build, shared_start=False)


def language_model(config: Config, progress: bool) -> TaskModel:
    """The synthetic language with the default pretraining mixture and its cached one-replica transformer."""
    env = language_env(prompts_per_task=config.prompts_per_task, vocab_size=config.vocab_size,
                       length=config.length, reward=config.reward, seed=config.data_seed)  # fmt: skip
    trainer = dataclasses.replace(config.trainer, optimizer=config.language_optimizer, lr=(config.language_lr,),
                                  dtype="float32")  # fmt: skip
    base = pretrained_transformer(
        env, pretraining_mixture(env), steps=config.language_pretrain_steps, lr=config.language_pretrain_lr,
        seed=config.data_seed, d_model=config.d_model, num_layers=config.num_layers, num_heads=config.num_heads,
        dtype=trainer.dtype, device=trainer.device, progress=progress,
    )  # fmt: skip

    def build(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> SoftmaxPolicy:
        return TinyTransformerPolicy.for_env(
            env, d_model=config.d_model, num_layers=config.num_layers, num_heads=config.num_heads,
            seed=list(settings.seeds), temperature=list(settings.temperature), device=device, dtype=dtype,
        )  # fmt: skip

    def pretrained(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> SoftmaxPolicy:
        policy = build(settings, device, dtype)
        replicas = settings.num_replicas
        policy.params = {name: value.expand(replicas, *value.shape[1:]).clone().to(device, dtype)  # (R, ...)
                         for name, value in base.params.items()}  # fmt: skip
        return policy

    return TaskModel(env, trainer, pretrained, build, shared_start=True)


def budget_count(num_inputs: int, budget: float) -> int:
    """How many inputs a budget labels: the trainer's count for ``sft:S@f`` (:func:`rftgrad.finetune.phase_subset`)."""
    return int(phase_subset(num_inputs, budget, [0], phase_index=0).sum())


def choose(score: torch.Tensor, count: int, seeds: Sequence[int], salt: int) -> torch.Tensor:
    """Per seed, the ``count`` inputs of smallest ``score`` ``(K, N)``, ties broken at random: ``(K, N)`` bool.

    The inputs are first shuffled by keys drawn from ``(salt, seed)``, then stably sorted by score, so inputs of
    equal score (a sample STD of 0, the same flag) are taken in a random order that differs between seeds.
    """
    num_inputs = score.shape[1]
    keys = torch.stack([torch.rand(num_inputs, generator=generator(salt * 1_000_003 + seed)) for seed in seeds])
    shuffled = keys.argsort(-1)  # (K, N)
    order = shuffled.gather(-1, score.double().cpu().gather(-1, shuffled).argsort(dim=-1, stable=True))  # (K, N)
    return torch.zeros(score.shape, dtype=torch.bool).scatter_(1, order[:, :count], True)


def input_table(policy: SoftmaxPolicy, env: RewardEnv, config: Config) -> dict[str, torch.Tensor]:
    """Per seed and input ``(K, N)``: exact ``reward_mean``, ``reward_std``, ``stalled``, ``gap`` (best - V), the
    sampled ``sample_mean_G`` / ``sample_std_G`` for each G used, and ``flagged`` (the stalled flag of
    ``rftgrad diagnose`` on ``flag_samples`` samples over the reward range of the task)."""
    metrics = per_input_metrics(policy, env, with_grad_norm=False, std_threshold=config.trainer.std_threshold)
    rewards = env.reward_table()  # (N, Y)
    best = rewards.max(-1).values  # (N,)
    table = {name: metrics[name].double().cpu() for name in ("reward_mean", "reward_std", "stalled")}
    table["gap"] = best - table["reward_mean"]  # (K, N)
    sizes = sorted({*config.sample_sizes, config.flag_samples})
    length = env.output_space.length
    ids = torch.arange(env.num_inputs, device=policy.device)
    outputs = policy.sample(ids, policy.inputs_from(env), sizes[-1], length, seed=config.sample_seed)  # (K, N, G, L)
    outputs = outputs.cpu()
    num_seeds = outputs.shape[0]
    flat_ids = torch.arange(env.num_inputs).repeat_interleave(sizes[-1]).repeat(num_seeds)  # (K·N·G,)
    sampled = env.reward(flat_ids, outputs.reshape(-1, length)).reshape(num_seeds, env.num_inputs, sizes[-1])
    for g in sizes:
        table[f"sample_mean_G{g}"] = sampled[..., :g].mean(-1)
        table[f"sample_std_G{g}"] = sampled[..., :g].std(-1, correction=0)  # population STD, as diagnose's
    low, high = float(rewards.min()), float(rewards.max())
    regime = Regime.from_range((low, high), "--reward-range", high, "--reward-range")  # diagnose's defaults
    g = config.flag_samples
    table["flagged"] = regime.vanishing(table[f"sample_mean_G{g}"], table[f"sample_std_G{g}"])
    return table


def strategy_scores(strategy: str, table: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(K, N)`` the score a strategy takes the smallest of: exact STD, a ``G``-sample STD, not flagged (0 for
    flagged inputs, then a random fill from the others), or ``V - best`` (largest gap first)."""
    if strategy == "exact_std":
        return table["reward_std"]
    if strategy.startswith("sample_std_G"):
        return table[strategy]
    if strategy.startswith("stalled_flag_G"):
        return (~table["flagged"]).double()
    if strategy == "largest_gap":
        return -table["gap"]
    raise ValueError(f"no score for strategy {strategy!r}")


def distinct_replicas(masks: torch.Tensor, num_seeds: int, shared_start: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows of ``masks`` ``(S·K, N)`` to train, ``(U,)``, and the trained row of each, ``(S·K,)``.

    Training is exact and full batch, so a replica's result depends only on its start and its mask: when every
    seed starts from the same weights (``shared_start``), equal masks train equal replicas and only the distinct
    masks are trained (e.g. smallest exact STD picks the same inputs for every seed); otherwise every row is.
    """
    if not shared_start:
        rows = torch.arange(masks.shape[0])
        return rows, rows
    distinct, inverse = torch.unique(masks, dim=0, return_inverse=True)  # (U, N), (S·K,)
    first = torch.full((len(distinct),), masks.shape[0], dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(masks.shape[0]), reduce="amin"
    )  # (U,) the first row of each distinct mask
    return first, inverse


def strategy_masks(
    config: Config, table: dict[str, torch.Tensor], num_inputs: int
) -> dict[tuple[str, int], torch.Tensor]:
    """``(strategy, count) -> (K, N)`` bool: the SFT inputs of each strategy at each distinct budget count."""
    seeds = replica_grid(config.trainer).seeds
    masks = {}
    for count in sorted({budget_count(num_inputs, b) for b in config.budgets}):
        fraction = min(b for b in config.budgets if budget_count(num_inputs, b) == count)
        for strategy in config.strategy_names():
            if strategy == "random":
                masks[strategy, count] = phase_subset(num_inputs, fraction, seeds, phase_index=0)
            else:
                score = strategy_scores(strategy, table)
                masks[strategy, count] = choose(score, count, seeds, config.sample_seed + TIE_SALT)
    return masks


def final_rewards(result_params: dict[str, dict[str, torch.Tensor]], model: TaskModel, trainer: TrainConfig,
                  arm: str, groups: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:  # fmt: skip
    """Group -> ``(R,)`` exact mean reward over the group's inputs ``(K, N)`` (tiled to R) of the arm's final policy."""
    settings = replica_grid(trainer)
    device = resolve_device(trainer.device)
    params = result_params[arm]
    replicas = next(iter(params.values())).shape[0]
    settings = ReplicaSettings(*(tuple(values[i % len(values)] for i in range(replicas))
                                 for values in dataclasses.astuple(settings)))  # fmt: skip
    dtype = next(iter(params.values())).dtype
    policy = model.build(settings, device, dtype)
    policy.params = {name: value.to(device) for name, value in params.items()}
    value = per_input_metrics(policy, model.env, with_grad_norm=False)["reward_mean"].double().cpu()  # (R, N)
    out = {}
    for name, mask in groups.items():
        tiled = mask[torch.arange(replicas) % mask.shape[0]].double()  # (R, N)
        out[name] = ((value * tiled).sum(-1) / tiled.sum(-1).clamp_min(1)).numpy()
    return out


def run_task(config: Config, task: str, context: RunContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``final`` rows (per strategy, budget and seed) and the ``selection`` rows of one task."""
    model = family_model(config, context.progress) if task == "family" else language_model(config, context.progress)
    env, trainer = model.env, model.trainer
    settings = replica_grid(trainer)
    num_seeds, num_inputs = settings.num_replicas, env.num_inputs
    base = model.pretrained(settings, resolve_device(trainer.device), resolve_dtype(trainer.dtype))
    table = input_table(base, env, config)
    groups = {"all": torch.ones(num_seeds, num_inputs, dtype=torch.bool), "small_std": table["reward_std"] <
              trainer.std_threshold, "stalled": table["stalled"].bool()}  # fmt: skip
    start = {name: ((table["reward_mean"] * m).sum(-1) / m.sum(-1).clamp_min(1)).numpy() for name, m in groups.items()}
    run_key = {**dataclasses.asdict(config), "task": task}
    factory = TiledPolicies(model, settings)

    rows = []

    def add_rows(strategy: str, budget: float, count: int, values: dict[str, np.ndarray], offset: int) -> None:
        for seed in range(num_seeds):
            rows.append({"task": task, "strategy": strategy, "budget": budget, "count": count, "seed": seed,
                         **{f"reward_{g}": float(values[g][offset + seed]) for g in groups},
                         **{f"start_{g}": float(start[g][seed]) for g in groups}})  # fmt: skip

    references = (f"rft:{config.rft_steps}", f"sft:{config.full_sft_steps}+rft:{config.rft_steps}")
    reference_trainer = dataclasses.replace(trainer, arms=references)
    result = train(factory, env, reference_trainer, checkpoint_dir=context.checkpoint_dir / task / "references",
                   run_key={**run_key, "part": "references"}, progress=context.progress)  # fmt: skip
    for name, arm, budget in (("rft_alone", references[0], 0.0), ("full_sft", references[1], 1.0)):
        add_rows(name, budget, 0 if budget == 0 else num_inputs, final_rewards(result.params, model, reference_trainer,
                 arm, groups), 0)  # fmt: skip

    masks = strategy_masks(config, table, num_inputs)
    strategies = config.strategy_names()
    counts = sorted({count for _, count in masks})
    arm_of = {}  # count -> its arm, named by the smallest budget of that count
    for count in counts:
        fraction = min(b for b in config.budgets if budget_count(num_inputs, b) == count)
        arm_of[count] = f"sft:{config.sft_steps}@{fraction:g}+rft:{config.rft_steps}"
    selection = []
    for count in counts:
        stacked = torch.cat([masks[s, count] for s in strategies])  # (S·K, N): strategy blocks of the K seeds
        trained_rows, inverse = distinct_replicas(stacked, num_seeds, model.shared_start)  # (U,), (S·K,)
        arm = arm_of[count]
        chosen_trainer = dataclasses.replace(trainer, arms=(arm,), seeds=len(trained_rows))
        result = train(TiledPolicies(model, settings, trained_rows % num_seeds), env, chosen_trainer,
                       phase_inputs={arm: stacked[trained_rows]}, progress=context.progress,
                       checkpoint_dir=context.checkpoint_dir / task / f"inputs{count}",
                       run_key={**run_key, "part": f"inputs{count}"})  # fmt: skip
        row_groups = {name: mask[trained_rows % num_seeds] for name, mask in groups.items()}  # (U, N)
        trained = final_rewards(result.params, model, chosen_trainer, arm, row_groups)  # group -> (U,)
        values = {name: column[inverse.numpy()] for name, column in trained.items()}  # group -> (S·K,)
        for budget in (b for b in config.budgets if budget_count(num_inputs, b) == count):
            for index, strategy in enumerate(strategies):
                add_rows(strategy, budget, count, values, index * num_seeds)
        for strategy in strategies:
            mask = masks[strategy, count]
            for seed in range(num_seeds):
                chosen = mask[seed]
                selection.append({
                    "task": task, "strategy": strategy, "count": count, "seed": seed,
                    "chosen_stalled": int((chosen & groups["stalled"][seed]).sum()),
                    "chosen_small_std": int((chosen & groups["small_std"][seed]).sum()),
                    "chosen_reward_mean": float(table["reward_mean"][seed][chosen].mean()),
                    "flagged": int(table["flagged"][seed].sum()),
                    "stalled_inputs": int(groups["stalled"][seed].sum()), "small_std_inputs":
                    int(groups["small_std"][seed].sum()), "inputs": num_inputs,
                })  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(selection)


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """``final`` (per task, strategy, budget, seed: the end rewards and the start) and ``selection`` (what each
    strategy picked: how many of its inputs were stalled or small-STD, how many inputs the flag marked)."""
    finals, selections = [], []
    for task in config.tasks:
        final, selection = run_task(config, task, context)
        finals.append(final)
        selections.append(selection)
    return {"final": pd.concat(finals, ignore_index=True), "selection": pd.concat(selections, ignore_index=True)}

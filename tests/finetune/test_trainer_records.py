"""The trainer's records, bit for bit, against references written from first principles.

The trainer groups every metric in one tensor program, sums the step metrics on the device and
reuses buffers in its optimisers; these tests hold it to the plain definitions, with exact
equality (``check_exact``, ``torch.equal``), not a tolerance:

* a group mean is ``Σ_n m_gn v_n / Σ_n m_gn`` of one group at a time (NaN for an empty group);
* an evaluation row is that mean of :func:`per_input_metrics` at the parameters of its step,
  over the environment's groups and the ``small_std`` / ``large_std`` split of the initial STD;
* a full-batch exact SGD run is ``θ ← θ + lr·d`` with ``d`` from :class:`ExactRFT`, and its
  ``batch`` rows average the step metrics since the previous evaluation;
* a run resumed from its checkpoints equals the uninterrupted run (every arm kind, both
  optimisers, float32 and float64), and a replica equals the run of its seed alone (tabular
  policy: no reduction over replicas anywhere, so the numbers are the same bits).
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from rftgrad.envs import random_sequence_env
from rftgrad.finetune.config import ReplicaSettings, TrainConfig, replica_grid
from rftgrad.finetune.objectives import ExactRFT, StepBatch
from rftgrad.finetune.trainer import RECORD_COLUMNS, group_means, per_input_metrics, train
from rftgrad.models import LinearSoftmaxPolicy, TabularPolicy
from tests.tolerances import REPLICA_ROUNDING_ATOL

ENV = random_sequence_env(num_prompts=6, vocab_size=3, length=2, reward="position_match", seed=3)


def tabular(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> TabularPolicy:
    return TabularPolicy.for_env(
        ENV, seed=list(settings.seeds), device=device, dtype=dtype, temperature=list(settings.temperature)
    )


def linear(settings: ReplicaSettings, device: torch.device, dtype: torch.dtype) -> LinearSoftmaxPolicy:
    return LinearSoftmaxPolicy.for_env(
        ENV, features="input_prefix", seed=list(settings.seeds), device=device, dtype=dtype,
        temperature=list(settings.temperature),
    )  # fmt: skip


def one_group_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ_n m_n v_n / Σ_n m_n`` per row of ``values`` ``(R, N)`` for one mask ``(R, N)``; NaN if empty."""
    weights = mask.to(values.dtype)
    count = weights.sum(-1)
    return torch.where(count > 0, (values * weights).sum(-1) / count.clamp_min(1), torch.nan)


def same_numbers(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit, NaN where the other is NaN."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("num_inputs", [1, 7, 100, 257])
def test_group_means_of_stacked_metrics_equal_one_group_and_metric_at_a_time(dtype, num_inputs):
    gen = torch.Generator().manual_seed(num_inputs)
    values = torch.randn(5, 3, num_inputs, generator=gen, dtype=dtype)  # (M, R, N)
    groups = {
        "all": torch.ones(3, num_inputs, dtype=torch.bool),
        "some": torch.rand(3, num_inputs, generator=gen) < 0.4,
        "none": torch.zeros(3, num_inputs, dtype=torch.bool),
        "first_replica": torch.zeros(3, num_inputs, dtype=torch.bool).index_fill_(0, torch.tensor([0]), True),
    }
    means = group_means(values, groups)
    assert list(means) == list(groups)
    for name, mask in groups.items():
        assert means[name].shape == (5, 3)
        for metric in range(5):
            assert same_numbers(means[name][metric], one_group_mean(values[metric], mask)), name
    assert means["none"].isnan().all() and means["first_replica"][:, 1:].isnan().all()
    one = group_means(values[0], {"some": groups["some"][0]})["some"]  # an (N,) mask broadcasts over replicas
    rows = [one_group_mean(values[0][r : r + 1], groups["some"][0:1])[0] for r in range(3)]
    assert same_numbers(one, torch.stack(rows))


def evaluation_rows(arm, phase, step, split, policy, env, config, initial_std) -> pd.DataFrame:
    """The records an evaluation should write, from per_input_metrics and one group at a time."""
    metrics = per_input_metrics(policy, env, config.eval_grad_norm, config.std_threshold)
    shape = initial_std.shape
    small = initial_std < config.std_threshold
    groups = {**{name: mask.expand(shape) for name, mask in env.group_masks().items()}}
    groups.update(small_std=small, large_std=~small)
    rows = []
    for metric, values in metrics.items():
        for group, mask in groups.items():
            for replica, value in enumerate(one_group_mean(values, mask).double().tolist()):
                if value == value:
                    rows.append((arm, phase, step, replica, split, group, metric, value))
    return pd.DataFrame(rows, columns=list(RECORD_COLUMNS))


def step_metrics_rows(arm, phase, step, sums: dict[str, torch.Tensor], count: int) -> pd.DataFrame:
    rows = [
        (arm, phase, step, replica, "batch", "all", metric, value)
        for metric, total in sums.items()
        for replica, value in enumerate((total / count).double().tolist())
    ]
    return pd.DataFrame(rows, columns=list(RECORD_COLUMNS))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("make_policy", [tabular, linear])
def test_exact_sgd_run_equals_the_update_rule_and_its_records_the_definitions(dtype, make_policy):
    """``θ ← θ + lr·d`` with ``d`` = ExactRFT's ascent at every step, evaluations at 0, 2, 4, 5 (and the
    step metrics averaged in between), written out here one group and one step at a time."""
    config = TrainConfig(
        arms=("rft:5",), optimizer="sgd", lr=(0.3, 0.05), seeds=2, eval_every=2, entropy_coef=(0.0, 0.1),
        kl_coef=(0.2,), dtype=dtype,
    )  # fmt: skip
    result = train(make_policy, ENV, config, progress=False)

    settings = replica_grid(config)
    policy = make_policy(settings, torch.device("cpu"), getattr(torch, dtype))
    as_policy = dict(dtype=policy.dtype)
    lr = torch.tensor(settings.lr, **as_policy)
    ref_params = {key: value.clone() for key, value in policy.params.items()}
    objective = ExactRFT(
        policy, ENV, config, torch.tensor(settings.entropy_coef, **as_policy),
        torch.tensor(settings.kl_coef, **as_policy), ref_params,
    )  # fmt: skip
    weights = torch.full((settings.num_replicas, ENV.num_inputs), 1.0, **as_policy) / ENV.num_inputs
    initial_std = per_input_metrics(policy, ENV, False)["reward_std"]
    frames = [evaluation_rows("rft:5", "rft:5", 0, "train", policy, ENV, config, initial_std)]
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for step in range(1, 6):
        ascent, metrics = objective.ascent(StepBatch(weights))
        policy.params = {  # θ + lr·d rounded once (a fused multiply-add, as the SGD docstring states)
            key: torch.addcmul(value, lr.reshape(-1, *[1] * (value.ndim - 1)), ascent[key])
            for key, value in policy.params.items()
        }
        sums = {name: sums.get(name, 0) + value for name, value in metrics.items()}
        count += 1
        if step % 2 == 0 or step == 5:
            frames.append(evaluation_rows("rft:5", "rft:5", step, "train", policy, ENV, config, initial_std))
            frames.append(step_metrics_rows("rft:5", "rft:5", step, sums, count))
            sums, count = {}, 0
    expected = pd.concat(frames, ignore_index=True)
    pd.testing.assert_frame_equal(result.records, expected, check_exact=True)
    for key, value in policy.params.items():
        assert torch.equal(result.params["rft:5"][key], value)


class Interrupt(Exception):
    pass


def stop_at_call(calls: int):
    """A callback that raises :class:`Interrupt` at its ``calls``-th call."""
    count = iter(range(calls - 1))

    def callback(step: int) -> None:
        if next(count, None) is None:
            raise Interrupt

    return callback


ARMS = ("rft:5", "sft:2@0.5+rft:4")


def arm_config(estimator: str, optimizer: str, dtype: str, **overrides) -> TrainConfig:
    common = dict(
        arms=ARMS, estimator=estimator, num_generations=3, ppo_epochs=2, batch_size=4, eval_every=2,
        checkpoint_every=2, seeds=2, lr=(0.1, 0.02), optimizer=optimizer, entropy_coef=(0.02,), kl_coef=(0.0, 0.05),
        dtype=dtype,
    )  # fmt: skip
    return TrainConfig(**{**common, **overrides})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("estimator", ["exact", "rloo", "ppo"])
def test_run_resumed_from_checkpoints_equals_the_uninterrupted_run(tmp_path, estimator, optimizer, dtype):
    """Interrupted at step 5 of arm 0 and of arm 1 (in its rft phase), each time after the checkpoint of
    step 4, which holds the step metrics of step 4 (evaluations at 0, 3 and the end of each phase), then
    resumed: the records, step metrics summed across the interruption included, and the parameters are
    those of one uninterrupted run."""
    config = arm_config(estimator, optimizer, dtype, eval_every=3)
    reference = train(linear, ENV, config, progress=False)
    for calls in (5, 6):  # arm 0 stops at step 5; resumed at 4, it ends (1 call), then arm 1 stops at its step 5
        with pytest.raises(Interrupt):
            train(linear, ENV, config, checkpoint_dir=tmp_path, progress=False, callback=stop_at_call(calls))
    resumed = train(linear, ENV, config, checkpoint_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(resumed.records, reference.records, check_exact=True)
    for arm, params in reference.params.items():
        for key, value in params.items():
            assert torch.equal(resumed.params[arm][key], value)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("estimator", ["exact", "rloo", "ppo"])
def test_tabular_replica_equals_the_run_of_its_seed_alone(estimator, optimizer):
    """Replica r of a batched tabular run (seeds x learning rates) and the run of its seed and learning rate
    alone agree to rounding (REPLICA_ROUNDING_ATOL, float64). Not bit for bit: the exact engine's sums over
    the vocabulary and the prefixes run across rows of R·N replica-input lanes (state-major layout), and
    torch's order of summation for a lane depends on how many lanes there are (tests/theory/test_exact_fast.py)."""
    config = arm_config(estimator, optimizer, "float64", kl_coef=(0.05,))
    batched = train(tabular, ENV, config, progress=False)
    for row in batched.replicas.itertuples():
        single = train(tabular, ENV, arm_config(estimator, optimizer, "float64", kl_coef=(0.05,), lr=(row.lr,),
                       seeds=1, seed=row.seed), progress=False)  # fmt: skip
        mine = batched.records[batched.records["replica"] == row.replica].drop(columns="replica")
        theirs = single.records.drop(columns="replica")
        pd.testing.assert_frame_equal(
            mine.reset_index(drop=True), theirs.reset_index(drop=True), check_exact=False, rtol=0,
            atol=REPLICA_ROUNDING_ATOL,
        )  # fmt: skip
        for arm, params in single.params.items():
            for key, value in params.items():
                torch.testing.assert_close(
                    batched.params[arm][key][row.replica], value[0], rtol=0, atol=REPLICA_ROUNDING_ATOL
                )

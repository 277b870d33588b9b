"""``rftgrad check``'s batches (issue 19): instances of one shape as the replicas of one evaluation.

* every row of a batched check equals the row of its instance evaluated alone (``batch_size=1``, the
  per-example path), in order, over drawn specs of all four kinds and hand-made batches with every reward
  kind (constant and near-constant included), logit scales 0.1 to 50, three temperatures and ragged
  ``N``: exactly for the spec fields and flags, to round-off (``CHECK_BATCH_ATOL``, ``GAMMA_RTOL`` and
  their propagation to the bounds and ratios) for the numbers; a chunked check's rows equal the one
  pass's bit for bit (its units are whole batches of the same plan);
* :class:`~rftgrad.theory.batched.ReplicaEnvs` with :func:`~rftgrad.theory.batched.stack_replicas`: ``exact``'s
  mean and per-input gradients of every replica equal its instance's alone (padded inputs weigh 0), and
  bad batches are refused with :class:`ShapeMismatchError`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.executors import SerialExecutor
from rftgrad.theory import exact
from rftgrad.theory.batched import ReplicaEnvs, stack_replicas
from rftgrad.theory.bounds import BOUNDS, PAPER_CONSTANT
from rftgrad.theory.check import check_specs, plan_batches, run_check
from rftgrad.theory.instances import REWARD_KINDS, InstanceSpec, draw_specs, random_instance
from tests.tolerances import CHECK_BATCH_ATOL, GAMMA_RTOL

#: V, L per kind of the hand-made batches (the MLP serves L = 1 only).
SHAPES = {"tabular": (3, 3), "linear": (2, 4), "mlp": (5, 1), "transformer": (3, 2)}


def shaped_specs(kind: str) -> list[InstanceSpec]:
    """Ten specs of one shape: every reward kind, logit scales 0.1 / 1 / 50, temperatures 0.5 / 1 / 2, N of
    1-3 (tabular: 2, its table needs one N) and distinct seeds."""
    vocab, length = SHAPES[kind]
    return [
        InstanceSpec(
            kind=kind,
            vocab_size=vocab,
            length=length,
            num_inputs=2 if kind == "tabular" else 1 + index % 3,
            logit_scale=(0.1, 1.0, 50.0)[index % 3],
            reward_kind=REWARD_KINDS[index % len(REWARD_KINDS)],
            temperature=(0.5, 1.0, 2.0)[(index // 3) % 3],
            feature_map="input_prefix",
            seed=100 + index,
        )
        for index in range(10)
    ]


SPECS = draw_specs(160, seed=21) + [spec for kind in SHAPES for spec in shaped_specs(kind)]


def allowed_differences(reference: pd.DataFrame, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per float column, the round-off a row of ``rows`` may differ from ``reference`` by (see
    ``CHECK_BATCH_ATOL``). A ratio ``grad / bound`` gets the propagated ``(Δgrad + ratio·Δbound) / bound``
    of either side (the larger): where STD is round-off, one side's bound may fall below the rounding floor
    (ratio 0) and the other's not (ratio of two round-offs, also within that spread)."""
    gamma, length = reference["gamma"].to_numpy(), reference["length"].to_numpy()
    scaled = CHECK_BATCH_ATOL * (1 + length * gamma)  # round-off through a Jacobian of norm <= γ per position
    paper = PAPER_CONSTANT * length * gamma * CHECK_BATCH_ATOL ** (2 / 3)  # |a^⅔ - b^⅔| <= |a - b|^⅔
    atol = np.full(len(reference), CHECK_BATCH_ATOL)
    allowed = {
        **dict.fromkeys(["reward_mean", "reward_std", "logit_grad_norm", "logit_bound"], atol),
        **dict.fromkeys(["grad_norm", "sharpened_bound", "martingale_bound", "tight_bound"], scaled),
        "gamma": GAMMA_RTOL * gamma,
        "paper_bound": paper,
    }
    allowed = {key: value + GAMMA_RTOL * reference[key].abs().to_numpy() for key, value in allowed.items()}
    for name, (grad_key, bound_key) in BOUNDS.items():
        spreads = []
        for frame in (reference, rows):
            bound, value = frame[bound_key].to_numpy(), frame[f"ratio_{name}"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                spread = (allowed[grad_key] + np.abs(value) * allowed[bound_key]) / bound + GAMMA_RTOL * value
            spreads.append(np.where(np.isfinite(value) & (value > 0), spread, 0.0))
        allowed[f"ratio_{name}"] = np.maximum(*spreads)
    return allowed


def assert_rows_equal(rows: pd.DataFrame, reference: pd.DataFrame) -> float:
    """The rows agree (``seconds`` aside): exactly where they are not floats (and for infinite ratios), to
    ``allowed_differences`` where they are; returns the largest share of its allowance a difference used."""
    assert list(rows.columns) == list(reference.columns)
    assert (rows.dtypes == reference.dtypes).all()
    allowed = allowed_differences(reference, rows)
    worst = 0.0
    for key in reference.columns.drop("seconds"):
        got, want = rows[key].to_numpy(), reference[key].to_numpy()
        if key not in allowed:
            assert got.tolist() == want.tolist(), key
            continue
        same = got == want
        assert (same | (np.isfinite(got) & np.isfinite(want))).all(), key
        difference = np.abs(got - want)
        assert (same | (difference <= allowed[key])).all(), (key, difference.max())
        with np.errstate(divide="ignore", invalid="ignore"):
            worst = max(worst, float(np.nanmax(np.where(same, 0.0, difference / allowed[key]), initial=0.0)))
    return worst


@pytest.fixture(scope="module")
def alone() -> pd.DataFrame:
    """The per-example reference: every instance evaluated alone."""
    return check_specs(SPECS, progress=False, batch_size=1)


def test_the_specs_form_batches():
    batches = plan_batches(SPECS)
    assert max(len(b) for b in batches) >= 10 and len(batches) < 0.6 * len(SPECS)
    assert {SPECS[b[0]].kind for b in batches if len(b) > 1} == set(SHAPES)
    assert sorted(i for b in batches for i in b) == list(range(len(SPECS)))
    assert all(len(b) <= 4 for b in plan_batches(SPECS, batch_size=4))


def test_batched_rows_equal_the_instances_alone(alone):
    rows = check_specs(SPECS, progress=False)
    assert_rows_equal(rows, alone)
    assert (rows["seconds"] > 0).all()
    for batch in plan_batches(SPECS):  # seconds: the batch's time shared equally
        assert rows[rows["example"].isin(batch)]["seconds"].nunique() == 1


def test_chunked_and_small_batches_keep_the_rows(alone):
    """Units of work are whole batches of the one plan: a chunked check's rows are the one pass's bit for bit."""
    one_pass = check_specs(SPECS, progress=False)
    rows, _ = run_check(SPECS, progress=False, executor=SerialExecutor(), chunk_size=7)
    pd.testing.assert_frame_equal(rows.drop(columns="seconds"), one_pass.drop(columns="seconds"), check_exact=True)
    assert_rows_equal(check_specs(SPECS, progress=False, batch_size=3), alone)


def test_a_wrong_row_is_caught(alone):
    """The comparison can fail: one STD moved by 1e-9 is caught."""
    rows = check_specs(SPECS, progress=False)
    rows.loc[5, "reward_std"] += 1e-9
    with pytest.raises(AssertionError):
        assert_rows_equal(rows, alone)


@pytest.mark.parametrize("kind", ["linear", "mlp", "transformer", "tabular"])
def test_replica_envs_give_each_instance_its_own_gradients(kind):
    instances = [random_instance(spec) for spec in shaped_specs(kind)[:5]]
    envs = ReplicaEnvs([env for env, _ in instances])
    batched = exact(stack_replicas([policy for _, policy in instances]), envs, grads="full")
    for replica, (env, policy) in enumerate(instances):
        single = exact(policy, env, grads="full")
        count = env.num_inputs
        torch.testing.assert_close(batched.value[replica, :count], single.value[0], rtol=0, atol=CHECK_BATCH_ATOL)
        torch.testing.assert_close(batched.rewards[replica, :count], single.rewards, rtol=0, atol=0)
        for key, grad in single.mean_grad.items():  # padded inputs weigh 0: the mean over the instance's own
            torch.testing.assert_close(batched.mean_grad[key][replica], grad[0], rtol=0, atol=CHECK_BATCH_ATOL)
            torch.testing.assert_close(
                batched.grads[key][replica, :count], single.grads[key][0], rtol=0, atol=CHECK_BATCH_ATOL
            )


def test_stacking_keeps_layout_and_refuses_mixtures():
    specs = shaped_specs("tabular")[:3]
    policies = [random_instance(spec)[1] for spec in specs]
    stacked = stack_replicas(policies)
    assert stacked.params["logits"].stride() != stacked.params["logits"].contiguous().stride()  # state-major kept
    assert stacked.seeds == [p.seeds[0] for p in policies] and stacked.num_replicas == 3
    assert stacked.temperature.tolist() == [p.temperature.item() for p in policies]
    mlp = random_instance(shaped_specs("mlp")[0])
    with pytest.raises(ShapeMismatchError):
        stack_replicas([policies[0], mlp[1]])
    with pytest.raises(ShapeMismatchError):
        ReplicaEnvs([random_instance(specs[0])[0], mlp[0]])  # two output spaces
    ragged = InstanceSpec(kind="tabular", vocab_size=3, length=3, num_inputs=3, seed=1)
    env, policy = random_instance(ragged)
    with pytest.raises(ShapeMismatchError):  # a tabular table per input: one N
        exact(stack_replicas([policies[0], policy]), ReplicaEnvs([random_instance(specs[0])[0], env]))
    with pytest.raises(ShapeMismatchError):  # one environment per replica
        exact(stacked, ReplicaEnvs([env]))
    with pytest.raises(ConfigError):
        plan_batches(specs, batch_size=0)

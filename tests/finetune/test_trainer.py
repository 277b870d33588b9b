"""The batched trainer: replicas equal single runs, resume equals uninterrupted, SFT vs RFT
at p0 = 1e-4, regularised exact gradients, optimisers, records and groups."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from rftgrad.envs import BanditEnv, orthonormal, random_sequence_env
from rftgrad.errors import ConfigError
from rftgrad.finetune.config import ReplicaSettings, TrainConfig, parse_arm, replica_grid
from rftgrad.finetune.objectives import ExactRFT, StepBatch
from rftgrad.finetune.optim import SGD, Adam
from rftgrad.finetune.trainer import choose_inputs, train
from rftgrad.models import LinearSoftmaxPolicy, TabularPolicy


def linear_factory(env, features="input_prefix"):
    def make(settings: ReplicaSettings, device, dtype):
        return LinearSoftmaxPolicy.for_env(
            env, features=features, seed=list(settings.seeds), device=device, dtype=dtype,
            temperature=list(settings.temperature),
        )  # fmt: skip

    return make


def tabular_factory(env, p0=None):
    def make(settings: ReplicaSettings, device, dtype):
        policy = TabularPolicy.for_env(
            env, seed=list(settings.seeds), device=device, dtype=dtype, temperature=list(settings.temperature)
        )
        if p0 is not None:
            policy.set_output_probability(env, p0)
        return policy

    return make


SEQUENCE_ENV = random_sequence_env(num_prompts=5, vocab_size=3, length=2, reward="position_match", seed=3)


@pytest.mark.parametrize("estimator", ["grpo", "exact", "ppo"])
def test_replicas_equal_separate_single_runs(estimator):
    """Replica r of a batched run (seeds x learning rates) = a run with only its seed and lr (1e-6, float64)."""
    common = dict(
        arms=("sft:3@0.5+rft:5",), estimator=estimator, num_generations=3, ppo_epochs=2, batch_size=3,
        eval_every=2, optimizer="adam", entropy_coef=(0.01,), kl_coef=(0.05,),
    )  # fmt: skip
    batched = train(
        linear_factory(SEQUENCE_ENV),
        SEQUENCE_ENV,
        TrainConfig(**common, lr=(0.05, 0.2), seeds=2, seed=7),
        progress=False,
    )
    assert len(batched.replicas) == 4
    for row in batched.replicas.itertuples():
        single = train(
            linear_factory(SEQUENCE_ENV),
            SEQUENCE_ENV,
            TrainConfig(**common, lr=(row.lr,), seeds=1, seed=row.seed),
            progress=False,
        )
        mine = batched.records[batched.records["replica"] == row.replica].drop(columns="replica")
        theirs = single.records.drop(columns="replica")
        pd.testing.assert_frame_equal(
            mine.reset_index(drop=True), theirs.reset_index(drop=True), check_exact=False, atol=1e-6, rtol=0
        )
        for key, value in single.params[common["arms"][0]].items():
            assert torch.allclose(batched.params[common["arms"][0]][key][row.replica], value[0], atol=1e-6, rtol=0)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("estimator", ["dapo", "ppo", "exact"])
def test_interrupted_run_resumes_to_identical_numbers(tmp_path, estimator):
    config = TrainConfig(
        arms=("rft:7", "sft:2@0.5+rft:6"), estimator=estimator, num_generations=3, max_resample=2, ppo_epochs=2,
        batch_size=2, eval_every=2, checkpoint_every=3, seeds=2, optimizer="adam", entropy_coef=(0.0, 0.02),
    )  # fmt: skip
    make = linear_factory(SEQUENCE_ENV)
    reference = train(make, SEQUENCE_ENV, config, progress=False)

    def stop_after(calls):
        count = iter(range(calls - 1))

        def callback(step):
            if next(count, None) is None:
                raise Interrupt

        return callback

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(Interrupt):  # arm 0 stops at step 5, mid-phase, after its checkpoint at step 3
        train(make, SEQUENCE_ENV, config, checkpoint_dir=checkpoints, progress=False, callback=stop_after(5))
    with pytest.raises(Interrupt):  # resumes at 3, finishes arm 0 (4 steps), stops arm 1 at step 6 (checkpoint 3)
        train(make, SEQUENCE_ENV, config, checkpoint_dir=checkpoints, progress=False, callback=stop_after(10))
    assert sorted(p.name for p in checkpoints.iterdir()) == ["arm0.pt", "arm1.pt"]
    resumed = train(make, SEQUENCE_ENV, config, checkpoint_dir=checkpoints, progress=False)
    pd.testing.assert_frame_equal(resumed.records, reference.records, check_exact=True)
    for arm, params in reference.params.items():
        for key, value in params.items():
            assert torch.equal(resumed.params[arm][key], value)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    make = linear_factory(SEQUENCE_ENV)
    train(make, SEQUENCE_ENV, TrainConfig(arms=("rft:2",), seeds=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different config"):
        train(make, SEQUENCE_ENV, TrainConfig(arms=("rft:2",), seeds=1, lr=(0.5,)), checkpoint_dir=tmp_path)


def test_sft_raises_the_target_where_rft_stalls_at_p0_1e_4():
    """One input, K = 10 labels, p0 = 1e-4, plain gradient ascent (lr 1, 200 steps).

    RFT's logit gradient is 2p(e_y* - π), of size ~2p0 = 2e-4, so 200 steps move the target
    logit by ~0.04 (p grows by a factor ~e^0.04); SFT's is e_y* - π, of size ~1.
    """
    env = orthonormal(1, 10, seed=0)
    config = TrainConfig(arms=("rft:200", "sft:200"), optimizer="sgd", lr=(1.0,), seeds=1, eval_every=50)
    records = train(tabular_factory(env, p0=1e-4), env, config, progress=False).records
    target = records[(records["metric"] == "target_prob") & (records["group"] == "all")]
    start = target[target["step"] == 0].set_index("arm")["value"]
    end = target[target["step"] == 200].set_index("arm")["value"]
    assert start.to_numpy() == pytest.approx([1e-4, 1e-4], rel=1e-9)
    assert end["rft:200"] < 1.1e-4  # stalled: less than 10% up after 200 steps
    assert end["sft:200"] > 0.9  # fixed
    grad = records[(records["metric"] == "grad_norm") & (records["step"] == 0) & (records["arm"] == "rft:200")]
    # exact ||∇_z V|| = 2p ||e_y* - π|| with π = (p, (1-p)/9, ...): sqrt((1-p)² + 9((1-p)/9)²) ≈ 1.054
    p = 1e-4
    expected = 2 * p * math.sqrt((1 - p) ** 2 + 9 * ((1 - p) / 9) ** 2)
    assert grad[grad["group"] == "all"]["value"].iloc[0] == pytest.approx(expected, rel=1e-9)
    small = records[(records["group"] == "small_std") & (records["metric"] == "reward_mean")]
    assert len(small) > 0 and records[records["group"] == "large_std"].empty  # STD0 = 0.02 < 0.1


def test_regularised_exact_ascent_equals_autograd_of_the_enumerated_objective():
    """d = ∇ Σ_n w_n [E_y r + β H(p_θ) - κ KL(p_θ ‖ p_ref)], by the exact engine with shaped rewards
    vs autograd of the enumerated objective."""
    env = SEQUENCE_ENV
    policy = LinearSoftmaxPolicy.for_env(env, features="input_prefix", seed=[0, 1], dtype="float64")
    ref = {key: value.clone() for key, value in policy.params.items()}
    policy.params = {key: value + 0.3 * torch.randn_like(value) for key, value in policy.params.items()}
    beta = torch.tensor([0.0, 0.3], dtype=torch.float64)
    kappa = torch.tensor([0.5, 0.2], dtype=torch.float64)
    weights = torch.tensor([[0.5, 0.5, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.2, 0.2]], dtype=torch.float64)
    objective = ExactRFT(policy, env, TrainConfig(), beta, kappa, ref)
    ascent, metrics = objective.ascent(StepBatch(weights))

    outputs = env.output_space.enumerate()[None].expand(env.num_inputs, -1, -1)
    ids = torch.arange(env.num_inputs)
    x = policy.inputs_from(env)
    rewards = env.reward_table()
    params = {key: value.clone().requires_grad_(True) for key, value in policy.params.items()}
    logp = policy.log_prob(ids, x, outputs, params)  # (R, N, Y)
    ref_logp = policy.log_prob(ids, x, outputs, ref).detach()
    probs = logp.exp()
    per_input = (probs * (rewards - beta[:, None, None] * logp - kappa[:, None, None] * (logp - ref_logp))).sum(-1)
    grads = torch.autograd.grad((per_input * weights).sum(), list(params.values()))
    for key, grad in zip(params, grads, strict=True):
        assert torch.allclose(ascent[key], grad, atol=1e-12, rtol=0)
    assert torch.allclose(metrics["reward_mean"], ((probs * rewards).sum(-1) * weights).sum(-1).detach(), atol=1e-12)


def test_sgd_and_adam_steps_follow_their_formulas():
    lr = torch.tensor([0.1, 0.01], dtype=torch.float64)
    direction = {"w": torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=torch.float64)}
    params = {"w": torch.zeros(2, 2, dtype=torch.float64)}
    SGD(lr).step(params, direction)
    assert torch.allclose(params["w"], lr[:, None] * direction["w"], atol=1e-15)
    params = {"w": torch.zeros(2, 2, dtype=torch.float64)}
    adam = Adam(lr, eps=0.0)
    adam.step(params, direction)  # first step: m̂ = d, v̂ = d², so the step is lr · sign(d)
    assert torch.allclose(params["w"], lr[:, None] * direction["w"].sign(), atol=1e-15)
    adam.step(params, {"w": 2 * direction["w"]})
    m_hat = (0.9 * 0.1 * direction["w"] + 0.1 * 2 * direction["w"]) / (1 - 0.9**2)
    v_hat = (0.999 * 0.001 * direction["w"] ** 2 + 0.001 * 4 * direction["w"] ** 2) / (1 - 0.999**2)
    assert torch.allclose(params["w"], lr[:, None] * (direction["w"].sign() + m_hat / v_hat.sqrt()), atol=1e-12)


def test_replica_grid_runs_seeds_fastest_over_every_setting():
    grid = replica_grid(TrainConfig(lr=(0.1, 0.2), temperature=(1.0, 2.0), seeds=3, seed=5))
    assert grid.num_replicas == 12
    assert grid.seeds[:4] == (5, 6, 7, 5)
    assert grid.lr == (0.1,) * 6 + (0.2,) * 6 and grid.temperature[:6] == (1.0,) * 3 + (2.0,) * 3


def test_choose_inputs_draws_per_replica_among_eligible_inputs():
    eligible = torch.tensor([[True, True, False, True, True], [True, False, True, True, False]])
    chosen = choose_inputs(eligible, 2, [3, 4], (1, 0))
    assert chosen.sum(-1).tolist() == [2, 2] and not (chosen & ~eligible).any()
    assert torch.equal(chosen[0], choose_inputs(eligible[:1], 2, [3], (1, 0))[0])  # depends on its own seed only
    assert torch.equal(choose_inputs(eligible, 0, [3, 4], (1, 0)), eligible)


def test_records_hold_exact_metrics_per_group_and_split():
    env = BanditEnv([1.0, -1.0, -1.0])
    config = TrainConfig(arms=("rft:4",), estimator="rloo", num_generations=4, eval_every=2, seeds=3)
    result = train(tabular_factory(env, p0=0.25), env, config, progress=False)
    records = result.records
    assert set(records["split"]) == {"train", "batch"}
    start = records[(records["step"] == 0) & (records["group"] == "all") & (records["split"] == "train")]
    values = start.groupby("metric")["value"].first()
    # p = 0.25 on the +1 action: V = 2p - 1, STD = 2 sqrt(p(1-p)), the argmax is a wrong action
    assert values["reward_mean"] == pytest.approx(-0.5, abs=1e-12)
    assert values["reward_std"] == pytest.approx(2 * math.sqrt(0.25 * 0.75), abs=1e-12)
    assert values["accuracy"] == 0.0 and values["target_nll"] == pytest.approx(math.log(4), abs=1e-12)
    batch = records[records["split"] == "batch"]
    assert {"reward_mean", "reward_std", "frac_reward_zero_std", "grad_norm"} <= set(batch["metric"])
    assert batch["step"].min() == 2  # step metrics average the steps since the previous evaluation
    assert list(result.replicas.columns) == ["replica", "seed", "lr", "temperature", "entropy_coef", "kl_coef"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(lr=(-0.1,)), "lr must be finite and > 0"),
        (dict(arms=("sft:10@1.5",)), r"fraction must lie in \(0, 1\]"),
        (dict(arms=("rl:10",)), "bad phase"),
        (dict(estimator="grpo", num_generations=1), "num_generations must be >= 2"),
        (dict(estimator="vtrace"), "unknown estimator 'vtrace'"),
        (dict(optimizer="lion"), "unknown optimizer"),
        (dict(std_threshold=2.0), r"std_threshold must lie in \[0, 1\]"),
        (dict(batch_size=-1), "batch_size must be >= 0"),
    ],
)
def test_bad_trainer_values_raise_one_clear_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**overrides)


def test_parse_arm_reads_phases():
    phases = parse_arm("sft:20@0.01+rft:200")
    assert [(p.objective, p.steps, p.fraction) for p in phases] == [("sft", 20, 0.01), ("rft", 200, 1.0)]
    assert "+".join(p.label for p in phases) == "sft:20@0.01+rft:200"


@pytest.mark.parametrize("estimator", ["exact", "reinforce_baseline", "dapo", "ppo"])
def test_float32_runs_with_regularisers_give_finite_records_close_to_float64(estimator):
    """The float32 path (rewards, weights, regularisers cast to the policy's dtype) tracks float64."""
    common = dict(
        arms=("sft:2+rft:4",), estimator=estimator, num_generations=3, eval_every=2, seeds=2,
        entropy_coef=(0.05,), kl_coef=(0.1,), optimizer="sgd", lr=(0.1,),
    )  # fmt: skip
    low = train(linear_factory(SEQUENCE_ENV), SEQUENCE_ENV, TrainConfig(**common, dtype="float32"), progress=False)
    high = train(linear_factory(SEQUENCE_ENV), SEQUENCE_ENV, TrainConfig(**common, dtype="float64"), progress=False)
    assert low.records["value"].notna().all() and len(low.records) == len(high.records)
    exact_rows = low.records["split"] == "train"  # sampled draws may flip on float32 rounding; exact metrics may not
    if estimator == "exact":
        difference = (low.records["value"] - high.records["value"]).abs()
        assert float(difference.max()) < 1e-4
    else:
        start = low.records["step"] == 0
        difference = (low.records[exact_rows & start]["value"] - high.records[exact_rows & start]["value"]).abs()
        assert float(difference.max()) < 1e-5

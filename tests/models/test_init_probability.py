"""``set_output_probability``: start every input at a chosen probability of its target.

docs/paper.md §4 starts modified inputs at p(y*|x) ≈ 0 (STD ≈ 0); the toolkit sets
``p_θ(y*_n|x_n) = p0`` exactly by giving each target-path position probability
``q = p0^(1/L)`` on the target token and ``(1-q)/(V-1)`` on each other token. Tabular
policies write the logits; read-out policies solve for the read-out by least squares and
must refuse (InitializationError) when the read-out cannot fit the target-path states.
"""

from __future__ import annotations

import math

import pytest
import torch

from rftgrad.errors import ConfigError, InitializationError, ShapeMismatchError
from rftgrad.models import INIT_LOGPROB_TOLERANCE
from tests.models.builders import (
    cluster_env,
    digits_env,
    ids_of,
    make_policy,
    orthonormal_env,
    sequence_env,
)

#: case name -> (policy kind, environment builder, extra policy kwargs)
CASES = {
    "tabular-L1": ("tabular", lambda: orthonormal_env(5, 4), {}),
    "tabular-L3": ("tabular", sequence_env, {}),
    "linear-input-orthonormal": ("linear-input", orthonormal_env, {}),
    "linear-input_prefix-sequence": ("linear-input_prefix", sequence_env, {}),
    "mlp-digits50-hidden64": ("mlp", digits_env, {"hidden": (64,), "activation": "relu"}),
    "transformer-sequence": ("transformer", sequence_env, {"d_model": 16}),
}


def requested(kind_of_prob: str, num_inputs: int) -> torch.Tensor:
    """Target probabilities, ``(R=2, N)`` after broadcasting, in the form under test."""
    if kind_of_prob == "scalar":
        return torch.tensor(1e-6, dtype=torch.float64)
    if kind_of_prob == "per-input":  # (N,): from 1e-6 up to 0.5
        return torch.logspace(-6, math.log10(0.5), num_inputs, dtype=torch.float64)
    if kind_of_prob == "per-replica":  # (R, 1)
        return torch.tensor([[1e-6], [0.03]], dtype=torch.float64)
    return torch.logspace(-6, -1, 2 * num_inputs, dtype=torch.float64).reshape(2, num_inputs)  # (R, N)


def target_path_probs(policy, env, targets: torch.Tensor) -> torch.Tensor:
    """Next-token probabilities along each target path: ``(R, N, L, V)``."""
    logits = policy.sequence_logits(ids_of(env), policy.inputs_from(env), targets[:, None, :])[:, :, 0]
    return logits.softmax(-1)


def assert_initialised(policy, env, prob: torch.Tensor, targets: torch.Tensor, tol: float) -> None:
    """log p(y*) = log p0 within ``tol``; each position puts q on the target and equal shares elsewhere."""
    num_inputs, length = targets.shape
    vocab = policy.vocab_size
    p0 = prob.expand(policy.num_replicas, num_inputs)
    logp = policy.log_prob(ids_of(env), policy.inputs_from(env), targets[:, None, :])[..., 0].double()  # (R, N)
    assert float((logp - p0.log()).abs().max()) < tol
    q = p0 ** (1.0 / length)  # (R, N)
    expected = ((1 - q) / (vocab - 1))[..., None, None].expand(-1, -1, length, vocab).clone()
    expected.scatter_(-1, targets[None, :, :, None].expand(policy.num_replicas, -1, -1, 1),
                      q[..., None, None].expand(-1, -1, length, 1))
    # probabilities are log p with error < tol times p <= 1: the same tolerance bounds them
    torch.testing.assert_close(target_path_probs(policy, env, targets).double(), expected, rtol=0, atol=tol)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("kind_of_prob", ["scalar", "per-input", "per-replica", "per-replica-and-input"])
@pytest.mark.parametrize("case", list(CASES))
def test_target_gets_exactly_the_requested_probability(case: str, kind_of_prob: str, temperature: float) -> None:
    kind, build_env, extra = CASES[case]
    env = build_env()
    policy = make_policy(kind, env, seed=[0, 1], temperature=temperature, **extra)
    prob = requested(kind_of_prob, env.num_inputs)
    policy.set_output_probability(env, prob)
    assert_initialised(policy, env, prob, env.targets, INIT_LOGPROB_TOLERANCE[torch.float64])
    assert INIT_LOGPROB_TOLERANCE[torch.float64] == 1e-9
    # the temperature is kept, not reset to 1
    torch.testing.assert_close(policy.temperature, torch.full((2,), temperature, dtype=torch.float64))


@pytest.mark.parametrize("case", list(CASES))
def test_float32_meets_the_float32_tolerance(case: str) -> None:
    kind, build_env, extra = CASES[case]
    env = build_env()
    policy = make_policy(kind, env, seed=0, dtype="float32", temperature=2.0, **extra)
    policy.set_output_probability(env, 1e-6)
    assert all(value.dtype == torch.float32 for value in policy.params.values())
    logp = policy.log_prob(ids_of(env), policy.inputs_from(env), env.targets[:, None, :])[..., 0].double()
    assert float((logp - math.log(1e-6)).abs().max()) < INIT_LOGPROB_TOLERANCE[torch.float32]


@pytest.mark.parametrize("case", ["tabular-L3", "linear-input_prefix-sequence", "transformer-sequence"])
def test_explicit_targets_replace_the_env_targets(case: str) -> None:
    kind, build_env, extra = CASES[case]
    env = build_env()
    policy = make_policy(kind, env, seed=3, **extra)
    other = (env.targets + 1) % env.output_space.vocab_size
    prob = torch.tensor(1e-4, dtype=torch.float64)
    policy.set_output_probability(env, prob, targets=other)
    assert_initialised(policy, env, prob, other, 1e-9)


@pytest.mark.parametrize("case", ["linear-input-orthonormal", "mlp-digits50-hidden64", "transformer-sequence"])
def test_only_the_readout_changes(case: str) -> None:
    kind, build_env, extra = CASES[case]
    env = build_env()
    policy = make_policy(kind, env, seed=3, **extra)
    before = {key: value.clone() for key, value in policy.params.items()}
    policy.set_output_probability(env, 1e-3)
    readout = {key for key in policy.readout_keys if key is not None}
    for key, value in policy.params.items():
        assert value.shape == before[key].shape and value.dtype == before[key].dtype, key
        if key in readout:
            assert not torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("prob", [0.0, 1.0, 1.5, -0.1, math.nan])
def test_probability_outside_the_open_unit_interval_raises_config_error(prob: float) -> None:
    env = sequence_env()
    policy = make_policy("tabular", env)
    with pytest.raises(ConfigError, match=rf"target probability must lie strictly inside \(0, 1\), got {prob}"):
        policy.set_output_probability(env, prob)


def test_a_bad_entry_in_a_probability_tensor_raises_config_error() -> None:
    env = sequence_env()
    policy = make_policy("transformer", env)
    with pytest.raises(ConfigError, match=r"target probability must lie strictly inside \(0, 1\)"):
        policy.set_output_probability(env, torch.tensor([0.1, 0.2, 1.0, 0.3]))


def test_probability_of_the_wrong_shape_raises_shape_mismatch() -> None:
    env = sequence_env()
    policy = make_policy("tabular", env, num_replicas=2)
    with pytest.raises(ShapeMismatchError, match=r"prob of shape \(3,\) does not broadcast to \(R, N\)=\(2, 4\)"):
        policy.set_output_probability(env, torch.full((3,), 0.5))


def test_targets_of_the_wrong_length_raise_shape_mismatch() -> None:
    env = sequence_env()
    policy = make_policy("tabular", env)
    with pytest.raises(ShapeMismatchError, match=r"outputs have shape \(4, 2\), expected \(\.\.\., L=3\)"):
        policy.set_output_probability(env, 0.5, targets=env.targets[:, :2])
    with pytest.raises(ShapeMismatchError, match=r"output tokens must lie in \[0, V=3\), got range \[1, 3\]"):
        policy.set_output_probability(env, 0.5, targets=env.targets + 1)


INFEASIBLE = {
    # 20 inputs in R^2, no bias: the 20 target logit vectors cannot all be fitted
    "linear-input-gaussian-dim2": (
        "linear-input", lambda: cluster_env(num_classes=4, per_class=5, dim=2), {}, "linear"
    ),
    # phi = x at every position: one softmax must serve 3 positions with different targets
    "linear-input-L3": ("linear-input", sequence_env, {}, "linear"),
    # 2 hidden units + bias for 50 digits
    "mlp-hidden2": ("mlp", digits_env, {"hidden": (2,)}, "mlp"),
    # d_model 2 + bias for N·L = 12 target-path states
    "transformer-d2": ("transformer", sequence_env, {"d_model": 2, "num_heads": 1}, "transformer"),
}


@pytest.mark.parametrize("case", list(INFEASIBLE))
def test_infeasible_request_raises_initialization_error(case: str) -> None:
    kind, build_env, extra, name = INFEASIBLE[case]
    env = build_env()
    policy = make_policy(kind, env, seed=0, **extra)
    with pytest.raises(
        InitializationError,
        match=rf"{name} policy reached log p off by \S+ from the requested probability: "
        r"its read-out cannot separate the N·L = \d+ target-path states; leave the probability unset \(p0=0",
    ):
        policy.set_output_probability(env, 1e-6)

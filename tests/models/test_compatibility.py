"""Policy/environment compatibility: every mismatch is a ShapeMismatchError naming the fix."""

from __future__ import annotations

import pytest

from rftgrad.errors import ShapeMismatchError
from rftgrad.models import LinearSoftmaxPolicy, MLPPolicy, TabularPolicy, TinyTransformerPolicy
from tests.models.builders import KINDS, cluster_env, env_for, make_policy, sequence_env


@pytest.mark.parametrize("kind", KINDS)
def test_vocabulary_mismatch(kind: str) -> None:
    env = env_for(kind)  # V = 3
    other = cluster_env(num_classes=4) if kind == "mlp" else sequence_env(vocab_size=4)
    policy = make_policy(kind, env)
    match = rf"policy has V=3 output tokens but {other.name} has V=4; build the policy for this environment"
    with pytest.raises(ShapeMismatchError, match=match):
        policy.check_compatible(other)
    with pytest.raises(ShapeMismatchError, match=match):
        policy.inputs_from(other)
    with pytest.raises(ShapeMismatchError, match=match):
        policy.set_output_probability(other, 0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_env_longer_than_max_length(kind: str) -> None:
    longer = sequence_env(length=4)
    if kind == "mlp":  # the MLP serves L = 1 only; give it the sequence env's one-hot prompt features
        policy = MLPPolicy(longer.features.shape[1], 3, hidden=(4,))
        served = 1
    else:
        policy = make_policy(kind, sequence_env())
        served = 3
    with pytest.raises(
        ShapeMismatchError,
        match=rf"policy serves outputs up to L={served} but {longer.name} has L=4; "
        r"build the policy with max_length >= L",
    ):
        policy.check_compatible(longer)


@pytest.mark.parametrize(("cls", "name"), [(LinearSoftmaxPolicy, "linear"), (MLPPolicy, "MLP")])
def test_feature_dimension_mismatch(cls, name: str) -> None:
    env = cluster_env(dim=5)
    policy = cls.for_env(cluster_env(dim=7))
    with pytest.raises(
        ShapeMismatchError,
        match=rf"{name} policy expects D=7 features but {env.name} has D=5; use {cls.__name__}\.for_env\(env\)",
    ):
        policy.check_compatible(env)
    with pytest.raises(ShapeMismatchError, match=rf"{name} policy expects D=7 features"):
        policy.inputs_from(env)


def test_tabular_input_count_mismatch() -> None:
    env = sequence_env(num_prompts=4)
    policy = TabularPolicy.for_env(sequence_env(num_prompts=6))
    with pytest.raises(
        ShapeMismatchError,
        match=rf"tabular policy has logits for N=6 inputs but {env.name} has N=4; use TabularPolicy\.for_env\(env\)",
    ):
        policy.check_compatible(env)


def test_transformer_on_a_classification_env() -> None:
    env = cluster_env()  # V = 3, L = 1, no prompts
    policy = TinyTransformerPolicy(5, 2, 3, 1, d_model=8)
    with pytest.raises(
        ShapeMismatchError, match=rf"transformer policy reads prompts but {env.name} has none; use a sequence env"
    ):
        policy.check_compatible(env)
    with pytest.raises(ShapeMismatchError, match=r"the transformer policy reads prompts but .* has none"):
        TinyTransformerPolicy.for_env(env)


@pytest.mark.parametrize(
    ("env_kwargs", "found"),
    [
        ({"prompt_length": 3}, "length 3 over 5"),  # longer prompts
        ({"prompt_length": 1}, "length 1 over 5"),  # shorter prompts
        ({"prompt_vocab_size": 7}, "length 2 over 7"),  # prompt tokens the policy cannot embed
    ],
)
def test_transformer_prompt_mismatch(env_kwargs: dict, found: str) -> None:
    policy = make_policy("transformer", sequence_env())  # prompts of length 2 over 5 tokens
    env = sequence_env(**env_kwargs)
    with pytest.raises(
        ShapeMismatchError,
        match=rf"transformer expects prompts of length 2 over 5 tokens but {env.name} has {found}; "
        r"use TinyTransformerPolicy\.for_env\(env\)",
    ):
        policy.check_compatible(env)


def test_transformer_accepts_a_smaller_prompt_vocabulary() -> None:
    """Prompt tokens 0..3 embed fine in a policy built for 5 prompt tokens."""
    policy = make_policy("transformer", sequence_env())
    env = sequence_env(prompt_vocab_size=4)
    policy.check_compatible(env)
    assert policy.inputs_from(env).shape == (4, 2)


@pytest.mark.parametrize("kind", KINDS)
def test_matching_env_is_accepted(kind: str) -> None:
    env = env_for(kind)
    policy = make_policy(kind, env)
    policy.check_compatible(env)
    x = policy.inputs_from(env)
    assert x.shape[0] == env.num_inputs

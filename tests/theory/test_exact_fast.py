"""The exact engine's closed-form prefix tree (tabular and linear policies: ``closed_form=True``, the
default) against its generic ``torch.func`` path (``closed_form=False``), the reference: every field of
:func:`evaluate`, :func:`mean_gradient` (with input weights and a shaping ``reward_fn``) and
:func:`exact` (``grads="norm"`` and ``"full"``), float64, and the reuse of an :class:`ExactWorkspace`."""

from __future__ import annotations

import pytest
import torch

from rftgrad.envs import random_sequence_env
from rftgrad.models import FEATURE_MAPS, LinearSoftmaxPolicy, TabularPolicy, TinyTransformerPolicy
from rftgrad.theory import ExactWorkspace, evaluate, exact, mean_gradient, step_gradient
from tests.tolerances import CLOSED_FORM_ATOL

FIELDS = ("log_probs", "value", "std", "position_variance", "logit_grad_norm", "max_first_token_prob")
POLICIES = ["tabular", "tabular-longer"] + [f"linear-{features}" for features in FEATURE_MAPS]


def make_case(kind: str, vocab: int = 3, length: int = 3, replicas: int = 3, seed: int = 0):
    """An env with N = 4 inputs and a float64 policy with three replicas at different temperatures."""
    env = random_sequence_env(
        num_prompts=4, vocab_size=vocab, length=length, prompt_length=2, reward="random_network", seed=seed
    )
    common = dict(num_replicas=replicas, seed=seed, dtype="float64", temperature=[0.7, 1.0, 1.6][:replicas])
    if kind == "tabular":
        return env, TabularPolicy.for_env(env, init_scale=2.0, **common)
    if kind == "tabular-longer":  # the table holds more prefix states than the env's L needs
        return env, TabularPolicy(env.num_inputs, vocab, length + 1, init_scale=2.0, **common)
    return env, LinearSoftmaxPolicy.for_env(env, features=kind.split("-", 1)[1], init_scale=2.0, **common)


def assert_close(fast: torch.Tensor, reference: torch.Tensor) -> None:
    assert fast.shape == reference.shape
    torch.testing.assert_close(fast, reference, rtol=0.0, atol=CLOSED_FORM_ATOL)


def assert_equal(fast: torch.Tensor, reference: torch.Tensor) -> None:
    assert torch.equal(fast, reference)


def assert_params_close(fast: dict, reference: dict) -> None:
    assert fast.keys() == reference.keys()
    for key in fast:
        assert_close(fast[key], reference[key])


@pytest.mark.parametrize("kind", POLICIES)
def test_policies_have_a_closed_form_tree(kind):
    env, policy = make_case(kind)
    assert policy.closed_form_tree(policy.inputs_from(env), env.output_space) is not None


@pytest.mark.parametrize("kind", POLICIES)
@pytest.mark.parametrize("grads", ["norm", "full"])
def test_exact_matches_generic_path(kind, grads):
    env, policy = make_case(kind)
    fast, reference = (exact(policy, env, grads=grads, closed_form=flag) for flag in (True, False))
    for name in (*FIELDS, "grad_norm", "mean_grad_norm"):
        assert_close(getattr(fast, name), getattr(reference, name))
    assert_params_close(fast.mean_grad, reference.mean_grad)
    if grads == "full":
        assert_params_close(fast.grads, reference.grads)
    assert float(reference.grad_norm.min()) > 1e-3  # the instance has non-trivial gradients to compare


@pytest.mark.parametrize("kind", POLICIES)
def test_mean_gradient_with_weights_and_shaping_matches_generic_path(kind):
    env, policy = make_case(kind)
    weights = torch.rand(policy.num_replicas, env.num_inputs, generator=torch.Generator().manual_seed(1)).double()

    def shaped(log_probs: torch.Tensor) -> torch.Tensor:  # entropy-bonus shaping f = r - β log p
        return env.reward_table().double() - 0.3 * log_probs

    fast, reference = (
        mean_gradient(policy, env, input_weights=weights, reward_fn=shaped, closed_form=flag) for flag in (True, False)
    )
    for name in (*FIELDS, "mean_grad_norm"):
        assert_close(getattr(fast, name), getattr(reference, name))
    assert_params_close(fast.mean_grad, reference.mean_grad)
    plain = mean_gradient(policy, env, input_weights=weights)
    assert float((plain.logit_grad_norm - fast.logit_grad_norm).abs().max()) > 1e-3  # the shaping mattered


@pytest.mark.parametrize("kind", ["tabular", "linear-input_last_token"])
def test_evaluate_matches_generic_path(kind):
    env, policy = make_case(kind, vocab=4, length=2)
    fast, reference = (evaluate(policy, env, closed_form=flag) for flag in (True, False))
    for name in FIELDS:
        assert_close(getattr(fast, name), getattr(reference, name))


def test_a_reused_workspace_gives_the_same_numbers_as_fresh_buffers():
    env, policy = make_case("tabular")
    workspace = ExactWorkspace()
    first = mean_gradient(policy, env, workspace=workspace)
    first_grad = first.mean_grad["logits"].clone()
    shift = torch.randn(policy.params["logits"].shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    policy.params["logits"].add_(shift)  # the second call sees other parameters
    second = mean_gradient(policy, env, workspace=workspace)
    fresh = mean_gradient(policy, env)
    assert_params_close(second.mean_grad, fresh.mean_grad)
    for name in FIELDS:
        assert torch.equal(getattr(second, name), getattr(fresh, name))
    assert float((second.mean_grad["logits"] - first_grad).abs().max()) > 1e-3  # the step changed the gradient


def test_a_table_with_other_strides_gives_the_same_numbers():
    env, policy = make_case("tabular")
    state_major = exact(policy, env, grads="full")
    policy.params["logits"] = policy.params["logits"].contiguous()  # e.g. loaded from elsewhere
    assert policy.params["logits"].is_contiguous()
    contiguous = exact(policy, env, grads="full")
    for name in (*FIELDS, "grad_norm", "mean_grad_norm"):
        assert_close(getattr(state_major, name), getattr(contiguous, name))
    assert_params_close(state_major.mean_grad, contiguous.mean_grad)
    assert_params_close(state_major.grads, contiguous.grads)


def test_float32_step_matches_generic_path_to_float32_rounding():
    env, policy = make_case("tabular")
    policy.params["logits"] = policy.params["logits"].float()
    policy.dtype, policy.temperature = torch.float32, policy.temperature.float()
    fast, reference = (mean_gradient(policy, env, closed_form=flag) for flag in (True, False))
    scale = float(reference.mean_grad["logits"].abs().max())
    assert float((fast.mean_grad["logits"] - reference.mean_grad["logits"]).abs().max()) <= 1e-6 * max(scale, 1.0)


def shaping(log_probs: torch.Tensor) -> torch.Tensor:
    """An entropy-bonus shaping ``f = -0.3 log p`` (reads the log-probabilities)."""
    return -0.3 * log_probs


@pytest.mark.parametrize("kind", [*POLICIES, "transformer"])
@pytest.mark.parametrize("shaped", [False, True])
@pytest.mark.parametrize("closed_form", [True, False])
def test_step_gradient_is_mean_gradient_without_the_unread_fields(kind, shaped, closed_form):
    """step_gradient (what ExactRFT calls) skips log-probabilities and logit-space norms, nothing else:
    its fields equal mean_gradient's bit for bit when it runs the same sweep (the generic path, or a shaping
    that reads log p), and to CLOSED_FORM_ATOL when a closed-form tree takes its own fused step."""
    if kind == "transformer":
        env = random_sequence_env(num_prompts=3, vocab_size=3, length=3, prompt_length=2, reward="random_network")
        policy = TinyTransformerPolicy.for_env(
            env, d_model=8, num_heads=2, num_layers=1, num_replicas=2, dtype="float64"
        )
    else:
        env, policy = make_case(kind)
    weights = torch.rand(
        policy.num_replicas, env.num_inputs, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    kwargs = dict(input_weights=weights, reward_fn=shaping if shaped else None, closed_form=closed_form)
    step, full = step_gradient(policy, env, **kwargs), mean_gradient(policy, env, **kwargs)
    fused = closed_form and not shaped and kind != "transformer"
    same = assert_close if fused else assert_equal
    for name in ("value", "std", "position_variance", "mean_grad_norm"):
        same(getattr(step, name), getattr(full, name))
    assert step.mean_grad.keys() == full.mean_grad.keys()
    for key in step.mean_grad:
        same(step.mean_grad[key], full.mean_grad[key])
    assert float(full.mean_grad_norm.min()) > 1e-6  # a gradient worth comparing

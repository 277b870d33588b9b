"""The closed-form exact-RFT step (``step_gradient`` on a tabular or linear policy, no shaping) against the
generic ``torch.func`` path (``closed_form=False``, the reference), float64 to CLOSED_FORM_ATOL, on the
instances that reach each of its branches: the token sweep over the whole tree and over groups of levels,
vocabularies and lengths from one to eight tokens and one to three positions, logits large
enough to need the max shift (and logits moved out of the safe range, against the unmoved step), a vocabulary
too large for token slices, one temperature for every replica (a scalar factor) or one each, minibatch weights
with zeros; a workspace reused across parameter, environment and layout changes; the SGD step, ``θ + lr·d``
rounded once and each replica bit for bit its own run; and the trainer's
evaluation metrics (the most likely output found without torch's argmax)."""

from __future__ import annotations

import pytest
import torch

from rftgrad.envs import random_sequence_env
from rftgrad.finetune import per_input_metrics
from rftgrad.finetune.optim import SGD
from rftgrad.models import LinearSoftmaxPolicy, TabularPolicy
from rftgrad.theory import ExactWorkspace, evaluate, step_gradient
from tests.tolerances import ATOL, CLOSED_FORM_ATOL

FIELDS = ("value", "std", "position_variance", "mean_grad_norm")


def assert_step_close(fast, reference, atol: float = CLOSED_FORM_ATOL) -> None:
    for name in FIELDS:
        torch.testing.assert_close(getattr(fast, name), getattr(reference, name), rtol=0.0, atol=atol)
    assert fast.mean_grad.keys() == reference.mean_grad.keys()
    for key in fast.mean_grad:
        torch.testing.assert_close(fast.mean_grad[key], reference.mean_grad[key], rtol=0.0, atol=atol)


def weights_with_zeros(replicas: int, inputs: int) -> torch.Tensor:
    """Minibatch-like weights ``(R, N)``: random, a third of them zero."""
    gen = torch.Generator().manual_seed(5)
    weights = torch.rand(replicas, inputs, generator=gen, dtype=torch.float64)
    return weights * (torch.rand(replicas, inputs, generator=gen) > 1 / 3)


@pytest.mark.parametrize("temperature", [1.0, [0.6, 1.0, 1.7, 2.5] * 6])
@pytest.mark.parametrize("kind", ["tabular", "linear"])
def test_the_token_sweep_over_the_whole_tree_matches_the_generic_path(kind, temperature):
    """V = 4, L = 3, R·N = 2400 lanes: one token's slice of the tree takes 21 · 2400 · 8 B = 403 KB in float64,
    under the 2 MiB of a sweep group, so every level is formed together."""
    env = random_sequence_env(num_prompts=100, vocab_size=4, length=3, reward="random_network", seed=1)
    common = dict(num_replicas=24, seed=2, dtype="float64", temperature=temperature, init_scale=2.0)
    if kind == "tabular":
        policy = TabularPolicy.for_env(env, **common)
    else:
        policy = LinearSoftmaxPolicy.for_env(env, features="input_last_token", **common)
    weights = weights_with_zeros(24, env.num_inputs)
    fast = step_gradient(policy, env, input_weights=weights)
    reference = step_gradient(policy, env, input_weights=weights, closed_form=False)
    assert_step_close(fast, reference)
    assert float(reference.mean_grad_norm.min()) > 1e-4  # gradients worth comparing
    assert float(reference.position_variance.min()) >= 0.0


@pytest.mark.parametrize("kind", ["tabular", "linear"])
@pytest.mark.parametrize(
    ("vocab", "length", "replicas", "inputs"),
    [
        (4, 4, 8, 500),  # 32 KB per state: levels 0-2 (21 states, 672 KB) together, level 3 (64 states) alone
        (3, 4, 20, 500),  # 80 KB per state: levels 0-2 (13 states, 1.04 MB) together, level 3 (27 states) alone
    ],
)
def test_the_token_sweep_in_groups_of_levels_matches_the_generic_path(kind, vocab, length, replicas, inputs):
    """Trees whose token slices pass the 2 MiB of a sweep group (float64): a group of the levels with children
    in the tree, and the last level, whose children are the reward leaves, on its own."""
    env = random_sequence_env(num_prompts=inputs, vocab_size=vocab, length=length, reward="random_network", seed=3)
    common = dict(num_replicas=replicas, seed=1, dtype="float64", temperature=[0.7 + 0.2 * r for r in range(replicas)])
    if kind == "tabular":
        policy = TabularPolicy.for_env(env, init_scale=2.0, **common)
    else:
        policy = LinearSoftmaxPolicy.for_env(env, features="input_last_token", init_scale=2.0, **common)
    weights = weights_with_zeros(replicas, env.num_inputs)
    fast = step_gradient(policy, env, input_weights=weights)
    reference = step_gradient(policy, env, input_weights=weights, closed_form=False)
    assert_step_close(fast, reference)
    assert float(reference.mean_grad_norm.min()) > 1e-4


@pytest.mark.parametrize("kind", ["tabular", "linear"])
@pytest.mark.parametrize(("vocab", "length"), [(2, 1), (2, 3), (3, 2), (8, 1), (8, 2), (9, 2), (12, 1)])
def test_every_vocabulary_and_length_matches_the_generic_path(kind, vocab, length):
    """The token sweep (2 <= V <= 8; L = 1: the root is the last level, no prefix has children in the tree) and
    the level-by-level sweep (V > 8), tabular and linear, one temperature per replica."""
    env = random_sequence_env(
        num_prompts=7, vocab_size=vocab, length=length, reward="random_network", seed=vocab + length
    )
    common = dict(num_replicas=3, seed=1, dtype="float64", temperature=[0.7, 1.0, 1.9], init_scale=2.0)
    if kind == "tabular":
        policy = TabularPolicy.for_env(env, **common)
    else:
        policy = LinearSoftmaxPolicy.for_env(env, features="input_last_token", **common)
    weights = weights_with_zeros(3, env.num_inputs)
    for input_weights in (None, weights):
        fast = step_gradient(policy, env, input_weights=input_weights)
        assert_step_close(fast, step_gradient(policy, env, input_weights=input_weights, closed_form=False))


def test_logits_past_the_safe_range_take_the_max_shift():
    """Logits of ±1000 (e^1000 overflows float64): the step shifts by max_a z_u(a) and still matches."""
    env = random_sequence_env(num_prompts=5, vocab_size=3, length=3, reward="random_network", seed=0)
    policy = TabularPolicy.for_env(env, num_replicas=3, seed=0, dtype="float64", temperature=[0.7, 1.0, 1.6])
    policy.params["logits"].mul_(500.0)
    fast, reference = (step_gradient(policy, env, closed_form=flag) for flag in (True, False))
    assert_step_close(fast, reference)
    assert torch.isfinite(fast.std).all()


@pytest.mark.parametrize(
    ("dtype", "offset", "atol"),
    [("float64", -200.0, 1e-12), ("float64", 200.0, 1e-12), ("float32", -30.0, 2e-6), ("float32", 30.0, 2e-6),
     ("float32", -100.0, 2e-6)],
)  # fmt: skip
def test_logits_moved_out_of_the_safe_range_give_the_same_step(dtype, offset, atol):
    """A softmax is unchanged when every logit of a state moves by the same amount: logits moved by ``offset``
    put the normalisers past 2^±31 (float32) or 2^±255 (float64), where the step shifts by the max (at -100 in
    float32 e^z is 0 and only the shift gives numbers), and give the unmoved step's V, STD and gradient
    (float32: a few ulps of numbers of order 1)."""
    env = random_sequence_env(num_prompts=6, vocab_size=4, length=3, reward="random_network", seed=4)
    policy = TabularPolicy.for_env(env, num_replicas=3, seed=2, dtype=dtype, init_scale=1.0)
    inside = step_gradient(policy, env)
    inside = {"value": inside.value.clone(), "std": inside.std.clone(), "grad": inside.mean_grad["logits"].clone()}
    policy.params["logits"].add_(offset)
    moved = step_gradient(policy, env)
    for name, value in (("value", moved.value), ("std", moved.std), ("grad", moved.mean_grad["logits"])):
        assert torch.allclose(value, inside[name], atol=atol, rtol=0), name


def test_a_vocabulary_too_large_for_token_slices_matches_the_generic_path():
    env = random_sequence_env(num_prompts=4, vocab_size=9, length=2, reward="random_network", seed=3)
    policy = TabularPolicy.for_env(env, num_replicas=2, seed=1, dtype="float64", init_scale=2.0)
    weights = weights_with_zeros(2, env.num_inputs)
    fast = step_gradient(policy, env, input_weights=weights)
    reference = step_gradient(policy, env, input_weights=weights, closed_form=False)
    assert_step_close(fast, reference)


def test_float32_step_matches_the_float64_reference_to_float32_rounding():
    env = random_sequence_env(num_prompts=100, vocab_size=4, length=3, reward="exact_match", seed=0)
    policy = TabularPolicy.for_env(env, num_replicas=8, seed=0, dtype="float64", init_scale=2.0)
    reference = step_gradient(policy, env, closed_form=False)
    policy.params["logits"] = policy.params["logits"].float()
    policy.dtype, policy.temperature = torch.float32, policy.temperature.float()
    fast = step_gradient(policy, env)
    for name in FIELDS:
        torch.testing.assert_close(
            getattr(fast, name).double(), getattr(reference, name), rtol=0.0, atol=ATOL[torch.float32]
        )
    torch.testing.assert_close(
        fast.mean_grad["logits"].double(), reference.mean_grad["logits"], rtol=0.0, atol=ATOL[torch.float32]
    )


def test_a_reused_workspace_follows_parameter_environment_and_layout_changes():
    first_env = random_sequence_env(num_prompts=6, vocab_size=3, length=2, reward="random_network", seed=4)
    second_env = random_sequence_env(num_prompts=6, vocab_size=3, length=2, reward="position_match", seed=5)
    policy = LinearSoftmaxPolicy.for_env(first_env, features="input_prefix", num_replicas=2, dtype="float64")
    workspace = ExactWorkspace()
    for env in (first_env, second_env, first_env):  # the cached tree and reward leaves must follow the env
        reused = step_gradient(policy, env, workspace=workspace)
        assert_step_close(reused, step_gradient(policy, env, closed_form=False))
    table_env = first_env
    tabular = TabularPolicy.for_env(table_env, num_replicas=2, dtype="float64", init_scale=2.0)
    step_gradient(tabular, table_env, workspace=workspace)
    tabular.params["logits"].add_(1.5 * torch.randn(tabular.params["logits"].shape, dtype=torch.float64))
    tabular.params["logits"] = tabular.params["logits"].contiguous()  # another layout, same numbers
    assert_step_close(
        step_gradient(tabular, table_env, workspace=workspace), step_gradient(tabular, table_env, closed_form=False)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sgd_step_rounds_once_and_each_replica_equals_its_own_run(dtype):
    """θ + lr·d rounded once (to half an ulp of the exact value), on a state-major table; replica r of a step with
    per-replica rates equals, bit for bit, a step with one rate on that replica alone (and on all replicas)."""
    shape = (8, 100, 85, 4)  # (R, N, S, V): 272,000 numbers
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype).permute(2, 3, 0, 1).contiguous()
    start = table.permute(2, 3, 0, 1)  # state-major, as TabularPolicy stores it
    direction = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    direction = direction.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)
    rates = torch.linspace(0.05, 0.4, 8, dtype=dtype)
    params = {"logits": start.clone(memory_format=torch.preserve_format)}
    SGD(rates).step(params, {"logits": direction})
    # the exact θ + lr·d: in float64, the product of two float32 numbers is exact and the sum within 2^-53
    # relative, so a float32 result rounded once lies within half an ulp (<= eps·|x| / 2); float64 numbers have
    # no wider type here, so their bound adds the reference's own rounding (eps·(|x| + |lr·d|) covers both)
    step = rates.double()[:, None, None, None] * direction.double()
    exact = start.double() + step
    eps = torch.finfo(dtype).eps
    if dtype == torch.float32:
        bound = 0.5 * eps * exact.abs() * (1 + 2**-20) + torch.finfo(dtype).tiny
    else:
        bound = eps * (exact.abs() + step.abs()) + torch.finfo(dtype).tiny
    assert bool(((params["logits"].double() - exact).abs() <= bound).all())
    for replica in (0, 5):
        alone = {"logits": start[replica : replica + 1].clone()}
        SGD(rates[replica : replica + 1]).step(alone, {"logits": direction[replica : replica + 1]})
        assert torch.equal(alone["logits"][0], params["logits"][replica])
    uniform = {"logits": start.clone(memory_format=torch.preserve_format)}
    optimizer = SGD(torch.full((8,), float(rates[5]), dtype=dtype))
    optimizer.step(uniform, {"logits": direction})
    assert torch.equal(uniform["logits"][5], params["logits"][5])
    first = uniform["logits"][5:6].clone()
    optimizer.step(uniform, {"logits": direction})  # the rate's check is kept from the first step
    SGD(rates[5:6]).step({"logits": first}, {"logits": direction[5:6]})
    assert torch.equal(uniform["logits"][5], first[0])


@pytest.mark.parametrize("init_scale", [0.0, 2.0])  # 0: a uniform policy, every output tied for most likely
def test_evaluation_metrics_pick_the_first_most_likely_output(init_scale):
    """per_input_metrics' most likely output is log_probs.argmax(-1) (the first of equal maxima), with its
    buffers kept in a workspace across calls, and target_nll is -log p(target)."""
    env = random_sequence_env(num_prompts=20, vocab_size=3, length=3, reward="position_match", seed=2)
    policy = TabularPolicy.for_env(env, num_replicas=4, seed=3, dtype="float64", init_scale=init_scale)
    workspace = ExactWorkspace()
    for _ in range(2):
        metrics = per_input_metrics(policy, env, False, workspace=workspace)
        reference = evaluate(policy, env)
        best = reference.log_probs.argmax(-1)  # (R, N)
        rewards = reference.rewards
        best_reward = rewards.gather(1, best.T).T
        expected = (best_reward >= rewards.max(-1).values - 1e-12).double()
        assert torch.equal(metrics["accuracy"], expected)
        target = reference.log_probs[:, torch.arange(env.num_inputs), env.target_index()]
        assert torch.equal(metrics["target_nll"], -target)
        policy.params["logits"].add_(1.0)  # a second call on other parameters (the same softmax: same ties)

"""The exact engine against independent computations: Python loops, autograd of the
enumerated objective, Monte Carlo REINFORCE, and the identities of docs/paper.md §2."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from rftgrad.envs import BanditEnv, digits, orthonormal, random_sequence_env
from rftgrad.errors import ConfigError, EnumerationLimitError
from rftgrad.models import LinearSoftmaxPolicy, MLPPolicy, TabularPolicy, TinyTransformerPolicy
from rftgrad.theory import (
    Evaluation,
    ExactResult,
    MeanGradResult,
    evaluate,
    exact,
    gamma,
    mean_gradient,
    params_norm,
    reinforce_gradient,
)
from tests.tolerances import ATOL


def sequence_case(kind: str, reward: str = "random_network", num_replicas: int = 2, seed: int = 0, **policy_kw):
    """A small sequence environment (N=3, V=3, L=3) and a float64 policy of the given kind."""
    env = random_sequence_env(
        num_prompts=3, vocab_size=3, length=3, prompt_length=2, prompt_vocab_size=4, reward=reward, seed=seed
    )
    common = dict(num_replicas=num_replicas, seed=seed, dtype="float64", **policy_kw)
    if kind == "tabular":
        return env, TabularPolicy.for_env(env, **common)
    if kind == "linear":
        return env, LinearSoftmaxPolicy.for_env(env, features="input_last_token", **common)
    if kind == "transformer":
        return env, TinyTransformerPolicy.for_env(env, d_model=8, num_layers=1, **common)
    assert kind == "mlp"
    env = digits(seed=seed).train.subset(torch.arange(6))
    return env, MLPPolicy.for_env(env, hidden=(8,), **common)


KINDS = ["tabular", "linear", "transformer", "mlp"]


def autograd_values(policy, env, params):
    """V(x_n; θ) for all replicas and inputs from log-probs of every enumerated output: (R, N)."""
    outputs = env.output_space.enumerate()[None].expand(env.num_inputs, -1, -1)
    log_probs = policy.log_prob(torch.arange(env.num_inputs), policy.inputs_from(env), outputs, params)
    return (log_probs.exp() * env.reward_table()).sum(-1)


def leaf_params(policy):
    return {k: v.detach().clone().requires_grad_(True) for k, v in policy.params.items()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["tree", "flat"])
def test_gradient_equals_autograd_of_enumerated_objective(kind, method):
    env, policy = sequence_case(kind)
    result = exact(policy, env, grads="full", method=method)
    params = leaf_params(policy)
    values = autograd_values(policy, env, params)  # (R, N)
    assert torch.allclose(result.value, values.detach(), atol=ATOL[torch.float64], rtol=0)
    mean_grads = torch.autograd.grad(values.mean(1).sum(), list(params.values()), retain_graph=True)
    for key, expected in zip(params, mean_grads, strict=True):
        assert torch.allclose(result.mean_grad[key], expected, atol=ATOL[torch.float64], rtol=0), key
    for n in range(env.num_inputs):
        per_input = torch.autograd.grad(values[:, n].sum(), list(params.values()), retain_graph=True)
        for key, expected in zip(params, per_input, strict=True):
            assert torch.allclose(result.grads[key][:, n], expected, atol=ATOL[torch.float64], rtol=0), (key, n)
    norms = params_norm({k: g for k, g in result.grads.items()}, 2)
    assert torch.allclose(result.grad_norm, norms, atol=ATOL[torch.float64], rtol=0)


@pytest.mark.parametrize("kind", ["tabular", "transformer"])
def test_engine_matches_python_loops(kind):
    """Every quantity recomputed output by output and position by position in plain loops."""
    env, policy = sequence_case(kind, num_replicas=1)
    result = exact(policy, env, grads="full")
    space, x = env.output_space, policy.inputs_from(env)
    params0 = {k: v[0] for k, v in policy.params.items()}
    for n in range(env.num_inputs):
        probs, grads_logp = [], []
        for y in itertools.product(range(space.vocab_size), repeat=space.length):
            leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params0.items()}
            log_p = torch.zeros((), dtype=torch.float64)
            for pos in range(space.length):
                prefix = torch.tensor([[list(y[:pos])]], dtype=torch.long).reshape(1, 1, pos)
                logits = policy.replica_prefix_logits(leaves, torch.tensor([n]), x[n : n + 1], prefix)[0, 0]
                log_p = log_p + torch.log_softmax(logits, -1)[y[pos]]
            grads_logp.append(torch.autograd.grad(log_p, list(leaves.values())))
            probs.append(log_p.exp().item())
        rewards = env.reward_table()[n].tolist()
        value = sum(p * r for p, r in zip(probs, rewards, strict=True))
        variance = sum(p * (r - value) ** 2 for p, r in zip(probs, rewards, strict=True))
        assert result.value[0, n].item() == pytest.approx(value, abs=ATOL[torch.float64])
        assert result.std[0, n].item() == pytest.approx(math.sqrt(variance), abs=ATOL[torch.float64])
        # ∇V = Σ_y p(y) (r(y) - V) ∇ log p(y)
        for k, key in enumerate(params0):
            expected = sum(p * (r - value) * g[k] for p, r, g in zip(probs, rewards, grads_logp, strict=True))
            assert torch.allclose(result.grads[key][0, n], expected, atol=ATOL[torch.float64], rtol=0)
        # martingale terms: Var_l = Σ_{u, |u|=l-1} P(u) Σ_a π(a|u) (Q(ua) - Q(u))², from block sums of p and p·r
        for level in range(space.length):
            block = space.vocab_size ** (space.length - level - 1)
            child_mass = [sum(probs[i : i + block]) for i in range(0, len(probs), block)]
            child_q = [
                sum(p * r for p, r in zip(probs[i : i + block], rewards[i : i + block], strict=True)) / m
                for i, m in zip(range(0, len(probs), block), child_mass, strict=True)
            ]
            var_l = 0.0
            for u in range(space.vocab_size**level):
                kids = range(u * space.vocab_size, (u + 1) * space.vocab_size)
                mass = sum(child_mass[c] for c in kids)
                q_u = sum(child_mass[c] * child_q[c] for c in kids) / mass
                var_l += sum(child_mass[c] * (child_q[c] - q_u) ** 2 for c in kids)
            assert result.position_variance[0, n, level].item() == pytest.approx(var_l, abs=ATOL[torch.float64])


def test_single_token_tabular_gradient_is_p_times_advantage():
    """L = 1, tabular: ∇_z V = p ⊙ (r - V) in logit space (docs/paper.md §2), divided by T."""
    env = BanditEnv([1.0, -0.5, 0.2, -1.0])
    policy = TabularPolicy.for_env(env, num_replicas=3, dtype="float64", temperature=[1.0, 0.5, 2.0])
    result = exact(policy, env, grads="full")
    probs = result.probs[:, 0]  # (R, K)
    expected = probs * (env.reward_table()[0] - result.value[:, :1]) / policy.temperature[:, None]
    assert torch.allclose(result.grads["logits"][:, 0, 0, 0], expected, atol=ATOL[torch.float64], rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_martingale_variances_sum_to_reward_variance(kind):
    env, policy = sequence_case(kind, reward="position_match")
    result = exact(policy, env)
    assert (result.position_variance >= 0).all()
    assert torch.allclose(result.position_variance.sum(-1), result.std**2, atol=ATOL[torch.float64], rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_std_gives_zero_gradient(kind):
    env, policy = sequence_case(kind)
    env = env.with_rewards(torch.full((env.num_inputs, env.output_space.num_outputs), 0.3, dtype=torch.float64))
    result = exact(policy, env)
    assert torch.allclose(result.std, torch.zeros_like(result.std), atol=1e-15)
    assert float(result.grad_norm.max()) <= 1e-15
    assert float(result.mean_grad_norm.max()) <= 1e-15


@pytest.mark.parametrize("kind", ["tabular", "transformer"])
def test_constant_shift_of_reward_leaves_gradient_unchanged(kind):
    """Baselines do not change the expected gradient: r -> r + c (kept in [-1, 1])."""
    env, policy = sequence_case(kind)
    table = (env.reward_table() * 0.5).clone()  # in [-0.5, 0.5]
    shifted = [env.with_rewards(table + c) for c in (0.0, 0.4, -0.5)]
    results = [exact(policy, e, grads="full") for e in shifted]
    for other in results[1:]:
        for key in results[0].grads:
            assert torch.allclose(other.grads[key], results[0].grads[key], atol=ATOL[torch.float64], rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_replicas_equal_separate_runs(kind):
    env, batched = sequence_case(kind, num_replicas=3, seed=11)
    together = exact(batched, env, grads="full")
    for r in range(3):
        _, single = sequence_case(kind, num_replicas=1, seed=11 + r)
        alone = exact(single, env, grads="full")
        assert torch.allclose(together.value[r], alone.value[0], atol=ATOL[torch.float64], rtol=0)
        assert torch.allclose(together.std[r], alone.std[0], atol=ATOL[torch.float64], rtol=0)
        assert torch.allclose(together.grad_norm[r], alone.grad_norm[0], atol=ATOL[torch.float64], rtol=0)
        for key in together.mean_grad:
            assert torch.allclose(together.mean_grad[key][r], alone.mean_grad[key][0], atol=ATOL[torch.float64], rtol=0)


def test_per_input_chunking_does_not_change_results():
    env, policy = sequence_case("linear")
    whole = exact(policy, env, input_chunk=64)
    pieces = exact(policy, env, input_chunk=1)
    assert torch.allclose(whole.grad_norm, pieces.grad_norm, atol=ATOL[torch.float64], rtol=0)


FORWARD_FIELDS = (
    "log_probs", "rewards", "value", "std", "position_variance", "logit_grad_norm", "max_first_token_prob"
)


@pytest.mark.parametrize("kind", ["transformer", "mlp", "tabular"])
def test_evaluate_mean_gradient_and_exact_agree_bit_for_bit(kind):
    """evaluate (no autograd), mean_gradient (one VJP) and exact share every forward field exactly,
    and mean_gradient's mean_grad is exact's."""
    env, policy = sequence_case(kind)
    forward = evaluate(policy, env)
    mean = mean_gradient(policy, env)
    full = exact(policy, env)
    assert type(forward) is Evaluation and type(mean) is MeanGradResult and type(full) is ExactResult
    for name in FORWARD_FIELDS:
        assert torch.equal(getattr(forward, name), getattr(full, name)), name
        assert torch.equal(getattr(mean, name), getattr(full, name)), name
    assert torch.equal(forward.probs, full.probs)
    for key in full.mean_grad:
        assert torch.equal(mean.mean_grad[key], full.mean_grad[key]), key
    assert torch.equal(mean.mean_grad_norm, full.mean_grad_norm)


def test_no_result_field_is_none_and_grads_raise_unless_kept():
    """Every dataclass field of every result is a tensor or a dict of tensors; per-input gradients
    are kept only with grads="full" and reading them otherwise raises a clear error."""
    env, policy = sequence_case("linear")
    results = (evaluate(policy, env), mean_gradient(policy, env), exact(policy, env), exact(policy, env, grads="full"))
    for result in results:
        for item in dataclasses.fields(result):
            if item.name != "_grads":
                assert getattr(result, item.name) is not None, (type(result).__name__, item.name)
    norm_only = exact(policy, env)
    assert not norm_only.has_grads
    with pytest.raises(ConfigError, match="grads='full'"):
        _ = norm_only.grads
    kept = exact(policy, env, grads="full")
    assert kept.has_grads and set(kept.grads) == set(policy.params)
    assert torch.equal(kept.grad_norm, norm_only.grad_norm)
    assert not hasattr(evaluate(policy, env), "mean_grad") and not hasattr(mean_gradient(policy, env), "grad_norm")
    assert "grad_norm" not in evaluate(policy, env).to_frame()
    assert list(norm_only.to_frame(gamma(policy, env)).columns[:6]) == [
        "replica", "input", "reward_mean", "reward_std", "grad_norm", "gamma"
    ]


def test_old_flags_and_unknown_modes_are_refused():
    env, policy = sequence_case("tabular")
    for flag in ("per_input", "keep_grads", "gradient"):
        with pytest.raises(TypeError, match=flag):
            exact(policy, env, **{flag: False})
    with pytest.raises(ConfigError, match="unknown grads='mean'"):
        exact(policy, env, grads="mean")
    with pytest.raises(ConfigError, match="input_chunk"):
        exact(policy, env, input_chunk=0)


def test_float32_agrees_with_float64():
    env, policy64 = sequence_case("transformer")
    policy32 = TinyTransformerPolicy.for_env(env, d_model=8, num_layers=1, num_replicas=2, seed=0, dtype="float32")
    r64, r32 = exact(policy64, env), exact(policy32, env)
    tol = ATOL[torch.float32]
    assert torch.allclose(r32.value.double(), r64.value, atol=tol, rtol=0)
    assert torch.allclose(r32.grad_norm.double(), r64.grad_norm, atol=tol, rtol=1e-4)


def test_monte_carlo_reinforce_matches_exact_gradient():
    """Seeded REINFORCE mean vs the exact gradient, per coordinate.

    The estimator averages N·M independent terms t = r ∇log p(y|x_n) / N-weighted, so its
    standard deviation per coordinate k is sd_k = sqrt(Σ_n σ²_{n,k} / M) / N, with
    σ²_{n,k} = E_y[(r ∇_k log p)²] - (∇_k V_n)² computed exactly by enumeration below.
    A 5·sd band fails with probability < 6e-7 per coordinate (Gaussian limit), < 1e-4
    over all coordinates; the seed is fixed, so the test is deterministic.
    """
    env, policy = sequence_case("tabular", reward="position_match", num_replicas=1)
    num_samples = 4000
    estimate = reinforce_gradient(policy, env, num_samples=num_samples, seed=3)
    result = exact(policy, env, grads="full")
    # exact per-output gradients of log p(y|x_n): (N, Y, *shape) via autograd
    params = leaf_params(policy)
    outputs = env.output_space.enumerate()[None].expand(env.num_inputs, -1, -1)
    log_probs = policy.log_prob(torch.arange(env.num_inputs), policy.inputs_from(env), outputs, params)[0]  # (N, Y)
    rewards = env.reward_table()
    second_moment = torch.zeros_like(params["logits"][0])
    for n in range(env.num_inputs):
        for i in range(outputs.shape[1]):
            (g,) = torch.autograd.grad(log_probs[n, i], [params["logits"]], retain_graph=True)
            second_moment += log_probs[n, i].exp().detach() * (rewards[n, i] * g[0]) ** 2
    # Σ_n σ²_{n,k} = Σ_n E[(r ∇_k log p)²] - Σ_n (∇_k V_n)²
    total_var = second_moment - result.grads["logits"][0].pow(2).sum(0)
    sd = total_var.clamp_min(0).sqrt() / math.sqrt(num_samples) / env.num_inputs
    error = (estimate["logits"][0] - result.mean_grad["logits"][0]).abs()
    assert bool((error <= 5 * sd + 1e-12).all()), float((error / (sd + 1e-30)).max())
    # and the estimate is informative: its error is well below the gradient's own size
    assert float(params_norm({"g": error[None]}, 1)) < 0.2 * float(result.mean_grad_norm[0])


def test_enumeration_limit_refuses_large_spaces():
    env = random_sequence_env(num_prompts=2, vocab_size=4, length=6)
    policy = TabularPolicy.for_env(env)
    with pytest.raises(EnumerationLimitError, match=r"4\^6 = 4096 is past the enumeration limit max_outputs=1000"):
        exact(policy, env, max_outputs=1000)
    with pytest.raises(EnumerationLimitError, match="sampling"):
        gamma(policy, env, max_outputs=1000)


def test_unknown_method_is_refused():
    env, policy = sequence_case("tabular")
    with pytest.raises(ConfigError, match="unknown method 'bogus'"):
        exact(policy, env, method="bogus")


def test_gamma_closed_forms_and_maximum_over_levels():
    """Tabular: γ = 1/T. Linear 'input_position' on orthonormal inputs: ||φ|| = ||x|| = 1, so γ = 1/T.
    Transformer: γ equals the largest brute-force spectral norm over every prefix of every level."""
    env, policy = sequence_case("tabular", temperature=[1.0, 0.25])
    assert torch.allclose(gamma(policy, env), torch.tensor([[1.0], [4.0]], dtype=torch.float64).expand(2, 3))
    ortho = orthonormal(4, 3, seed=1)
    linear = LinearSoftmaxPolicy.for_env(ortho, dtype="float64", temperature=0.5)
    assert torch.allclose(gamma(linear, ortho), torch.full((1, 4), 2.0, dtype=torch.float64), atol=ATOL[torch.float64])

    env, transformer = sequence_case("transformer", num_replicas=1)
    env = random_sequence_env(num_prompts=2, vocab_size=2, length=2, prompt_length=2, prompt_vocab_size=4)
    transformer = TinyTransformerPolicy.for_env(env, d_model=8, num_layers=1, dtype="float64")
    params0 = tuple(v[0] for v in transformer.params.values())
    names = list(transformer.params)
    x = transformer.inputs_from(env)
    for n in range(env.num_inputs):
        norms = []
        for prefix in [(), (0,), (1,)]:

            def logits(*values, prefix=prefix, n=n):
                pre = torch.tensor(prefix, dtype=torch.long).reshape(1, 1, len(prefix))
                return transformer.replica_prefix_logits(
                    dict(zip(names, values, strict=True)), torch.tensor([n]), x[n : n + 1], pre
                )[0, 0]

            jac = torch.autograd.functional.jacobian(logits, params0)
            matrix = torch.cat([j.flatten(1) for j in jac], dim=1)  # (V, P)
            norms.append(torch.linalg.matrix_norm(matrix, ord=2))
        assert gamma(transformer, env)[0, n].item() == pytest.approx(max(norms).item(), rel=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    env, cpu_policy = sequence_case("transformer")
    gpu_policy = TinyTransformerPolicy.for_env(
        env, d_model=8, num_layers=1, num_replicas=2, seed=0, dtype="float64", device="cuda"
    )
    cpu, gpu = exact(cpu_policy, env), exact(gpu_policy, env)
    assert torch.allclose(gpu.value.cpu(), cpu.value, atol=1e-10)
    assert torch.allclose(gpu.grad_norm.cpu(), cpu.grad_norm, atol=1e-10)

"""The transformer's packed KV-cached prefix tree against the base per-level loop (issue 19).

``TinyTransformerPolicy.replica_tree_logits`` encodes ``[prompt, BOS]`` once and each tree node
as one position attending over its ancestors; the reference is the base class's
``SoftmaxPolicy.replica_tree_logits``, which scores every prefix ``[prompt, BOS, u]`` from scratch
with ``replica_prefix_logits``. ``LoopTransformer`` below is the same policy (same weights) scored
by that reference. Compared: the hook's logits and VJPs under ``vmap`` over replicas and
``vjp`` (prompt length 0 included, which no environment offers), and every result of the exact
engine that reads the hook (``evaluate``, ``mean_gradient``, ``exact(..., grads="full")``).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.func import vjp, vmap

from rftgrad.envs import random_sequence_env
from rftgrad.errors import ShapeMismatchError
from rftgrad.models import SoftmaxPolicy, TinyTransformerPolicy
from rftgrad.theory import evaluate, exact, mean_gradient
from tests.tolerances import ATOL, TREE_CACHE_ATOL


class LoopTransformer(TinyTransformerPolicy):
    """The transformer scored by the base class's per-level loop (every prefix from scratch)."""

    replica_tree_logits = SoftmaxPolicy.replica_tree_logits


def both_paths(cls_kwargs: dict, **kwargs) -> tuple[TinyTransformerPolicy, LoopTransformer]:
    """The KV-cached policy and the reference on the same weights."""
    cached = TinyTransformerPolicy(**cls_kwargs, **kwargs)
    loop = LoopTransformer(**cls_kwargs, **kwargs)
    loop.params = {key: value.clone() for key, value in cached.params.items()}
    return cached, loop


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, what
    error = float((actual - expected).abs().max()) if actual.numel() else 0.0
    assert error <= TREE_CACHE_ATOL, f"{what}: max |diff| {error:.2e}"


@given(
    num_layers=st.integers(1, 3),
    num_heads=st.sampled_from([1, 2, 3, 4]),
    prompt_length=st.integers(0, 3),
    vocab_size=st.integers(2, 3),
    length=st.integers(1, 5),
    num_replicas=st.integers(1, 3),
    num_inputs=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_hook_logits_and_vjp_equal_the_per_level_loop(
    num_layers, num_heads, prompt_length, vocab_size, length, num_replicas, num_inputs, seed
):
    sizes = dict(prompt_vocab_size=4, prompt_length=prompt_length, vocab_size=vocab_size, max_length=length)
    cached, loop = both_paths(
        sizes, d_model=12, num_heads=num_heads, num_layers=num_layers, num_replicas=num_replicas, seed=seed,
        dtype="float64",
    )  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (num_inputs, prompt_length), generator=gen)
    ids = torch.arange(num_inputs)

    def run(policy: SoftmaxPolicy):
        def all_replicas(params):
            return vmap(lambda p: policy.replica_tree_logits(p, ids, x, length))(params)

        return vjp(all_replicas, policy.params)

    (cached_logits, cached_pullback), (loop_logits, loop_pullback) = run(cached), run(loop)
    assert len(cached_logits) == len(loop_logits) == length
    for level, (got, expected) in enumerate(zip(cached_logits, loop_logits, strict=True)):
        assert expected.shape == (num_replicas, num_inputs, vocab_size**level, vocab_size)
        assert_close(got, expected, f"logits of level {level}")
    # unit L1 norm per level, like the engine's g_u = P(u) π_u (Q(u·) - Q(u)): the VJP stays O(||J||)
    cotangents = tuple((c := torch.randn(t.shape, generator=gen, dtype=t.dtype)) / c.abs().sum() for t in loop_logits)
    (cached_grads,), (loop_grads,) = cached_pullback(cotangents), loop_pullback(cotangents)
    for key, expected in loop_grads.items():
        assert_close(cached_grads[key], expected, f"VJP for {key}")


ENGINE_CASES = [  # (num_layers, num_heads, V, L, R)
    (1, 1, 3, 1, 1),
    (2, 2, 3, 3, 2),
    (3, 4, 2, 5, 3),
    (2, 3, 4, 2, 1),
]


@pytest.mark.parametrize(("num_layers", "num_heads", "vocab", "length", "replicas"), ENGINE_CASES)
def test_exact_engine_results_equal_the_per_level_loop(num_layers, num_heads, vocab, length, replicas):
    env = random_sequence_env(
        num_prompts=3, vocab_size=vocab, length=length, prompt_length=2, prompt_vocab_size=5, seed=3
    )
    sizes = dict(prompt_vocab_size=5, prompt_length=2, vocab_size=vocab, max_length=length)
    cached, loop = both_paths(
        sizes, d_model=12, num_heads=num_heads, num_layers=num_layers, num_replicas=replicas, seed=7,
        dtype="float64", temperature=[0.7, 1.0, 1.6][:replicas],
    )  # fmt: skip
    got, expected = exact(cached, env, grads="full"), exact(loop, env, grads="full")
    for name in ("log_probs", "value", "std", "position_variance", "logit_grad_norm", "max_first_token_prob",
                 "grad_norm", "mean_grad_norm"):  # fmt: skip
        assert_close(getattr(got, name), getattr(expected, name), name)
    for key in expected.mean_grad:
        assert_close(got.mean_grad[key], expected.mean_grad[key], f"mean_grad[{key}]")
        assert_close(got.grads[key], expected.grads[key], f"grads[{key}]")
    evaluated, mean = evaluate(cached, env), mean_gradient(cached, env)
    assert_close(evaluated.value, expected.value, "evaluate value")
    assert_close(evaluated.position_variance, expected.position_variance, "evaluate position_variance")
    for key in expected.mean_grad:
        assert_close(mean.mean_grad[key], expected.mean_grad[key], f"mean_gradient[{key}]")


def test_tree_agrees_with_flat_teacher_forcing_in_float32():
    env = random_sequence_env(num_prompts=4, vocab_size=3, length=3, prompt_length=2, prompt_vocab_size=5, seed=1)
    policy = TinyTransformerPolicy.for_env(env, d_model=16, num_layers=2, num_replicas=2, seed=0, dtype="float32")
    tree, flat = exact(policy, env, method="tree"), exact(policy, env, method="flat")
    for name in ("value", "grad_norm", "mean_grad_norm"):
        assert torch.allclose(getattr(tree, name), getattr(flat, name), atol=ATOL[torch.float32], rtol=0), name


@pytest.mark.parametrize("length", [0, 4])
@pytest.mark.parametrize("cls", [TinyTransformerPolicy, LoopTransformer])
def test_tree_outside_the_policys_lengths_is_refused(cls, length):
    policy = cls(prompt_vocab_size=3, prompt_length=1, vocab_size=2, max_length=3, d_model=4, num_heads=1)
    params = {key: value[0] for key, value in policy.params.items()}
    with pytest.raises(ShapeMismatchError, match="max_length=3"):
        policy.replica_tree_logits(params, torch.arange(1), torch.zeros(1, 1, dtype=torch.long), length)

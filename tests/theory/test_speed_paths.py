"""The fast transformer paths of issue 19 against today's references, float64.

* γ: a one-pass policy (the transformer) runs every prefix length in ONE zero-padded causal forward
  and reads each state at its own last position; the reference is the same weights through the
  per-length forwards of ``replica_prefix_logits`` (``PerPositionTransformer`` below, whose sequence
  logits are the base class's per-position loop, so gamma takes that road), with and without
  chunking (a budget that splits levels across calls mixes lengths within a call);
* per-input gradients (one reverse pass over per-(replica, input) parameter copies) against the
  mean gradient with one-hot input weights (one VJP of the shared-parameter program);
* the packed prefix tree: one masked ``S x S`` attention (small trees) and the segment-wise
  ``_tree_attention`` (forced, and by default past ``dense_tree_positions``) against the base class's
  per-level loop, logits and VJPs; the sequence logits (last block on the read positions only)
  against the per-position loop.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import vjp, vmap

from rftgrad.envs import random_sequence_env
from rftgrad.models import SoftmaxPolicy, TinyTransformerPolicy
from rftgrad.theory import exact, gamma, jacobian_spectral_norms, mean_gradient
from tests.tolerances import GAMMA_RTOL, PER_INPUT_GRAD_ATOL, TREE_CACHE_ATOL


class PerPositionTransformer(TinyTransformerPolicy):
    """The transformer without a one-pass ``replica_sequence_logits``: gamma runs one forward per length."""

    replica_sequence_logits = SoftmaxPolicy.replica_sequence_logits


class LoopTransformer(TinyTransformerPolicy):
    """The transformer's prefix tree by the base class's per-level loop (every prefix from scratch)."""

    replica_tree_logits = SoftmaxPolicy.replica_tree_logits
    replica_sequence_logits = SoftmaxPolicy.replica_sequence_logits


class SegmentTreeTransformer(TinyTransformerPolicy):
    """The packed tree always by the segment-wise ``_tree_attention`` (never the dense masked attention)."""

    dense_tree_positions = 0


def same_weights(cls: type[TinyTransformerPolicy], policy: TinyTransformerPolicy, **kwargs) -> TinyTransformerPolicy:
    twin = cls(**kwargs)
    twin.params = {key: value.clone() for key, value in policy.params.items()}
    return twin


def build(vocab: int, length: int, prompts: int, replicas: int, layers: int = 1, seed: int = 0):
    env = random_sequence_env(
        num_prompts=prompts, vocab_size=vocab, length=length, prompt_length=2, prompt_vocab_size=4, seed=seed
    )
    kwargs = dict(
        prompt_vocab_size=4, prompt_length=2, vocab_size=vocab, max_length=length, d_model=8, num_heads=2,
        num_layers=layers, num_replicas=replicas, seed=seed, dtype="float64", temperature=[0.5, 1.0, 2.0][:replicas],
    )  # fmt: skip
    return env, TinyTransformerPolicy(**kwargs), kwargs


CASES = [(2, 5, 2, 1, 1), (3, 3, 3, 2, 1), (6, 3, 1, 1, 2), (4, 2, 2, 3, 1), (5, 1, 2, 1, 1)]  # V, L, N, R, layers


@pytest.mark.parametrize(("vocab", "length", "prompts", "replicas", "layers"), CASES)
def test_gamma_in_one_padded_forward_equals_the_per_length_forwards(vocab, length, prompts, replicas, layers):
    env, policy, kwargs = build(vocab, length, prompts, replicas, layers)
    reference = gamma(same_weights(PerPositionTransformer, policy, **kwargs), env)
    assert (reference > 0.1).all()  # O(1) norms: the relative check is meaningful
    torch.testing.assert_close(gamma(policy, env), reference, rtol=GAMMA_RTOL, atol=0)
    # 5 states per call: calls hold states of two lengths, and a level is split across calls
    states_per_call = 5 * replicas * vocab * policy.num_parameters
    torch.testing.assert_close(gamma(policy, env, budget=states_per_call), reference, rtol=GAMMA_RTOL, atol=0)
    # one length at a time (a single batch: no padding) gives the same norms per state
    x, ids, space = policy.inputs_from(env), torch.arange(prompts), env.output_space
    for level in range(length):
        prefixes = space.prefixes(level)[None].expand(prompts, -1, -1)
        per_state = jacobian_spectral_norms(policy, ids, x, prefixes)  # (R, N, V^l)
        assert (per_state <= reference[..., None] * (1 + GAMMA_RTOL)).all()
    torch.testing.assert_close(gamma(policy, env, method="lanczos"), reference, rtol=1e-10, atol=0)


@pytest.mark.parametrize(("vocab", "length", "prompts", "replicas", "layers"), CASES)
def test_per_input_gradients_equal_one_hot_mean_gradients(vocab, length, prompts, replicas, layers):
    env, policy, _ = build(vocab, length, prompts, replicas, layers, seed=1)
    result = exact(policy, env, grads="full")
    for chunk in (1, prompts):  # per-input chunks of one input and of all of them
        chunked = exact(policy, env, grads="full", input_chunk=chunk)
        for key in result.grads:
            assert float((chunked.grads[key] - result.grads[key]).abs().max()) <= PER_INPUT_GRAD_ATOL, key
    for n in range(prompts):
        one_hot = torch.zeros(replicas, prompts, dtype=torch.float64)
        one_hot[:, n] = 1.0
        expected = mean_gradient(policy, env, input_weights=one_hot).mean_grad  # ∇_θ V(x_n;θ): (R, *shape)
        for key, value in expected.items():
            error = float((result.grads[key][:, n] - value).abs().max())
            assert error <= PER_INPUT_GRAD_ATOL, (key, n, error)
    assert float(result.grad_norm.min()) > 1e-6  # non-trivial gradients: 1e-12 is a test of their digits


TREE_CASES = [
    (3, 4, 2, 2, 2),
    (5, 4, 2, 1, 1),
    (2, 5, 3, 2, 3),
    (4, 1, 2, 1, 1),
]  # V, L, N, R, layers; V=5 L=4: S > 128


@pytest.mark.parametrize(("vocab", "length", "prompts", "replicas", "layers"), TREE_CASES)
def test_dense_and_segment_trees_equal_the_per_level_loop(vocab, length, prompts, replicas, layers):
    env, policy, kwargs = build(vocab, length, prompts, replicas, layers, seed=2)
    x, ids = policy.inputs_from(env), torch.arange(prompts)
    gen = torch.Generator().manual_seed(0)

    def run(model: TinyTransformerPolicy):
        return vjp(vmap(lambda p: model.replica_tree_logits(p, ids, x, length)), model.params)

    loop_logits, loop_pullback = run(same_weights(LoopTransformer, policy, **kwargs))
    cotangents = tuple((c := torch.randn(t.shape, generator=gen, dtype=t.dtype)) / c.abs().sum() for t in loop_logits)
    (loop_grads,) = loop_pullback(cotangents)
    for model in (policy, same_weights(SegmentTreeTransformer, policy, **kwargs)):
        logits, pullback = run(model)
        for got, expected in zip(logits, loop_logits, strict=True):
            assert float((got - expected).abs().max()) <= TREE_CACHE_ATOL
        (grads,) = pullback(cotangents)
        for key, expected in loop_grads.items():
            assert float((grads[key] - expected).abs().max()) <= TREE_CACHE_ATOL, key
    outputs = env.output_space.enumerate()[None].expand(prompts, -1, -1)
    got = vmap(lambda p: policy.replica_sequence_logits(p, ids, x, outputs))(policy.params)
    expected = vmap(lambda p: SoftmaxPolicy.replica_sequence_logits(policy, p, ids, x, outputs))(policy.params)
    assert float((got - expected).abs().max()) <= TREE_CACHE_ATOL

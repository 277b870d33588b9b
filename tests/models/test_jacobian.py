"""Spectral norms of the logit Jacobians ``J = ∂(f_θ(x, u)/T)/∂θ`` (docs/paper.md §2, γ).

Closed forms: tabular ``||J||_2 = 1/T`` (each logit is its own parameter), linear
``||J||_2 = ||φ(x, u)||/T`` (``J = I_V ⊗ φ^T``). The generic path of
:func:`rftgrad.theory.jacobian_spectral_norms` (``jacrev`` + Gram matrix) serves MLP and
transformer. All are compared with a brute-force Jacobian from
``torch.autograd.functional.jacobian`` on one replica's ``replica_prefix_logits``.
"""

from __future__ import annotations

import math

import pytest
import torch

from rftgrad.models import SoftmaxPolicy
from rftgrad.theory import jacobian_spectral_norms
from tests.models.builders import brute_force_jacobian_norms, env_for, ids_of, make_policy
from tests.tolerances import SPECTRAL_TOL

TEMPS = [0.5, 2.0]


def states(kind: str, num_inputs: int) -> list[torch.Tensor]:
    """Prefix batches ``(N, M, l)`` for l = 0, 1, 2 (l = 0 only for the L = 1 MLP)."""
    if kind == "mlp":
        return [torch.zeros(num_inputs, 1, 0, dtype=torch.long)]
    level1 = torch.tensor([[[0], [2]]]).expand(num_inputs, -1, -1)
    level2 = torch.tensor([[[0, 2], [1, 1]]]).expand(num_inputs, -1, -1)
    return [torch.zeros(num_inputs, 1, 0, dtype=torch.long), level1, level2]


@pytest.mark.parametrize("kind", ["tabular", "linear-input", "linear-input_position", "linear-input_prefix",
                                  "linear-input_last_token"])
def test_closed_form_matches_brute_force(kind: str) -> None:
    env = env_for(kind)
    policy = make_policy(kind, env, seed=[0, 1], temperature=TEMPS)
    ids, x = ids_of(env), policy.inputs_from(env)
    for prefixes in states(kind, env.num_inputs):
        closed = policy.closed_form_jacobian_norms(ids, x, prefixes)
        assert closed.shape == (2, *prefixes.shape[:2])
        brute = brute_force_jacobian_norms(policy, ids, x, prefixes)
        torch.testing.assert_close(closed, brute, rtol=0, atol=SPECTRAL_TOL)
        torch.testing.assert_close(jacobian_spectral_norms(policy, ids, x, prefixes), brute, rtol=0, atol=SPECTRAL_TOL)


def test_tabular_closed_form_is_one_over_temperature() -> None:
    env = env_for("tabular")
    policy = make_policy("tabular", env, seed=[0, 1], temperature=TEMPS)
    prefixes = states("tabular", env.num_inputs)[2]
    norms = policy.closed_form_jacobian_norms(ids_of(env), None, prefixes)
    expected = torch.tensor([1 / t for t in TEMPS], dtype=torch.float64)[:, None, None].expand(-1, env.num_inputs, 2)
    torch.testing.assert_close(norms, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("features", "squared_norm"),
    [
        # sequence-env features are one-hot per prompt position: ||x||^2 = P = 2
        ("input", 2.0),
        ("input_position", 2.0),  # e_l ⊗ x
        ("input_prefix", 2.0),  # e_state ⊗ x
        ("input_last_token", 4.0),  # [x, e_l, e_last]: 2 + 1 + 1
    ],
)
def test_linear_closed_form_is_feature_norm_over_temperature(features: str, squared_norm: float) -> None:
    env = env_for(f"linear-{features}")
    policy = make_policy(f"linear-{features}", env, seed=[0, 1], temperature=TEMPS)
    ids, x = ids_of(env), policy.inputs_from(env)
    for prefixes in states("linear", env.num_inputs):
        phi = policy.feature_vectors(x, prefixes)
        assert phi.shape == (*prefixes.shape[:2], policy.feature_dim)
        norms = policy.closed_form_jacobian_norms(ids, x, prefixes)
        temps = torch.tensor(TEMPS, dtype=torch.float64)[:, None, None]
        torch.testing.assert_close(norms, phi.norm(dim=-1)[None] / temps, rtol=0, atol=1e-14)
        expected = torch.tensor([math.sqrt(squared_norm) / t for t in TEMPS], dtype=torch.float64)
        torch.testing.assert_close(norms, expected[:, None, None].expand_as(norms), rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_generic_jacrev_path_matches_brute_force(kind: str) -> None:
    env = env_for(kind)
    policy = make_policy(kind, env, seed=[0, 1], temperature=TEMPS)
    assert policy.closed_form_jacobian_norms(ids_of(env), policy.inputs_from(env), states(kind, 1)[0]) is None
    subset = torch.tensor([0, 2])  # two inputs keep the brute force quick
    ids, x = ids_of(env)[subset], policy.inputs_from(env)[subset]
    for prefixes in states(kind, 2):
        generic = jacobian_spectral_norms(policy, ids, x, prefixes)
        brute = brute_force_jacobian_norms(policy, ids, x, prefixes)
        assert bool((brute > 0.1).all())  # non-degenerate: relative and absolute tolerance agree in scale
        torch.testing.assert_close(generic, brute, rtol=SPECTRAL_TOL, atol=SPECTRAL_TOL)
        # J/T: the two replicas differ in θ too, so check the 1/T scaling on replica 0 alone
        policy.set_temperature(1.0)
        torch.testing.assert_close(jacobian_spectral_norms(policy, ids, x, prefixes)[0], generic[0] * TEMPS[0],
                                   rtol=SPECTRAL_TOL, atol=SPECTRAL_TOL)
        policy.set_temperature(TEMPS)


@pytest.mark.parametrize(
    "kind",
    [
        "tabular",
        "linear-input",
        "linear-input_position",
        "linear-input_prefix",
        "linear-input_last_token",
    ],
)
def test_generic_path_agrees_with_closed_form(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disable the closed form: jacrev on tabular/linear must give the same norms.

    ``replica_prefix_logits`` is documented to serve torch.func transforms (Jacobians in
    rftgrad.theory); the generic path vmaps jacrev over (input, prefix) states.
    """
    env = env_for(kind)
    policy = make_policy(kind, env, seed=[0, 1], temperature=TEMPS)
    ids, x = ids_of(env), policy.inputs_from(env)
    prefixes = states(kind, env.num_inputs)[2]
    closed = jacobian_spectral_norms(policy, ids, x, prefixes)
    monkeypatch.setattr(type(policy), "closed_form_jacobian_norms", SoftmaxPolicy.closed_form_jacobian_norms)
    assert policy.closed_form_jacobian_norms(ids, x, prefixes) is None
    torch.testing.assert_close(jacobian_spectral_norms(policy, ids, x, prefixes), closed, rtol=0, atol=SPECTRAL_TOL)

"""The fast ``rftgrad check`` path against its references (issue 19).

* γ's batched generic path (every prefix of every level in one reverse pass) equals a brute-force
  per-state Jacobian to a relative ``GAMMA_RTOL`` (1e-12), for MLPs and transformers with two
  replicas and two temperatures, with and without chunking;
* the matrix-free γ (``method="lanczos"``) equals the full-Jacobian γ to ``LANCZOS_RTOL``, also when
  the Krylov space closes early (``J Jᵀ = c I``: a transformer with a zero read-out);
* ``check_specs`` (tensors per example, one DataFrame at the end) equals the per-example
  ``bound_table`` rows with the spec's fields appended, the assembly it replaced.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rftgrad.errors import ConfigError
from rftgrad.theory import bound_table, gamma, jacobian_spectral_norms
from rftgrad.theory.bounds import bound_columns, columns_as_arrays
from rftgrad.theory.check import check_specs
from rftgrad.theory.instances import InstanceSpec, draw_specs, random_instance
from tests.tolerances import GAMMA_RTOL, LANCZOS_RTOL

SPECS = [
    InstanceSpec(kind="mlp", vocab_size=5, length=1, num_inputs=3, logit_scale=2.0, seed=3),
    InstanceSpec(kind="transformer", vocab_size=3, length=3, num_inputs=2, logit_scale=5.0, seed=7),
    InstanceSpec(kind="transformer", vocab_size=2, length=4, num_inputs=3, logit_scale=0.3, seed=11),
]


def two_replica_instance(spec: InstanceSpec):
    """``spec``'s instance with R = 2 replicas at temperatures 0.5 and 2."""
    env, policy = random_instance(spec, num_replicas=2)
    policy.set_temperature([0.5, 2.0])
    return env, policy


def brute_force_gamma(policy, env) -> torch.Tensor:
    """γ ``(R, N)`` from one ``torch.autograd.functional.jacobian`` per replica, input and prefix (SVD norm)."""
    names, space = list(policy.params), env.output_space
    x = policy.inputs_from(env)
    out = torch.zeros(policy.num_replicas, env.num_inputs, dtype=torch.float64)
    for r in range(policy.num_replicas):
        values = tuple(policy.params[k][r] for k in names)
        for n in range(env.num_inputs):
            for level in range(space.length):
                for prefix in space.prefixes(level):

                    def logits(*vals, prefix=prefix, n=n, r=r):
                        params = dict(zip(names, vals, strict=True))
                        pre = prefix.reshape(1, 1, -1)
                        return (
                            policy.replica_prefix_logits(params, torch.tensor([n]), x[n : n + 1], pre)[0, 0]
                            / (policy.temperature[r])
                        )

                    jac = torch.autograd.functional.jacobian(logits, values)
                    matrix = torch.cat([j.flatten(1) for j in jac], dim=1)  # (V, P)
                    out[r, n] = max(out[r, n], torch.linalg.matrix_norm(matrix, ord=2))
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-V{s.vocab_size}-L{s.length}")
def test_batched_gamma_equals_brute_force_jacobian(spec):
    env, policy = two_replica_instance(spec)
    reference = brute_force_gamma(policy, env)
    assert (reference > 0.1).all()  # O(1) norms: the relative check is meaningful
    torch.testing.assert_close(gamma(policy, env), reference, rtol=GAMMA_RTOL, atol=0)
    # a budget of one state per call splits every level into single-state calls: same numbers
    torch.testing.assert_close(gamma(policy, env, budget=1), reference, rtol=GAMMA_RTOL, atol=0)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-V{s.vocab_size}-L{s.length}")
def test_lanczos_gamma_equals_the_full_jacobian(spec):
    env, policy = two_replica_instance(spec)
    full = gamma(policy, env, method="jacobian")
    torch.testing.assert_close(gamma(policy, env, method="lanczos"), full, rtol=LANCZOS_RTOL, atol=0)
    ids, x = torch.arange(env.num_inputs), policy.inputs_from(env)
    prefixes = env.output_space.prefixes(env.output_space.length - 1)[None].expand(env.num_inputs, -1, -1)
    torch.testing.assert_close(
        jacobian_spectral_norms(policy, ids, x, prefixes, method="lanczos"),
        jacobian_spectral_norms(policy, ids, x, prefixes),
        rtol=LANCZOS_RTOL,
        atol=0,
    )


def test_lanczos_survives_an_early_breakdown():
    """A zero read-out ``W_U = 0`` gives ``J Jᵀ = (‖h‖² + 1) I / T²``: every start vector is an eigenvector,
    so the Krylov space closes after one step; γ is still exact, ``sqrt(‖h‖² + 1) / T`` (‖h‖² = d for the
    final LayerNorm at unit gain and zero bias, up to its ε)."""
    spec = InstanceSpec(kind="transformer", vocab_size=4, length=2, num_inputs=2, logit_scale=0.0, seed=5)
    env, policy = random_instance(spec)
    full = gamma(policy, env)
    torch.testing.assert_close(gamma(policy, env, method="lanczos"), full, rtol=LANCZOS_RTOL, atol=0)
    assert torch.allclose(full, torch.full_like(full, (policy.d_model + 1) ** 0.5), rtol=1e-4)


def test_unknown_gamma_method_is_refused():
    env, policy = random_instance(SPECS[1])
    with pytest.raises(ConfigError, match="unknown gamma method 'power'; choose one of jacobian, lanczos"):
        gamma(policy, env, method="power")


def test_bound_table_is_bound_columns_as_a_frame():
    env, policy = two_replica_instance(SPECS[1])
    columns = bound_columns(policy, env)
    table = bound_table(policy, env)
    assert list(table.columns) == ["replica", "input", *columns]
    assert table["replica"].tolist() == [0, 0, 1, 1] and table["input"].tolist() == [0, 1, 0, 1]
    for key, value in columns.items():
        np.testing.assert_array_equal(table[key].to_numpy(), value.reshape(-1).numpy())
    assert columns_as_arrays(columns)["violation"].dtype == bool


def test_check_specs_rows_equal_the_per_example_tables():
    """The rows ``rftgrad check`` writes: the per-example ``bound_table`` with the spec's fields appended
    (``seconds`` aside), every kind, γ included, to ``GAMMA_RTOL``."""
    specs = draw_specs(12, seed=4)
    assert {s.kind for s in specs} == {"tabular", "linear", "mlp", "transformer"}
    rows = check_specs(specs, progress=False)
    frames = []
    for example, spec in enumerate(specs):
        frame = bound_table(*reversed(random_instance(spec)))
        for key, value in {"example": example, "seconds": 0.0, **spec.as_dict()}.items():
            frame[key] = value
        frames.append(frame)
    expected = pd.concat(frames, ignore_index=True)
    assert list(rows.columns) == list(expected.columns)
    assert (rows.dtypes == expected.dtypes).all()
    for key in expected.columns.drop("seconds"):
        if expected[key].dtype.kind == "f":
            np.testing.assert_allclose(rows[key], expected[key], rtol=GAMMA_RTOL, atol=0)
        else:
            assert rows[key].tolist() == expected[key].tolist(), key
    assert (rows["seconds"] > 0).all()

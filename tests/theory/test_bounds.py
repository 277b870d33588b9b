"""Unit checks of rftgrad.theory.bounds: ratios, rounding floors, and that violations are caught."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rftgrad.theory import bound_table, exact, gamma, ratio, tightness_witness
from rftgrad.theory.bounds import ABS_SLACK, GAMMA_SLACK
from rftgrad.theory.instances import InstanceSpec, random_instance


def test_ratio_handles_numerically_zero_bounds():
    grads = torch.tensor([0.5, 1e-14, 1e-3, 2.0], dtype=torch.float64)
    bounds = torch.tensor([1.0, 1e-20, 1e-20, 1.0], dtype=torch.float64)
    assert ratio(grads, bounds).tolist() == [0.5, 0.0, math.inf, 2.0]
    assert ratio(grads, bounds, floor=1e-2).tolist() == [0.5, 0.0, 0.0, 2.0]


def test_witness_ratios_are_exact():
    """Shared softmax at p = 1/2: ratio 1/√2 to γ√L·STD and to the martingale bound, 1 to the tight bound."""
    for length in (1, 3, 6):
        row = bound_table(*reversed(tightness_witness(length))).iloc[0]
        assert abs(row["ratio_sharpened"] - 1 / math.sqrt(2)) < 1e-12
        assert abs(row["ratio_martingale"] - 1 / math.sqrt(2)) < 1e-12
        assert abs(row["ratio_tight"] - 1.0) < 1e-12 and not row["violation"]


def test_an_inflated_gradient_is_flagged_as_a_violation():
    env, policy = tightness_witness(4)
    result = exact(policy, env)
    inflated = dataclasses.replace(result, grad_norm=result.grad_norm * 1.01)  # 1% above the tight bound
    assert bool(bound_table(policy, env, result=inflated)["violation"].iloc[0])


def test_rounding_noise_of_a_near_deterministic_transformer_is_not_a_violation():
    """Found by the thorough profile: true STD 3.5e-72, computed ||∇V|| ~1e-13 = rounding noise
    (γ ≈ 4.4e3), below the floor ABS_SLACK + GAMMA_SLACK·L·γ; the bound itself is ~1e-68."""
    spec = InstanceSpec(kind="transformer", vocab_size=6, length=3, num_inputs=2, logit_scale=50.0,
                        reward_kind="sparse_binary", temperature=0.5, seed=97916690)
    env, policy = random_instance(spec)
    table = bound_table(policy, env)
    floor = ABS_SLACK + GAMMA_SLACK * 3 * table["gamma"]
    assert (table["reward_std"] < 1e-20).all() and (table["grad_norm"] < floor).all()
    # (the state-major sweep forms P(u·a) = P(u) π_u(a) by products and now computes ||∇V|| ~ 1e-141 and
    # 1e-45 here, without the 1e-13 noise of the exp(log P) sweep; the instance still checks the floor)
    assert not table["violation"].any()
    assert torch.allclose(gamma(policy, env)[0].double(), torch.tensor(table["gamma"].to_numpy()), rtol=1e-12)


def test_stalled_regime_is_strict_and_works_on_tensors_and_series():
    """STD < threshold and V < best - ½(best - worst); both inequalities strict; same answer for torch and pandas."""
    import pandas as pd

    from rftgrad.theory import stalled

    mean = [-1.0, 0.0, -0.01, -0.9, 0.5]
    std = [0.01, 0.01, 0.01, 0.1, 0.0]
    expected = [True, False, True, False, False]  # the midpoint 0 is not far; STD = 0.1 is not below 0.1
    as_tensor = stalled(torch.tensor(mean), torch.tensor(std), torch.tensor(1.0), torch.tensor(-1.0), 0.1)
    as_series = stalled(pd.Series(mean), pd.Series(std), 1.0, -1.0, 0.1)
    assert as_tensor.tolist() == expected and as_series.tolist() == expected
    assert stalled(pd.Series([0.2]), pd.Series([0.0]), 1.0, 0.0, 0.1, far_fraction=0.75).tolist() == [True]


def test_stalled_with_an_absolute_gap_is_the_fractional_one_at_that_gap():
    """``gap`` (diagnose's --gap) replaces ``far_fraction · (best - worst)``; exactly one of worst and gap."""
    import numpy as np
    import pandas as pd

    from rftgrad.errors import ConfigError
    from rftgrad.theory import stalled

    rng = np.random.default_rng(0)
    mean, std = pd.Series(rng.uniform(-1, 1, 200)), pd.Series(rng.uniform(0, 0.2, 200))
    by_gap = stalled(mean, std, 1.0, None, 0.1, gap=1.0)
    assert by_gap.equals(stalled(mean, std, 1.0, -1.0, 0.1)) and 0 < by_gap.sum() < 200
    assert stalled(pd.Series([0.5]), pd.Series([0.0]), 1.0, None, 0.1, gap=0.5).tolist() == [False]  # strict
    with pytest.raises(ConfigError, match="exactly one of worst"):
        stalled(mean, std, 1.0, -1.0, 0.1, gap=0.5)
    with pytest.raises(ConfigError, match="exactly one of worst"):
        stalled(mean, std, 1.0, None, 0.1)

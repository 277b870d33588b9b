"""rftgrad's advantages equal verl 0.9.1's, called live (skipped where verl is not installed).

verl (verl/trainer/ppo/core_algos.py) groups the rows of a flat batch by a ``uid`` index array and
computes, per group of ``G`` rewards ``r`` (``token_level_rewards.sum(-1)``):

* ``compute_grpo_outcome_advantage``: ``A_i = (r_i - mean(r)) / (std(r) + ε)``, ``torch.std``
  (Bessel), ``ε = 1e-6`` by default; ``norm_adv_by_std_in_grpo=False``: ``A_i = r_i - mean(r)``;
* ``compute_rloo_outcome_advantage``: ``A_i = (G r_i - G mean(r)) / (G - 1) = r_i - mean_{j≠i} r_j``.

The batches here are random groups (seeded; binary 0/1 and continuous rewards; several ``G``),
flattened in a shuffled order with uuid-like ids, so verl must group by ``uid`` to get them right;
rftgrad's :func:`~rftgrad.finetune.advantages.advantages` gets the same groups as ``(1, N, G)``.

Run in the verl environment (docs/verl.md):
``OMP_NUM_THREADS=1 /work/verl-venv/bin/python -m pytest tests/integrations -q -p no:cacheprovider``
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch

from rftgrad.finetune.advantages import advantages
from tests.tolerances import VERL_ATOL, VERL_RTOL

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")

GROUP_SIZES = (2, 3, 4, 8, 16)
GROUPS = 64
RESPONSE_LEN = 6


def random_batch(group_size: int, binary: bool, seed: int) -> dict:
    """``GROUPS`` groups of rewards ``(N, G)`` and the shuffled flat verl batch that holds them."""
    rng = np.random.default_rng(seed)
    if binary:
        rewards = (rng.random((GROUPS, group_size)) < rng.random((GROUPS, 1))).astype(np.float32)
    else:
        rewards = rng.normal(size=(GROUPS, group_size)).astype(np.float32) * 2.0
    # some all-equal groups, on a 1/8 grid so that their float32 mean is exact (see below)
    rewards[: GROUPS // 8] = np.round(rewards[: GROUPS // 8, :1] * 8) / 8
    uids = [str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | n, version=4)) for n in range(GROUPS)]
    order = rng.permutation(GROUPS * group_size)  # row k of the batch is flat sample order[k]
    flat = rewards.reshape(-1)[order]
    lengths = rng.integers(1, RESPONSE_LEN + 1, size=len(order))  # reward on the last response token
    mask = (np.arange(RESPONSE_LEN)[None] < lengths[:, None]).astype(np.float32)
    token_rewards = np.zeros_like(mask)
    token_rewards[np.arange(len(order)), lengths - 1] = flat
    index = np.array([uids[k // group_size] for k in order], dtype=object)
    return {
        "rewards": torch.from_numpy(rewards),
        "order": order,
        "token_level_rewards": torch.from_numpy(token_rewards),
        "response_mask": torch.from_numpy(mask),
        "index": index,
    }


def verl_advantages(batch: dict, estimator: str) -> torch.Tensor:
    """verl's per-row advantage (at the first response token), back in ``(N, G)`` group order."""
    common = {"token_level_rewards": batch["token_level_rewards"].clone(), "response_mask": batch["response_mask"]}
    if estimator == "grpo":
        adv, _ = core_algos.compute_grpo_outcome_advantage(**common, index=batch["index"])
    elif estimator == "dr_grpo":
        adv, _ = core_algos.compute_grpo_outcome_advantage(
            **common, index=batch["index"], norm_adv_by_std_in_grpo=False
        )
    else:
        adv, _ = core_algos.compute_rloo_outcome_advantage(**common, index=batch["index"])
    per_row = adv[:, 0]  # every response has its first token unmasked
    # the advantage is broadcast over the response tokens and zero on padding
    assert torch.equal(adv, per_row[:, None] * batch["response_mask"])
    out = torch.empty_like(per_row)
    out[torch.from_numpy(batch["order"])] = per_row
    return out.reshape(batch["rewards"].shape)


def max_differences() -> dict[tuple[str, int, str], float]:
    """``(max |A_rftgrad - A_verl|, max (|A_rftgrad - A_verl| - VERL_RTOL·|A_verl|))`` per (estimator, G,
    reward kind), float32."""
    found = {}
    for g, group_size in enumerate(GROUP_SIZES):
        for binary in (True, False):
            batch = random_batch(group_size, binary, seed=1000 + 2 * g + binary)
            weights = torch.ones(1, GROUPS)
            for kind in ("grpo", "dr_grpo", "rloo"):
                ours = advantages(batch["rewards"][None], kind, weights, scale_rewards="group", std_eps=1e-6)[0]
                theirs = verl_advantages(batch, kind)
                diff = (ours - theirs).abs()
                excess = (diff - VERL_RTOL * theirs.abs()).max().item()  # <= VERL_ATOL when they agree
                found[(kind, group_size, "binary" if binary else "continuous")] = (diff.max().item(), excess)
    return found


def test_advantages_match_verl():
    found = max_differences()
    assert len(found) == 3 * len(GROUP_SIZES) * 2
    worst = {key: value for key, (_, value) in found.items() if not value <= VERL_ATOL}
    assert not worst, worst


def test_verl_groups_by_uid_not_by_position():
    """The shuffled batch splits every group across the batch: verl still finds each group."""
    batch = random_batch(4, binary=False, seed=7)
    positions = {u: np.flatnonzero(batch["index"] == u) for u in set(batch["index"])}
    assert any(np.ptp(p) > 3 for p in positions.values())
    ours = advantages(batch["rewards"][None], "rloo", torch.ones(1, GROUPS))[0]
    torch.testing.assert_close(ours, verl_advantages(batch, "rloo"), atol=VERL_ATOL, rtol=VERL_RTOL)


def test_an_all_equal_float32_group_is_ill_conditioned_in_verl():
    """Eight copies of a generic float32 value: ``torch.mean`` is one ulp off, ``torch.std`` is
    ~1e-7, and verl's GRPO advantage is rounding noise over ``std + 1e-6``, not 0. rftgrad gives
    exactly 0 (an all-equal group's centred reward is 0 by definition), so :func:`random_batch` puts
    its all-equal groups on a grid where both agree."""
    value = torch.tensor(2.337951183319092, dtype=torch.float32)
    rewards = torch.zeros(8, 2)
    rewards[:, 1] = value
    grpo, _ = core_algos.compute_grpo_outcome_advantage(rewards, torch.ones(8, 2), np.array(["a"] * 8, dtype=object))
    assert 0.1 < grpo[:, 0].abs().max().item() < 0.3
    rloo, _ = core_algos.compute_rloo_outcome_advantage(rewards, torch.ones(8, 2), np.array(["a"] * 8, dtype=object))
    assert rloo[:, 0].abs().max().item() < 1e-6  # no division: the ulp stays an ulp


def test_verl_single_sample_group():
    """verl's special case rftgrad does not have: one sample gives GRPO ``r/(1+ε)`` and RLOO ``r``."""
    rewards = torch.tensor([[0.0, 0.7]])
    mask = torch.ones(1, 2)
    grpo, _ = core_algos.compute_grpo_outcome_advantage(rewards.clone(), mask, np.array(["a"], dtype=object))
    rloo, _ = core_algos.compute_rloo_outcome_advantage(rewards.clone(), mask, np.array(["a"], dtype=object))
    assert grpo[0, 0].item() == pytest.approx(0.7 / (1 + 1e-6), abs=1e-7)
    assert rloo[0, 0].item() == pytest.approx(0.7, abs=1e-7)


def test_verl_default_epsilon_is_1e_6():
    import inspect

    for fn in (core_algos.compute_grpo_outcome_advantage, core_algos.compute_rloo_outcome_advantage):
        assert inspect.signature(fn).parameters["epsilon"].default == 1e-6

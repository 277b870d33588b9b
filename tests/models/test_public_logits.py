"""The models' logits functions are public: ``replica_prefix_logits`` / ``replica_sequence_logits``.

They are pure single-replica functions that other modules (rftgrad.theory) transform with
``torch.func``; no private ``_prefix_logits`` / ``_sequence_logits`` is left, and no module
outside rftgrad.models calls a private method of a policy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.func import vmap

from rftgrad.models import POLICIES, SoftmaxPolicy
from tests.models.builders import KINDS, all_outputs, env_for, ids_of, make_policy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cls", [SoftmaxPolicy, *(cls for cls, _ in POLICIES.values())])
def test_logits_methods_are_public(cls):
    for old in ("_prefix_logits", "_sequence_logits"):
        assert not hasattr(cls, old), (cls.__name__, old)
    assert callable(cls.replica_prefix_logits) and callable(cls.replica_sequence_logits)
    assert "replica_prefix_logits" in SoftmaxPolicy.__abstractmethods__


def test_no_module_outside_models_calls_a_private_policy_method():
    private_call = re.compile(r"\b(?!self\b|cls\b)\w+\._(?!_)\w*logits|\._readout_features|\._init_replica")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("rftgrad/theory", "rftgrad/finetune", "rftgrad/diagnose", "rftgrad/envs", "benchmarks", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private_call.search(line)
    ]
    assert offenders == []


@pytest.mark.parametrize("kind", ["tabular", "linear-input_prefix", "mlp", "transformer"])
def test_replica_functions_vmapped_and_tempered_are_the_batched_logits(kind):
    """``prefix_logits`` / ``sequence_logits`` are the replica functions vmapped over R, divided by T."""
    env = env_for(kind)
    policy = make_policy(kind, env, seed=[0, 1], temperature=[1.0, 0.5])
    ids, x = ids_of(env), policy.inputs_from(env)
    outputs = all_outputs(env)  # (N, Y, L)
    temps = policy.temperature
    by_replica = vmap(policy.replica_sequence_logits, in_dims=(0, None, None, None))(policy.params, ids, x, outputs)
    torch.testing.assert_close(
        policy.sequence_logits(ids, x, outputs), by_replica / temps[:, None, None, None, None], rtol=0, atol=0
    )
    prefixes = outputs[..., :1]
    by_replica = vmap(policy.replica_prefix_logits, in_dims=(0, None, None, None))(policy.params, ids, x, prefixes)
    torch.testing.assert_close(
        policy.prefix_logits(ids, x, prefixes), by_replica / temps[:, None, None, None], rtol=0, atol=0
    )


@pytest.mark.parametrize("kind", KINDS[:1] + ("mlp", "transformer"))
def test_inputs_from_hands_out_a_copy(kind):
    env = env_for(kind)
    policy = make_policy(kind, env)
    x = policy.inputs_from(env)
    before = (env.features.clone(), None if env.prompts is None else env.prompts.clone())
    x.zero_() if x.dtype.is_floating_point else x.fill_(0)
    assert torch.equal(env.features, before[0])
    if env.prompts is not None:
        assert torch.equal(env.prompts, before[1])

"""Tests of rftgrad.envs.language: task references, rewards, groups, argument checks, the mixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rftgrad.envs import LANGUAGE_REWARDS, TASKS, language_env, pretraining_mixture, reference
from rftgrad.envs.language import LEARNED_NOISE_WEIGHT, keywords, near_miss_outputs
from rftgrad.errors import ConfigError
from rftgrad.models import TinyTransformerPolicy
from tests.tolerances import ATOL


@pytest.mark.parametrize(
    ("task", "args", "expected"),
    [
        ("copy", [3, 1, 4, 1], [3, 1, 4, 1]),
        ("reverse", [3, 1, 4, 1], [1, 4, 1, 3]),
        ("sort", [3, 1, 4, 1], [1, 1, 3, 4]),
        ("add", [3, 1, 4, 5], [4, 2, 5, 0]),
        ("keyword", [3, 5, 4, 1], [0, 1, 2, 3]),
        ("keyword", [3, 1, 4, 1], [3, 2, 1, 0]),
    ],
)
def test_reference_on_hand_examples(task, args, expected):
    assert reference(task, args, 6).tolist() == expected


def test_reference_batched_and_other_sizes():
    args = np.array([[7, 0, 2, 6, 1], [0, 0, 0, 0, 0]])
    assert reference("add", args, 8).tolist() == [[0, 1, 3, 7, 2], [1, 1, 1, 1, 1]]
    assert reference("keyword", args, 8).tolist() == [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]  # trigger 7
    hit, miss = keywords(3, 5)
    assert hit.tolist() == [0, 1, 2, 0, 1] and miss.tolist() == [1, 0, 2, 1, 0]
    with pytest.raises(ConfigError, match="unknown task"):
        reference("translate", [1, 2], 6)


def test_env_layout_and_groups():
    env = language_env(prompts_per_task=10, vocab_size=6, length=4, seed=3)
    assert env.num_inputs == 10 * len(TASKS) and env.prompts.shape == (50, 5)
    assert env.prompt_vocab_size == 6 + len(TASKS) and env.output_space.num_outputs == 6**4
    assert list(env.groups) == list(TASKS)
    stacked = torch.stack(list(env.groups.values()))  # (T, N): every input in exactly one task
    assert torch.equal(stacked.sum(0), torch.ones(50, dtype=torch.long))
    for k, (task, mask) in enumerate(env.groups.items()):
        assert int(mask.sum()) == 10
        assert torch.all(env.prompts[mask, 0] == 6 + k)  # the task marker
        args = env.prompts[mask, 1:]
        assert len({tuple(a) for a in args.tolist()}) == 10  # distinct arguments
        assert torch.equal(env.targets[mask], torch.as_tensor(reference(task, args.numpy(), 6)))
    assert torch.equal(language_env(prompts_per_task=10, seed=3).prompts, env.prompts)  # deterministic
    assert not torch.equal(language_env(prompts_per_task=10, seed=4).prompts, env.prompts)


@pytest.mark.parametrize("reward", LANGUAGE_REWARDS)
def test_rewards_in_range_and_maximal_at_reference(reward):
    env = language_env(("sort", "keyword"), prompts_per_task=4, vocab_size=4, length=3, reward=reward, seed=1)
    table = env.reward_table()  # (8, 64), validated to lie in [-1, 1]
    assert table.shape == (8, 64)
    assert float(table.min()) >= -1.0 and float(table.max()) <= 1.0
    at_ref = table[torch.arange(8), env.target_index()]
    if reward == "learned":  # mostly right: the reference scores >= 1 - 2α
        assert torch.all(at_ref >= 1 - 2 * LEARNED_NOISE_WEIGHT - 1e-12)
        assert float((table - table.mean()).abs().max()) > 0.1
    else:
        assert torch.allclose(at_ref, torch.ones(8, dtype=torch.float64), atol=0)
        assert torch.allclose(table.max(-1).values, torch.ones(8, dtype=torch.float64), atol=0)


def test_position_match_values():
    env = language_env(("copy",), prompts_per_task=2, vocab_size=6, length=4, reward="position_match", seed=0)
    y = env.targets.clone()
    y[0, :2] = (y[0, :2] + 1) % 6  # two of four positions wrong -> 2·0.5 - 1 = 0
    assert torch.allclose(
        env.reward(torch.tensor([0, 1]), y), torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-12
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tasks": ("copy", "translate")}, "tasks"),
        ({"tasks": ()}, "tasks"),
        ({"tasks": ("copy", "copy")}, "tasks"),
        ({"vocab_size": 2}, "vocab_size"),
        ({"length": 1}, "length"),
        ({"prompts_per_task": 0}, "prompts_per_task"),
        ({"vocab_size": 3, "length": 2, "prompts_per_task": 10}, "prompts_per_task"),
        ({"reward": "bleu"}, "unknown reward"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        language_env(**kwargs)


def test_sampled_path_scores_each_sampled_output():
    """Sampled estimators call env.reward on sampled outputs; no table is needed (even past the limit)."""
    env = language_env(prompts_per_task=3, vocab_size=8, length=7, reward="position_match", seed=0)  # 8^7 = 2^21
    policy = TinyTransformerPolicy.for_env(env, d_model=8, num_heads=1, num_layers=1, seed=0, dtype="float64")
    ids = torch.arange(env.num_inputs)
    samples = policy.sample(ids, policy.inputs_from(env), num_samples=5, length=7, seed=0)[0]  # (N, 5, L)
    rewards = env.reward(ids.repeat_interleave(5), samples.reshape(-1, 7)).reshape(env.num_inputs, 5)
    overlap = (samples == env.targets[:, None, :]).double().mean(-1) * 2 - 1  # (N, 5)
    assert torch.allclose(rewards, overlap, atol=1e-12)


def test_pretraining_mixture_coverage_and_weights():
    env = language_env(prompts_per_task=20, seed=0)
    coverage = {"copy": 1.0, "reverse": 0.6, "sort": 0.3, "add": 0.1, "keyword": 0.0}
    mix = pretraining_mixture(env, coverage, noise=0.05, seed=0)
    assert mix.outputs.shape == (100, 3, 4) and mix.weights.shape == (100, 3)
    assert torch.allclose(mix.weights.sum(-1), torch.ones(100, dtype=torch.float64), atol=1e-12)
    for task, share in coverage.items():
        assert int(mix.covered[env.groups[task]].sum()) == round(20 * share)
    assert torch.equal(mix.outputs[:, 0], env.targets) and torch.equal(mix.outputs[:, 1], env.prompts[:, 1:])
    expected_ref = torch.where(mix.covered, 0.95, 0.0).double()
    assert torch.allclose(mix.weights[:, 0], expected_ref, atol=1e-12)
    assert torch.allclose(mix.weights[:, 2], torch.full((100,), 0.05, dtype=torch.float64), atol=1e-12)
    again = pretraining_mixture(env, coverage, noise=0.05, seed=0)
    assert torch.equal(again.outputs, mix.outputs) and torch.equal(again.covered, mix.covered)
    with pytest.raises(ConfigError, match="coverage must name"):
        pretraining_mixture(env, {"copy": 1.0})
    with pytest.raises(ConfigError, match="lie in"):
        pretraining_mixture(env, {**coverage, "add": 1.5})


def test_graded_mixture_puts_its_mass_where_the_docstring_says():
    """Covered prompt: (1-ε)·u_n on y*, (1-ε)(1-u_n)/M on each near miss (1 or 2 symbols off y*), ε on the random
    output, with u_n uniform on reference_range; uncovered prompt: 1-ε on the echo, ε on the random output."""
    env = language_env(prompts_per_task=40, seed=0)
    noise, count, (low, high) = 0.05, 3, (0.2, 0.9)
    coverage = {"copy": 1.0, "reverse": 0.6, "sort": 0.3, "add": 0.1, "keyword": 0.0}
    mix = pretraining_mixture(env, coverage, noise=noise, seed=0, near_misses=count, reference_range=(low, high))
    two_valued = pretraining_mixture(env, coverage, noise=noise, seed=0)
    n = env.num_inputs
    assert mix.outputs.shape == (n, 2 + count, 4) and mix.weights.shape == (n, 2 + count)
    assert torch.allclose(mix.weights.sum(-1), torch.ones(n, dtype=torch.float64), atol=ATOL[torch.float64])
    assert torch.equal(mix.covered, two_valued.covered)  # the graded draws do not move the coverage draw
    assert torch.equal(mix.outputs[:, 0], env.targets) and torch.equal(mix.outputs[:, 2], two_valued.outputs[:, 2])
    covered = mix.covered
    share = mix.weights[covered, 0] / (1 - noise)  # u_n of the covered prompts
    assert bool(((share >= low) & (share <= high)).all()) and float(share.max() - share.min()) > 0.5 * (high - low)
    assert len(torch.unique(share)) == int(covered.sum())  # a continuum: every covered prompt its own share
    misses = torch.cat([mix.outputs[covered, 1:2], mix.outputs[covered, 3:]], dim=1)  # (C, M, L)
    expected_miss = ((1 - noise) * (1 - share) / count)[:, None].expand(-1, count)
    got_miss = torch.cat([mix.weights[covered, 1:2], mix.weights[covered, 3:]], dim=1)
    assert torch.allclose(got_miss, expected_miss, atol=ATOL[torch.float64])
    wrong = (misses != env.targets[covered][:, None, :]).sum(-1)  # (C, M) symbols off y*
    assert wrong.tolist() == [[1, 2, 1]] * int(covered.sum())
    assert torch.equal(mix.outputs[~covered, 1], env.prompts[~covered, 1:])  # uncovered: the echo
    assert torch.allclose(mix.weights[~covered, 1], torch.full(((~covered).sum(),), 1 - noise, dtype=torch.float64))
    assert float(mix.weights[~covered][:, [0, 3, 4]].abs().max()) == 0.0
    assert torch.allclose(mix.weights[:, 2], torch.full((n,), noise, dtype=torch.float64), atol=ATOL[torch.float64])
    again = pretraining_mixture(env, coverage, noise=noise, seed=0, near_misses=count, reference_range=(low, high))
    assert torch.equal(again.outputs, mix.outputs) and torch.equal(again.weights, mix.weights)
    with pytest.raises(ConfigError, match="reference_range"):
        pretraining_mixture(env, coverage, near_misses=0, reference_range=(0.0, 1.0))
    with pytest.raises(ConfigError, match="reference_range"):
        pretraining_mixture(env, coverage, near_misses=1, reference_range=(0.8, 0.2))
    with pytest.raises(ConfigError, match="near_misses"):
        pretraining_mixture(env, coverage, near_misses=-1)


def test_near_miss_outputs_differ_in_one_or_two_symbols():
    targets = torch.as_tensor(np.random.default_rng(0).integers(0, 5, size=(50, 4)))
    misses = near_miss_outputs(targets, 4, 5, np.random.default_rng(1))  # (50, 4, 4)
    assert misses.shape == (50, 4, 4) and int(misses.min()) >= 0 and int(misses.max()) <= 4
    assert (misses != targets[:, None]).sum(-1).tolist() == [[1, 2, 1, 2]] * 50

"""Tests of rftgrad.finetune.pretraining: the on-disk cache of pretrained transformers."""

from __future__ import annotations

import pytest
import torch

import rftgrad.finetune.pretraining as pretrain_module
from rftgrad.envs import language_env, pretraining_mixture
from rftgrad.finetune.pretraining import cache_key, cache_root, pretrained_transformer, task_summary

TINY = {"steps": 5, "lr": 0.01, "d_model": 8, "num_heads": 1, "num_layers": 1, "dtype": "float64"}


@pytest.fixture
def setup():
    env = language_env(("copy", "add"), prompts_per_task=4, vocab_size=3, length=2, seed=0)
    return env, pretraining_mixture(env, {"copy": 1.0, "add": 0.5}, seed=0)


def _files(tmp_path):
    return sorted(p.name for p in (tmp_path / "pretrained").iterdir())


def _fail(*args, **kwargs):
    raise AssertionError("pretrain called although the cache should have been used")


def test_second_call_loads_from_cache(setup, tmp_path, monkeypatch):
    env, mix = setup
    first = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path, **TINY)
    names = _files(tmp_path)
    assert len(names) == 2 and names[1] == names[0] + ".sha256"
    monkeypatch.setattr(pretrain_module, "pretrain", _fail)
    second = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path, **TINY)
    for key, value in first.params.items():
        assert torch.equal(second.params[key], value)


def test_pretraining_changes_weights_and_lowers_loss(setup, tmp_path):
    env, mix = setup
    untrained = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path, **{**TINY, "steps": 0})
    trained = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path, **{**TINY, "steps": 30, "lr": 0.05})
    ids = torch.arange(env.num_inputs)

    def loss(policy):
        logp = policy.log_prob(ids, policy.inputs_from(env), mix.outputs)[0]  # (N, S)
        return float(-(mix.weights * logp).sum(-1).mean())

    assert loss(trained) < loss(untrained) - 0.1
    assert len(_files(tmp_path)) == 4  # two keys (steps differ), two files each


def test_corrupted_cache_is_recomputed_with_warning(setup, tmp_path):
    env, mix = setup
    first = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path, **TINY)
    weights = next(p for p in (tmp_path / "pretrained").iterdir() if p.suffix == ".pt")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        again = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path, **TINY)
    for key, value in first.params.items():
        assert torch.equal(again.params[key], value)
    weights.write_bytes(b"not a torch file")  # unreadable and no matching checksum
    weights.with_name(weights.name + ".sha256").unlink()
    with pytest.warns(RuntimeWarning, match="missing checksum"):
        pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path, **TINY)
    assert weights.with_name(weights.name + ".sha256").exists()  # rewritten


def test_key_depends_on_seed_and_mixture_and_training_is_deterministic(setup, tmp_path):
    env, mix = setup
    a = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path / "a", **TINY)
    b = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path / "b", **TINY)  # recomputed in a fresh folder
    for key, value in a.params.items():
        assert torch.equal(b.params[key], value)
    c = pretrained_transformer(env, mix, seed=1, cache_dir=tmp_path / "a", **TINY)
    assert not torch.equal(c.params["tok_emb"], a.params["tok_emb"])
    other = pretraining_mixture(env, {"copy": 1.0, "add": 0.0}, seed=0)
    pretrained_transformer(env, other, seed=0, cache_dir=tmp_path / "a", **TINY)
    assert len(_files(tmp_path / "a")) == 6  # three distinct keys


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTGRAD_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("RFTGRAD_CACHE")
    assert cache_root().parts[-2:] == (".cache", "rftgrad")


def test_task_summary_matches_exact_values(setup, tmp_path):
    env, mix = setup
    policy = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path, **TINY)
    summary = task_summary(policy, env).set_index("group")
    assert list(summary.index) == ["all", "copy", "add"]
    table = env.reward_table()  # (N, 9)
    probs = policy.log_prob(
        torch.arange(env.num_inputs), policy.inputs_from(env), env.output_space.enumerate()[None].expand(8, -1, -1)
    )[0].exp()  # (N, 9)
    mean = (probs * table).sum(-1)
    std = (probs * (table - mean[:, None]) ** 2).sum(-1).sqrt()
    for task, mask in env.groups.items():
        assert summary.loc[task, "reward_mean"] == pytest.approx(float(mean[mask].mean()), abs=1e-10)
        assert summary.loc[task, "reward_std"] == pytest.approx(float(std[mask].mean()), abs=1e-10)
    assert 0.0 <= summary.loc["all", "frac_stalled"] <= 1.0


def test_pretraining_does_not_depend_on_the_thread_count(setup, tmp_path):
    """Pretraining runs on one thread, so the weights are bit-identical whatever torch's thread count is
    (and the caller's thread count is restored)."""
    env, mix = setup
    settings = {**TINY, "steps": 30, "dtype": "float32", "d_model": 16, "num_heads": 2}
    before = torch.get_num_threads()
    weights = []
    for threads, folder in ((1, "one"), (2, "two")):
        torch.set_num_threads(threads)
        try:
            policy = pretrained_transformer(env, mix, cache_dir=tmp_path / folder, **settings)
            assert torch.get_num_threads() == threads
        finally:
            torch.set_num_threads(before)
        weights.append(policy.params)
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_graded_mixtures_never_reuse_a_two_valued_cached_model(setup, tmp_path):
    """The near-miss options change the mixture's outputs and weights, hence the key: each graded mixture
    (M = 1 has the two-valued mixture's shape (N, 3, L); M = 2 adds an output; another range moves only the
    weights) pretrains its own model and never loads another's file."""
    env, mix = setup
    coverage = {"copy": 1.0, "add": 0.5}
    graded = [
        pretraining_mixture(env, coverage, seed=0, near_misses=1, reference_range=(0.0, 1.0)),
        pretraining_mixture(env, coverage, seed=0, near_misses=2, reference_range=(0.0, 1.0)),
        pretraining_mixture(env, coverage, seed=0, near_misses=1, reference_range=(0.2, 0.4)),
    ]
    assert graded[0].outputs.shape == mix.outputs.shape  # same shape: only the contents tell them apart
    keys = {cache_key(env, m, seed=0) for m in [mix, *graded]}
    assert len(keys) == 4
    base = pretrained_transformer(env, mix, seed=0, cache_dir=tmp_path, **TINY)
    for count, other in enumerate(graded, start=2):
        model = pretrained_transformer(env, other, seed=0, cache_dir=tmp_path, **TINY)
        assert len(_files(tmp_path)) == 2 * count  # a fresh file pair: the cache was not reused
        assert not torch.equal(model.params["tok_emb"], base.params["tok_emb"])

"""rftgrad.runtime: the one seeding helper (stream on a stable hash) and the thread-count context."""

from __future__ import annotations

import random

import pytest
import torch

from rftgrad.errors import ConfigError
from rftgrad.runtime import (
    DEFAULT_CPU_THREADS,
    ThreadChoice,
    choose_threads,
    environment_info,
    stream,
    stream_seed,
    torch_threads,
    use_threads,
)


def test_stream_seed_is_the_tuple_hash_of_cpython_written_out():
    """The trainer keyed its streams with ``hash((seed, *key))`` before; ``stream_seed`` is that hash in our own
    code, so old runs keep their numbers and new ones do not depend on the interpreter."""
    rng = random.Random(0)
    edge = [0, 1, -1, -2, 2**61 - 1, 2**61, -(2**61), 2**63 - 1, -(2**63), 2**64 + 5]
    keys = [(), (0,), (-1,), tuple(edge)] + [
        tuple(rng.choice([rng.randint(-9, 9), rng.randint(-(2**63), 2**63), rng.randint(0, 2**80)]) for _ in range(n))
        for n in [rng.randint(1, 6) for _ in range(5000)]
    ]
    mismatches = [key for key in keys if stream_seed(*key) != hash(key)]
    assert not mismatches


def test_streams_are_reproducible_and_separate():
    a1 = torch.rand(8, generator=stream(3, 1, 7))
    a2 = torch.rand(8, generator=stream(3, 1, 7))
    assert torch.equal(a1, a2)  # same seed and key: the same draws
    for other in (stream(4, 1, 7), stream(3, 2, 7), stream(3, 1, 8), stream(3, 7, 1)):
        assert not torch.equal(a1, torch.rand(8, generator=other))  # any change of seed, key or order: another stream
    with pytest.raises(TypeError, match="stream keys are integers"):
        stream_seed(1, "batch")
    with pytest.raises(TypeError, match="stream keys are integers"):
        stream_seed(1, True)


def test_torch_threads_restores_the_count_also_on_an_exception():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), torch_threads(target):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_choose_threads_prefers_the_flag_then_omp_num_threads_then_one():
    assert choose_threads(3, {"OMP_NUM_THREADS": "2"}) == ThreadChoice(3, "--threads")
    assert choose_threads(None, {"OMP_NUM_THREADS": " 2 "}) == ThreadChoice(2, "OMP_NUM_THREADS")
    for unusable in ("", "0", "two", "-1", "1.5"):  # torch itself ignores such values: the default applies
        assert choose_threads(None, {"OMP_NUM_THREADS": unusable}) == ThreadChoice(DEFAULT_CPU_THREADS, "default")
    assert choose_threads(None, {}) == ThreadChoice(1, "default")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="threads=.* is invalid"):
            choose_threads(bad, {})


def test_use_threads_sets_and_records_the_choice_then_restores_both():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    assert environment_info()["cpu_threads_source"] == "caller"  # library use: the caller's setting stands
    with use_threads(ThreadChoice(target, "--threads")):
        info = environment_info()
        assert torch.get_num_threads() == target
        assert (info["cpu_threads"], info["cpu_threads_source"]) == (target, "--threads")
    assert torch.get_num_threads() == before and environment_info()["cpu_threads_source"] == "caller"
    with pytest.raises(RuntimeError, match="boom"), use_threads(ThreadChoice(target, "default")):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before and environment_info()["cpu_threads_source"] == "caller"

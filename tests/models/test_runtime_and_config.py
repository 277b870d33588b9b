"""Devices, dtypes, seeds (rftgrad.runtime) and constructor validation of the policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rftgrad.errors import ConfigError, DeviceError, OutputSpaceError, RftgradError
from rftgrad.models import LinearSoftmaxPolicy, MLPPolicy, TabularPolicy, TinyTransformerPolicy
from rftgrad.runtime import generator, replica_seeds, resolve_device, resolve_dtype
from tests.models.builders import KINDS, env_for, make_policy


def test_error_types_subclass_the_builtin_a_caller_expects() -> None:
    assert issubclass(DeviceError, RuntimeError) and issubclass(DeviceError, RftgradError)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, RftgradError)


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda_raises_device_error(name: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(DeviceError, match=rf"device '{name.lower()}' requested but CUDA is not available"):
        resolve_device(name)
    with pytest.raises(DeviceError, match=r"CUDA is not available on this machine; use device='cpu' or device='auto'"):
        resolve_device(torch.device(name.lower()))


@pytest.mark.parametrize("name", ["tpu", "bogus", "cpu:x", ""])
def test_unknown_device_raises_device_error(name: str) -> None:
    with pytest.raises(DeviceError, match=rf"unknown device '{name}'; use 'cpu', 'cuda', 'cuda:N' or 'auto'"):
        resolve_device(name)


def test_cpu_and_auto_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")


def test_dtypes() -> None:
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("Float64") is torch.float64
    assert resolve_dtype(torch.float64) is torch.float64
    with pytest.raises(ConfigError, match=r"unknown dtype 'float16'; use 'float32' or 'float64'"):
        resolve_dtype("float16")
    with pytest.raises(ConfigError, match=r"unknown dtype 'bfloat16'"):
        resolve_dtype("bfloat16")
    with pytest.raises(ConfigError, match=r"unsupported dtype torch\.float16; use torch\.float32 or torch\.float64"):
        resolve_dtype(torch.float16)


def test_replica_seeds() -> None:
    assert replica_seeds(3) == [3]
    assert replica_seeds(3, 4) == [3, 4, 5, 6]
    assert replica_seeds([9, 2, 9]) == [9, 2, 9]
    assert replica_seeds((1, 2), 2) == [1, 2]
    with pytest.raises(ConfigError, match=r"2 seeds given for num_replicas=3; give one seed per replica"):
        replica_seeds([1, 2], 3)
    with pytest.raises(ConfigError, match=r"3 seeds given for num_replicas=1; give one seed per replica"):
        replica_seeds([1, 2, 3], 1)
    with pytest.raises(ConfigError, match=r"seed list is empty; give at least one seed"):
        replica_seeds([])
    with pytest.raises(ConfigError, match=r"num_replicas must be >= 1, got 0"):
        replica_seeds(1, 0)


def test_numpy_integer_seed_is_accepted() -> None:
    assert replica_seeds(np.int64(3), 2) == [3, 4]


@pytest.mark.parametrize("seed", [3.5, [1.5, 2]])
def test_non_integer_seed_raises_config_error(seed) -> None:
    with pytest.raises(ConfigError, match=r"seed"):
        replica_seeds(seed)


def test_generator_is_seeded_on_the_cpu() -> None:
    first = torch.rand(5, generator=generator(17))
    assert torch.equal(first, torch.rand(5, generator=generator(17)))
    assert not torch.equal(first, torch.rand(5, generator=generator(18)))
    assert generator(0).device == torch.device("cpu")


@pytest.mark.parametrize("kind", KINDS)
def test_bogus_device_in_a_constructor_raises_device_error(kind: str) -> None:
    with pytest.raises(DeviceError, match=r"unknown device 'bogus'; use 'cpu', 'cuda', 'cuda:N' or 'auto'"):
        make_policy(kind, env_for(kind), device="bogus")


@pytest.mark.parametrize("kind", KINDS)
def test_bad_dtype_in_a_constructor_raises_config_error(kind: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown dtype 'float16'"):
        make_policy(kind, env_for(kind), dtype="float16")


@pytest.mark.parametrize("kind", KINDS)
def test_policy_lives_on_the_requested_device_and_dtype(kind: str) -> None:
    policy = make_policy(kind, env_for(kind), device="auto", dtype="float32")
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert policy.device == expected and policy.dtype is torch.float32
    for value in policy.params.values():
        assert value.device.type == expected.type and value.dtype is torch.float32
    assert policy.temperature.dtype is torch.float32


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: MLPPolicy(4, 3, activation="sigmoid"),
         r"unknown activation 'sigmoid'; choose one of relu, tanh, gelu"),
        (lambda: MLPPolicy(4, 3, hidden=()), r"hidden widths must be a non-empty list of positive ints, got \(\)"),
        (lambda: MLPPolicy(4, 3, hidden=(8, 0)),
         r"hidden widths must be a non-empty list of positive ints, got \(8, 0\)"),
        (lambda: TinyTransformerPolicy(5, 2, 3, 3, d_model=30, num_heads=4),
         r"num_heads=4 must divide d_model=30 \(both >= 1\)"),
        (lambda: TinyTransformerPolicy(5, 2, 3, 3, d_model=8, num_heads=0), r"num_heads=0 is invalid: .* >= 1"),
        (lambda: TinyTransformerPolicy(5, 2, 3, 3, num_layers=-1), r"num_layers=-1 is invalid: .* num_layers >= 1"),
        (lambda: TinyTransformerPolicy(5, 2, 3, 3, num_layers=0), r"num_layers=0 is invalid: .* num_layers >= 1"),
        (lambda: TinyTransformerPolicy(0, 2, 3, 3), r"prompt_vocab_size=0 is invalid: .* >= 1"),
        (lambda: LinearSoftmaxPolicy(4, 3, features="bogus"),
         r"unknown feature map 'bogus'; choose one of input, input_position, input_prefix, input_last_token"),
    ],
)
def test_invalid_constructor_arguments_raise_config_error(build, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: TabularPolicy(3, 1), r"vocabulary size V=1 is invalid; a softmax policy needs V >= 2"),
        (lambda: TabularPolicy(3, 3, max_length=0), r"output length L=0 is invalid; use L >= 1"),
        (lambda: LinearSoftmaxPolicy(4, 1), r"vocabulary size V=1 is invalid"),
    ],
)
def test_invalid_output_space_raises_output_space_error(build, match: str) -> None:
    with pytest.raises(OutputSpaceError, match=match):
        build()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("tabular", 4 * (1 + 3 + 9) * 3),  # N · Σ_{l<L} V^l · V
        ("linear-input", 3 * 10),  # V · D, D = P · P_v = 2 · 5
        ("linear-input_position", 3 * 3 * 10),  # V · L·D
        ("linear-input_prefix", 3 * 13 * 10),  # V · S·D
        ("linear-input_last_token", 3 * (10 + 3 + 3 + 1)),  # V · (D + L + V + 1)
        ("mlp", 5 * 8 + 8 + 8 * 6 + 6 + 6 * 3 + 3),  # D=5 -> 8 -> 6 -> V=3
    ],
)
def test_parameter_counts(kind: str, expected: int) -> None:
    policy = make_policy(kind, env_for(kind), num_replicas=2)
    assert policy.num_parameters == expected
    assert all(value.shape[0] == 2 for value in policy.params.values())
    assert f"{policy.name}: R=2 replicas, {expected} parameters each" in policy.describe()

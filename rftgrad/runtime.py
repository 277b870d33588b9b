"""Devices, dtypes, seeds and the record of the environment a run happened in.

One place for the choices every computation makes: which device (``cpu``, ``cuda``,
``auto``), which float dtype (``float32`` or ``float64``), how replica seeds turn into
random generators, and what is written next to results so a run can be reproduced
(versions, device, git commit).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from rftgrad.errors import ConfigError, DeviceError

__all__ = [
    "resolve_device",
    "resolve_dtype",
    "is_count",
    "is_whole_number",
    "check_seed",
    "replica_seeds",
    "generator",
    "torch_threads",
    "DEFAULT_CPU_THREADS",
    "ThreadChoice",
    "choose_threads",
    "use_threads",
    "stream_seed",
    "stream",
    "git_commit",
    "environment_info",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """Turn ``"cpu" | "cuda" | "cuda:N" | "auto"`` into a ``torch.device``.

    ``auto`` picks CUDA when present and the CPU otherwise. Asking for CUDA on a
    machine without it raises :class:`DeviceError` rather than failing later.
    """
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} requested but CUDA is not available on this machine; "
                "use device='cpu' or device='auto'"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) exist; pick an index below that or use 'cuda'"
            )
        return dev
    raise DeviceError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'")


def resolve_dtype(dtype: str | torch.dtype = "float32") -> torch.dtype:
    """Turn ``"float32" | "float64"`` (or the torch dtype itself) into a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ConfigError(f"unsupported dtype {dtype}; use torch.float32 or torch.float64")
        return dtype
    key = str(dtype).strip().lower()
    if key not in _DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use 'float32' or 'float64'")
    return _DTYPES[key]


def is_count(value: object, least: int = 1) -> bool:
    """Whether ``value`` is an integer (Python or NumPy, not a bool) ``>= least``: the test of every size
    and count argument (inputs, widths, layers, V, L) before it is used."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= least


def is_whole_number(value: object) -> bool:
    """Whether ``value`` is an integer or a finite real with an integer value (``8.0``: what a command
    line parses), not a bool: the test of group sizes that may come from a command line."""
    if isinstance(value, bool):  # NumPy's bool is no numbers.Integral or Real: refused below
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, numbers.Real) and math.isfinite(value) and bool(value == int(value))


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int, or raise :class:`ConfigError` unless it is an integer >= 0.

    Seeds are non-negative everywhere (NumPy's ``default_rng`` refuses negative ones, so every
    seed rftgrad takes, a policy's, an environment's or a config's, follows the same rule).
    """
    if not is_count(seed, 0):
        raise ConfigError(f"{what}={seed!r} is invalid: seeds are integers >= 0; give e.g. {what}=0")
    return int(seed)


def replica_seeds(seed: int | Sequence[int], num_replicas: int | None = None) -> list[int]:
    """Seeds of the R replicas: ``seed, seed+1, ..., seed+R-1`` or an explicit list (every seed >= 0).

    A replica's random draws depend only on its own seed, so replica ``r`` of a batched
    run equals a single-replica run with ``seed=seeds[r]``.
    """
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        count = 1 if num_replicas is None else num_replicas
        if count < 1:
            raise ConfigError(f"num_replicas must be >= 1, got {count}")
        return [check_seed(seed) + r for r in range(count)]
    if not isinstance(seed, Sequence) or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seed
    ):
        raise ConfigError(f"seed must be an integer or a list of integers, got {seed!r}")
    seeds = [check_seed(s) for s in seed]
    if not seeds:
        raise ConfigError("seed list is empty; give at least one seed")
    if num_replicas is not None and num_replicas != len(seeds):
        raise ConfigError(f"{len(seeds)} seeds given for num_replicas={num_replicas}; give one seed per replica")
    return seeds


def generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (draw on CPU, then move: same
    numbers on every device)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` intra-op torch threads (``None``: leave them), then restore the count.

    For code whose float32 results must not depend on the machine's core count (reductions split
    work by thread): ``with torch_threads(1): ...``. The previous count is restored on exit, also
    on an exception, so the caller's setting survives.
    """
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: intra-op torch threads a command of the ``rftgrad`` CLI runs with on a CPU unless ``--threads`` or
#: ``OMP_NUM_THREADS`` says otherwise (see :func:`choose_threads`).
DEFAULT_CPU_THREADS = 1


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op torch threads a command runs with (``count``) and who chose them (``source``):
    ``"--threads"`` (the command line), ``"OMP_NUM_THREADS"`` (the environment) or ``"default"``
    (:data:`DEFAULT_CPU_THREADS`)."""

    count: int
    source: str


def choose_threads(requested: int | None = None, environ: Mapping[str, str] | None = None) -> ThreadChoice:
    """The thread policy of the ``rftgrad`` command line: ``requested`` (``--threads N``) if given, else a valid
    ``OMP_NUM_THREADS`` (a positive integer) from ``environ`` (default ``os.environ``), else
    :data:`DEFAULT_CPU_THREADS` = 1.

    Why one thread by default: every tensor of the toolkit's own workloads is small (thousands to a few
    million numbers), so intra-op parallelism rarely pays, and torch's default of one thread per core
    loses when another process holds a core (benchmarks/README.md, "Threads": on the 2-core CPU,
    ``rftgrad figures --tiny`` with one thread is within 1.04x of two threads on the idle machine and
    1.25x faster than two beside one busy process; two threads there were 4.8x slower before the
    pretraining was pinned to one thread). One thread also makes float32 results the same on machines
    with different core counts. ``--threads N`` (or ``OMP_NUM_THREADS``) serves large models on idle
    many-core machines.

    Raises:
        * :exc:`ConfigError`: ``requested`` is not an integer >= 1.
    """
    if requested is not None:
        if not is_count(requested):
            raise ConfigError(f"threads={requested!r} is invalid: give an integer number of threads >= 1")
        return ThreadChoice(int(requested), "--threads")
    value = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) >= 1:
        return ThreadChoice(int(value), "OMP_NUM_THREADS")
    return ThreadChoice(DEFAULT_CPU_THREADS, "default")


#: the :class:`ThreadChoice` of the command running now (set by :func:`use_threads`), for :func:`environment_info`.
_ACTIVE_THREADS: contextvars.ContextVar[ThreadChoice | None] = contextvars.ContextVar("rftgrad_threads", default=None)


@contextlib.contextmanager
def use_threads(choice: ThreadChoice) -> Iterator[None]:
    """Run the block with ``choice.count`` intra-op torch threads and record the choice, so that
    :func:`environment_info` writes its source into every ``environment.json`` of the block; both are
    restored on exit (the command line wraps each command in it; library code never calls it)."""
    token = _ACTIVE_THREADS.set(choice)
    try:
        with torch_threads(choice.count):
            yield
    finally:
        _ACTIVE_THREADS.reset(token)


_MASK64 = (1 << 64) - 1
_HASH_MODULUS = (1 << 61) - 1  # CPython's modulus for hashing integers on 64-bit builds
_XXPRIME_1, _XXPRIME_2, _XXPRIME_5 = 11400714785074694791, 14029467366897019727, 2870177450012600261


def _int_lane(value: int) -> int:
    """CPython's ``hash(int)`` on 64-bit builds, as an unsigned 64-bit lane: ``±(|v| mod (2^61 - 1))``, -1 -> -2."""
    lane = abs(value) % _HASH_MODULUS
    lane = -lane if value < 0 else lane
    return (-2 if lane == -1 else lane) & _MASK64


def stream_seed(*key: int) -> int:
    """A stable 64-bit seed for the random stream named by the integers ``key`` (signed, as Python's ``hash``).

    The xxHash-style tuple hash of CPython 3.8+ on 64-bit builds, written out so that it depends on
    neither the interpreter nor ``PYTHONHASHSEED`` (integers are never salted): for lanes
    ``h_i = hash(k_i)``, ``acc ← rotl31(acc + h_i·P2)·P1`` from ``acc = P5``, then
    ``acc + (n ⊕ P5 ⊕ 3527539)``, all mod 2^64. It equals ``hash(tuple(key))`` there, which is
    how the trainer keyed its streams before, so recorded runs keep their numbers
    (``tests/test_runtime.py`` checks the equality on random keys).
    """
    acc = _XXPRIME_5
    for item in key:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(f"stream keys are integers, got {item!r}")
        acc = (acc + _int_lane(int(item)) * _XXPRIME_2) & _MASK64
        acc = ((acc << 31) | (acc >> 33)) & _MASK64
        acc = (acc * _XXPRIME_1) & _MASK64
    acc = (acc + (len(key) ^ (_XXPRIME_5 ^ 3527539))) & _MASK64
    if acc == _MASK64:  # -1 is reserved
        return 1546275796
    return acc - (1 << 64) if acc >> 63 else acc


def stream(seed: int, *key: int) -> torch.Generator:
    """The CPU generator of stream ``key`` of replica seed ``seed``: ``generator(stream_seed(seed, *key) mod 2^63)``.

    One stream per purpose (minibatches, phase subsets, ...; each names itself with integer
    constants and the step), so that adding draws to one stream never shifts another.
    """
    return generator(stream_seed(seed, *key) & 0x7FFF_FFFF_FFFF_FFFF)


def git_commit(path: str | Path | None = None) -> str | None:
    """The git commit of the working tree at ``path`` (None outside a repository)."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(device: torch.device | str | None = None) -> dict[str, object]:
    """Versions, device and git commit, as stored next to every result."""
    packages = {}
    for name in ("rftgrad", "torch", "numpy", "scipy", "sympy", "pandas", "scikit-learn", "ray"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    info: dict[str, object] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "git_commit": git_commit(),
        "cuda_available": torch.cuda.is_available(),
        # float32 CPU reductions split work by thread, so results can differ in the last bits between thread
        # counts: the same config and seed reproduce exactly at the same count (set OMP_NUM_THREADS to pin it)
        "cpu_threads": torch.get_num_threads(),
        # who chose that count: "--threads", "OMP_NUM_THREADS" or "default" (the CLI's policy, choose_threads),
        # or "caller" when rftgrad is used as a library and the caller's torch setting stands
        "cpu_threads_source": choice.source if (choice := _ACTIVE_THREADS.get()) is not None else "caller",
    }
    if device is not None:
        dev = torch.device(device)
        info["device"] = str(dev)
        if dev.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(dev)
    return info

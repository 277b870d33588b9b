"""Exception types of rftgrad.

Every error the toolkit raises on bad input is one of these, with a one-line message
that names the problem and the fix. They subclass the built-in type a caller would
expect (``ValueError`` for bad values, ``RuntimeError`` for an unusable device), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "RftgradError",
    "RewardRangeError",
    "OutputSpaceError",
    "EnumerationLimitError",
    "DeviceError",
    "ShapeMismatchError",
    "ConfigError",
    "InitializationError",
    "OutputError",
    "CheckpointError",
    "first_line",
]


class RftgradError(Exception):
    """Base class of every error rftgrad raises on purpose."""


class RewardRangeError(RftgradError, ValueError):
    """A reward is NaN or outside [-1, 1] (Theorem 1 needs bounded rewards)."""


class OutputSpaceError(RftgradError, ValueError):
    """An output space is invalid: vocabulary size V < 2 or output length L < 1."""


class EnumerationLimitError(RftgradError, ValueError):
    """An output space is too large to enumerate exactly (V**L past the limit)."""


class DeviceError(RftgradError, RuntimeError):
    """An unknown device name, or CUDA asked for where none is present."""


class ShapeMismatchError(RftgradError, ValueError):
    """A policy and an environment (or two tensors) disagree on a shape."""


class ConfigError(RftgradError, ValueError):
    """A configuration value is out of its allowed range (e.g. a fraction outside [0, 1])."""


class InitializationError(RftgradError, ValueError):
    """A policy could not be initialised to the requested output probabilities."""


class OutputError(RftgradError, ValueError):
    """An output location that cannot be used: not a directory, not writable, in use by another run,
    or holding files that writing there would replace (pass ``overwrite=True`` / ``--overwrite``)."""


class CheckpointError(RftgradError, ValueError):
    """A training checkpoint that is truncated, corrupt, or from another run: the message names the file to delete."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, stripped (else the exception's type name).

    For quoting a third-party error (transformers' run over several lines) inside a one-line message.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__

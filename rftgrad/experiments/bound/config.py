"""Settings of the ``bound`` experiment (defaults: the quick budget)."""

from __future__ import annotations

from dataclasses import dataclass

from rftgrad.theory.instances import POLICY_KINDS


@dataclass(frozen=True)
class Config:
    """Random instances per policy class, evaluated exactly (see rftgrad.theory.instances)."""

    examples_per_kind: int = 150  # random (environment, policy) instances per policy class
    kinds: tuple[str, ...] = POLICY_KINDS  # policy classes to draw
    max_length: int = 5  # largest output length L
    max_outputs: int = 1024  # largest output space V^L drawn
    seed: int = 0  # seed of the instance draw


#: the paper-scale budget (``--full``): thousands of random policies per class.
FULL = {"examples_per_kind": 2500}

#: a budget the test suite runs in seconds.
TESTING: dict[str, object] = {"examples_per_kind": 6, "max_length": 3}

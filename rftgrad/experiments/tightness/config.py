"""Settings of the ``tightness`` experiment (defaults: the quick budget)."""

from __future__ import annotations

from dataclasses import dataclass

from rftgrad.theory.instances import POLICY_KINDS


@dataclass(frozen=True)
class Config:
    """The shared-softmax witness over L, and a gradient-ascent search on the bound ratio."""

    lengths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)  # witness output lengths L
    probs: tuple[float, ...] = (0.1, 0.25, 0.5)  # witness probability of the rewarded token
    search_kinds: tuple[str, ...] = POLICY_KINDS  # policy classes searched
    search_vocab: int = 3  # V of the searched instances
    search_length: int = 3  # L of the searched instances (the MLP uses L = 1)
    restarts: int = 8  # random restarts, run as replicas of one program
    steps: int = 150  # Adam steps on log(ratio) over parameters and rewards
    lr: float = 0.05  # Adam learning rate
    gamma_every: int = 10  # steps between recomputations of γ (it moves with the parameters)
    seed: int = 0  # seed of the instances and restarts


#: the paper-scale budget (``--full``).
FULL = {"lengths": tuple(range(1, 13)), "restarts": 32, "steps": 1000}

#: a budget the test suite runs in seconds.
TESTING: dict[str, object] = {"steps": 20, "restarts": 3, "gamma_every": 5, "probs": (0.5, 0.2)}

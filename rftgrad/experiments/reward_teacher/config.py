"""Settings of the ``reward_teacher`` experiment (past the paper: Razin et al. 2025, arXiv 2503.15477).

A tabular softmax policy over ``num_outputs`` outputs for each of ``num_inputs`` inputs, a ground-truth
reward, proxy reward models from named families (``family:parameter``,
:data:`rftgrad.experiments.reward_teacher.PROXY_FAMILIES`) and two initial policies that prefer
different bands of the ground-truth reward. Each proxy is taught by exact gradient flow of the mean
proxy objective (and checked by exact gradient ascent with ``lr``); its teaching time is the flow time
for the mean ground-truth reward to rise by ``rise``; proxies that do not get there by ``t_max`` are
censored. Defaults: the quick budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rftgrad.errors import ConfigError
from rftgrad.experiments.reward_teacher.teacher import parse_proxy

#: the default proxies: accuracy-1 rescalings and band compressions, noisy and sparse (indicator) rewards.
DEFAULT_PROXIES = (
    "scaled:1", "scaled:0.3", "scaled:0.1", "scaled:0.03", "compressA:0.1", "compressA:0.02", "compressB:0.1",
    "compressB:0.02", "noisy:0.3", "noisy:0.6", "noisy:1", "indicator:0.05", "indicator:0.2",
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    """Proxy reward models of controlled accuracy and variance, taught exactly from two initial policies."""

    num_inputs: int = 8  # N: inputs (prompts), each with its own logits and rewards
    num_outputs: int = 20  # K: outputs per input (one token, enumerated)
    proxies: tuple[str, ...] = DEFAULT_PROXIES  # proxy reward models, family:parameter (see PROXY_FAMILIES)
    policy_centers: tuple[float, ...] = (-0.5, 0.3)  # ground-truth reward each initial policy (A, B) prefers
    policy_width: float = 0.15  # width of that preference (in ground-truth reward units)
    policy_floor: float = 0.001  # share of each initial policy spread uniformly over all outputs
    band: float = 0.3  # half-width of the ground-truth band compressA/compressB compress around A's/B's centre
    rise: float = 0.05  # target: the mean ground-truth reward's rise over its start (the headline teaching time)
    rise_sweep: tuple[float, ...] = (0.02, 0.1, 0.2, 0.3)  # further rises whose times the correlations are also read at
    t_max: float = 1e5  # flow-time budget; a proxy not reaching the target by then is censored
    lr: float = 2.0  # step size of the exact gradient-ascent check (steps x lr against the flow time)
    ascent_proxies: int = 4  # proxies (the first ones) also run by exact gradient ascent, per policy
    trajectory_points: int = 60  # log-spaced times stored per trajectory
    seed: int = 0  # seed of the ground truth and of the noisy proxies' noise

    def rises(self) -> tuple[float, ...]:
        """``rise`` and ``rise_sweep``, sorted, each once."""
        return tuple(sorted({self.rise, *self.rise_sweep}))

    def __post_init__(self) -> None:
        """Refuse bad values before any work."""
        if self.num_inputs < 1 or self.num_outputs < 3:
            raise ConfigError(f"need num_inputs >= 1 and num_outputs >= 3, got {self.num_inputs}, {self.num_outputs}")
        if len(self.proxies) < 3:
            raise ConfigError(f"proxies needs at least 3 reward models to rank, got {len(self.proxies)}")
        if len(set(self.proxies)) != len(self.proxies):
            raise ConfigError("proxies has a duplicate; list each family:parameter once")
        for proxy in self.proxies:
            parse_proxy(proxy)
        if len(self.policy_centers) != 2 or any(abs(c) > 1 for c in self.policy_centers):
            raise ConfigError(f"policy_centers needs two values in [-1, 1] (policies A, B), got {self.policy_centers}")
        if not (self.policy_width > 0 and 0 < self.policy_floor < 1 and 0 < self.band < 1):
            raise ConfigError("need policy_width > 0, 0 < policy_floor < 1 and 0 < band < 1")
        if not all(0 < rise < 2 for rise in (self.rise, *self.rise_sweep)):
            raise ConfigError(f"rise and rise_sweep must lie in (0, 2) (rewards lie in [-1, 1]), got {self.rise}, "
                              f"{self.rise_sweep}")  # fmt: skip
        if not (math.isfinite(self.t_max) and self.t_max > 0 and math.isfinite(self.lr) and 0 < self.lr < self.t_max):
            raise ConfigError(f"need 0 < lr < t_max, both finite, got lr={self.lr}, t_max={self.t_max}")
        if not 0 <= self.ascent_proxies <= len(self.proxies) or self.trajectory_points < 2:
            raise ConfigError("need 0 <= ascent_proxies <= len(proxies) and trajectory_points >= 2")


#: the bigger budget (``--full``): more inputs and outputs, more proxies of every family.
FULL: dict[str, object] = {
    "num_inputs": 32,
    "num_outputs": 40,
    "proxies": (
        *DEFAULT_PROXIES,
        "scaled:0.01",
        "compressA:0.3",
        "compressB:0.3",
        "noisy:0.1",
        "noisy:0.2",
        "noisy:0.45",
        "indicator:0.1",
        "indicator:0.4",
    ),  # fmt: skip
    "ascent_proxies": 8,
    "trajectory_points": 120,
}

#: a budget the test suite runs in seconds.
TESTING: dict[str, object] = {
    "num_inputs": 4,
    "proxies": (
        "scaled:1",
        "scaled:0.1",
        "scaled:0.03",
        "compressA:0.02",
        "compressB:0.02",
        "noisy:0.3",
        "indicator:0.2",
    ),  # fmt: skip
    "ascent_proxies": 2,
    "trajectory_points": 20,
}

"""Settings of the ``dynamics`` experiment (defaults: the quick budget)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rftgrad.errors import ConfigError
from rftgrad.theory.dynamics import check_num_labels, check_probability, check_start_and_target


@dataclass(frozen=True)
class Config:
    """Hitting times of a target expected reward under RFT and SFT (Theorem 2, docs/paper.md §3)."""

    num_labels: tuple[int, ...] = (2, 10, 100)  # K of the flow sweep (panel 1)
    p0_min: float = 1e-8  # smallest initial probability of the correct label
    p0_max: float = 0.4  # largest initial probability of the correct label
    points_per_decade: int = 1  # log-spaced p0 values per decade (p0_min and p0_max always included)
    target: float = 0.0  # target expected reward V_target (p1 = (V_target + 1)/2)
    fit_p0_min: float = 1e-6  # smallest p0 of the fitted log-log slopes
    fit_p0_max: float = 1e-2  # largest p0 of the fitted log-log slopes
    discrete_labels: int = 10  # K of the gradient-descent and Adam runs (panel 2)
    gd_p0_min: float = 1e-4  # smallest p0 for gradient descent (RFT needs ~T/η ∝ 1/(p0 η) steps)
    gd_step_sizes: tuple[float, ...] = (1.0, 0.3, 0.1)  # gradient-descent step sizes η
    adam_step_sizes: tuple[float, ...] = (0.1, 0.03, 0.01)  # Adam learning rates η (β = 0.9, 0.999, ε = 1e-8)
    max_steps: int = 1_000_000  # cap on discrete steps per run (a run past it is recorded as not reached)
    correlated_labels: int = 10  # K of the correlated-inputs runs (panel 3)
    correlated_p0: float = 1e-4  # initial p of the watched small-STD input
    neighbour_p0: float = 0.5  # initial p of its neighbour on the neighbour's own label
    correlation: float = 0.5  # x_watched · x_neighbour (unit-norm inputs, Gram [[1, ρ], [ρ, 1]])
    correlated_t_max: float = 1e6  # end of the correlated-inputs trajectories
    trajectory_points: int = 100  # log-spaced times stored per trajectory

    def __post_init__(self) -> None:
        """Refuse bad values before any work: p0 ranges, targets, K, step sizes, correlation, budgets."""
        check_start_and_target([self.p0_min, self.p0_max, self.correlated_p0], self.target)
        check_probability([self.fit_p0_min, self.fit_p0_max, self.gd_p0_min, self.neighbour_p0])
        if not self.fit_p0_min < self.fit_p0_max:
            raise ConfigError(f"fit window needs fit_p0_min < fit_p0_max, got {self.fit_p0_min}, {self.fit_p0_max}")
        if not (self.p0_min < self.p0_max and self.p0_min <= self.gd_p0_min <= self.p0_max):
            raise ConfigError(
                f"need p0_min < p0_max and gd_p0_min between them, got {self.p0_min}, {self.p0_max}, {self.gd_p0_min}"
            )
        for k in (*self.num_labels, self.discrete_labels, self.correlated_labels):
            check_num_labels(k)
        for name in ("gd_step_sizes", "adam_step_sizes"):
            sizes = np.asarray(getattr(self, name), dtype=np.float64)
            if sizes.size == 0 or not np.all(np.isfinite(sizes) & (sizes > 0)):
                raise ConfigError(
                    f"{name}={getattr(self, name)} needs at least one step size, each positive and finite"
                )
        if not self.num_labels:
            raise ConfigError("num_labels needs at least one K >= 2")
        if not -1 < self.correlation < 1:
            raise ConfigError(f"correlation={self.correlation} must lie in (-1, 1) for two distinct unit-norm inputs")
        if self.points_per_decade < 1 or self.max_steps < 1 or self.trajectory_points < 2:
            raise ConfigError("points_per_decade >= 1, max_steps >= 1 and trajectory_points >= 2 are needed")
        if not self.correlated_t_max > 1e-3:
            raise ConfigError(f"correlated_t_max={self.correlated_t_max} must exceed the first stored time 1e-3")


#: the bigger budget (``--full``): four points per decade, gradient descent from p0 = 1e-5, a fourth Adam rate.
FULL = {
    "points_per_decade": 4,
    "gd_p0_min": 1e-5,
    "adam_step_sizes": (0.1, 0.03, 0.01, 0.003),
    "trajectory_points": 300,
}

#: a budget the test suite runs in seconds.
TESTING: dict[str, object] = {
    "num_labels": (2, 10),
    "points_per_decade": 1,
    "gd_p0_min": 1e-3,
    "gd_step_sizes": (1.0, 0.25),
    "adam_step_sizes": (0.1,),
    "correlated_p0": 1e-3,
    "trajectory_points": 30,
}

"""Run ``dynamics``: Theorem 2's hitting times, numeric and closed form, discrete steps, correlated inputs.

1. Flow sweep: for each ``K`` and ``p0`` on a log grid, the time for the expected reward
   ``2p − 1`` to reach ``target`` under the RFT and SFT gradient flows, by ``solve_ivp`` on the
   full ``K``-dimensional logits and by the closed forms of the symmetric reduction.
2. Discrete steps: gradient ascent (several ``η``) and Adam (several learning rates) on the same
   objectives, steps ``n`` to the target and ``n · η``, against the flow's time.
3. Correlated inputs: a small-STD input whose neighbour (``x · x' = ρ``) shares its label
   (helped) or has another label (hurt), against the same input alone; numeric only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rftgrad.experiments.base import RunContext
from rftgrad.experiments.dynamics.config import Config
from rftgrad.theory.dynamics import (
    OBJECTIVES,
    OPTIMIZERS,
    asymptotic_hitting_time,
    closed_form_hitting_time,
    discrete_hitting_steps,
    expected_reward,
    hitting_time_ode,
    p0_grid,
    pm1_rewards,
    solve_flow,
    std_from_p0,
    symmetric_logits,
)

#: the correlated-inputs cases: neighbour label relative to the watched input's label 0 (None: no neighbour).
CASES = {"alone": None, "same label": 0, "other label": 1}


def flow_rows(config: Config, progress: bool) -> pd.DataFrame:
    """Per (objective, K, p0): the ODE hitting time, the closed form, their relative gap, the asymptote."""
    grid = p0_grid(config.p0_min, config.p0_max, config.points_per_decade)
    jobs = [(obj, k, p0) for obj in OBJECTIVES for k in config.num_labels for p0 in grid]
    rows = []
    for objective, k, p0 in tqdm(jobs, desc="flow hitting times", disable=not progress, leave=False):
        numeric = hitting_time_ode(float(p0), k, config.target, objective)
        closed = float(closed_form_hitting_time(p0, k, config.target, objective))
        std0 = float(std_from_p0(p0))
        rows.append(
            {
                "objective": objective.upper(),
                "num_labels": k,
                "p0": float(p0),
                "std0": std0,
                "target": config.target,
                "time_ode": numeric,
                "time_closed_form": closed,
                "rel_error": abs(numeric - closed) / closed,
                "time_asymptotic": float(asymptotic_hitting_time(std0, k, objective)),
                "in_fit_window": bool(config.fit_p0_min * (1 - 1e-9) <= p0 <= config.fit_p0_max * (1 + 1e-9)),
            }
        )
    return pd.DataFrame(rows)


def discrete_rows(config: Config, progress: bool) -> pd.DataFrame:
    """Per (optimizer, objective, η, p0): steps to the target, ``steps · η`` and the flow's time."""
    k = config.discrete_labels
    full = p0_grid(config.p0_min, config.p0_max, config.points_per_decade)
    grids = {"sgd": full[full >= config.gd_p0_min * (1 - 1e-12)], "adam": full}
    sizes = {"sgd": config.gd_step_sizes, "adam": config.adam_step_sizes}
    rows = []
    jobs = [(opt, obj) for opt in OPTIMIZERS for obj in OBJECTIVES]
    for optimizer, objective in tqdm(jobs, desc="discrete steps", disable=not progress, leave=False):
        p0 = grids[optimizer][:, None]  # (P, 1)
        eta = np.asarray(sizes[optimizer], dtype=np.float64)[None, :]  # (1, S)
        steps = discrete_hitting_steps(p0, k, config.target, objective, eta, optimizer, config.max_steps)  # (P, S)
        flow = closed_form_hitting_time(p0[:, 0], k, config.target, objective)  # (P,)
        for i, j in np.ndindex(steps.shape):
            n = int(steps[i, j])
            rows.append(
                {
                    "optimizer": optimizer,
                    "objective": objective.upper(),
                    "step_size": float(eta[0, j]),
                    "num_labels": k,
                    "p0": float(p0[i, 0]),
                    "std0": float(std_from_p0(p0[i, 0])),
                    "target": config.target,
                    "steps": n,
                    "time": n * float(eta[0, j]) if n > 0 else math.nan,
                    "time_flow": float(flow[i]),
                }
            )
    return pd.DataFrame(rows)


def correlated_rows(config: Config, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trajectories and hitting times of a small-STD input alone, helped and hurt by a neighbour."""
    k, rho = config.correlated_labels, config.correlation
    times = np.geomspace(1e-3, config.correlated_t_max, config.trajectory_points)
    trajectories, hits = [], []
    jobs = [(obj, case) for obj in OBJECTIVES for case in CASES]
    for objective, case in tqdm(jobs, desc="correlated inputs", disable=not progress, leave=False):
        neighbour = CASES[case]
        watched = symmetric_logits(config.correlated_p0, k, 0)
        if neighbour is None:
            logits, labels, gram = watched[None], [0], None
        else:
            logits = np.stack([watched, symmetric_logits(config.neighbour_p0, k, neighbour)])  # (2, K)
            labels, gram = [0, neighbour], np.array([[1.0, rho], [rho, 1.0]])
        solution = solve_flow(logits, objective, labels, gram=gram, target=config.target, terminal=False, t_eval=times)
        rewards = [pm1_rewards(k, label) for label in labels]
        values = [expected_reward(solution.logits[:, i], rewards[i]) for i in range(len(labels))]  # (T,) each
        for step, time in enumerate(solution.times):
            trajectories.append(
                {
                    "objective": objective.upper(),
                    "case": case,
                    "correlation": 0.0 if neighbour is None else rho,
                    "time": float(time),
                    "reward_mean": float(values[0][step]),
                    "neighbour_reward_mean": float(values[1][step]) if neighbour is not None else math.nan,
                }
            )
        hits.append(
            {
                "objective": objective.upper(),
                "case": case,
                "correlation": 0.0 if neighbour is None else rho,
                "num_labels": k,
                "p0": config.correlated_p0,
                "neighbour_p0": config.neighbour_p0 if neighbour is not None else math.nan,
                "target": config.target,
                "hit_time": solution.hit_time,
                "time_alone_closed_form": float(
                    closed_form_hitting_time(config.correlated_p0, k, config.target, objective)
                ),
            }
        )
    return pd.DataFrame(trajectories), pd.DataFrame(hits)


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """Tables ``hitting_times``, ``discrete``, ``correlated_trajectories`` and ``correlated_hitting``."""
    trajectories, hits = correlated_rows(config, context.progress)
    return {
        "hitting_times": flow_rows(config, context.progress),
        "discrete": discrete_rows(config, context.progress),
        "correlated_trajectories": trajectories,
        "correlated_hitting": hits,
    }

"""Run ``reward_teacher``: every proxy reward model taught exactly from both initial policies.

1. The ground truth ``r_G`` ``(N, K)`` and the two initial policies A and B (:func:`initial_logits`).
2. Per proxy and policy: accuracy on pairs from the policy and on uniform pairs, the induced reward
   variance under the initial policy (mean over inputs), the exact gradient flow on the proxy until the
   mean ground-truth reward has risen by ``rise`` (or ``t_max``: censored), the rate bound
   (:func:`time_lower_bound`, :func:`variance_rate_bound`).
3. For the first ``ascent_proxies`` proxies, exact gradient ascent with step ``lr``: ``steps × lr`` against
   the flow's time.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rftgrad.experiments.base import RunContext
from rftgrad.experiments.reward_teacher.config import Config
from rftgrad.experiments.reward_teacher.teacher import (
    POLICY_NAMES,
    ascent_hitting_time,
    ground_truth,
    initial_logits,
    pairwise_accuracy,
    parse_proxy,
    proxy_rewards,
    reward_variance,
    teaching_flow,
    time_lower_bound,
    variance_rate_bound,
)
from rftgrad.theory.dynamics import softmax


def run(config: Config, context: RunContext) -> dict[str, pd.DataFrame]:
    """Tables ``proxies`` (one row per proxy and policy, at ``rise``), ``rise_sweep`` (every rise), ``trajectories``
    and ``ascent``."""
    truth = ground_truth(config.num_inputs, config.num_outputs, config.seed)  # (N, K)
    sigma_truth = (truth.max(-1) - truth.min(-1)) / 2  # (N,) half-ranges, >= STD_pi(r_G) for every pi
    uniform = np.full_like(truth, 1 / config.num_outputs)
    centers = (float(config.policy_centers[0]), float(config.policy_centers[1]))
    grid = np.geomspace(config.t_max * 1e-6, config.t_max, config.trajectory_points)
    specs = [parse_proxy(text) for text in config.proxies]
    rewards = {spec.name: proxy_rewards(spec, truth, centers, config.band, config.seed) for spec in specs}
    rows, trajectories, ascent, sweep = [], [], [], []
    jobs = [(policy, spec) for policy in POLICY_NAMES for spec in specs]
    for policy, spec in tqdm(jobs, desc="teaching flows", disable=not context.progress, leave=False):
        center = centers[POLICY_NAMES.index(policy)]
        logits0 = initial_logits(truth, center, config.policy_width, config.policy_floor)  # (N, K)
        probs0 = softmax(logits0)
        proxy = rewards[spec.name]
        variance = reward_variance(proxy, probs0)  # (N,)
        rises = np.array(config.rises())
        result = teaching_flow(logits0, proxy, truth, rises, config.t_max, grid)
        hit = float(result.hit_times[list(rises).index(config.rise)])
        start = float((probs0 * truth).sum(-1).mean())
        rows.append(
            {
                "proxy": spec.name,
                "family": spec.family,
                "parameter": spec.parameter,
                "policy": policy,
                "accuracy_policy": float(pairwise_accuracy(proxy, truth, probs0).mean()),
                "accuracy_uniform": float(pairwise_accuracy(proxy, truth, uniform).mean()),
                "variance": float(variance.mean()),
                "truth_variance": float(reward_variance(truth, probs0).mean()),
                "truth_start": start,
                "target": start + config.rise,
                "hit_time": hit if math.isfinite(hit) else math.nan,
                "censored": not math.isfinite(hit),
                "t_max": config.t_max,
                "truth_end": float(result.truth_value[-1]),
                "lower_bound": time_lower_bound(np.sqrt(variance), sigma_truth, config.rise),
                "rate_curve": float(
                    variance_rate_bound(variance.mean(), config.num_inputs, float(sigma_truth.max()), config.rise)
                ),
                "sigma_truth": float(sigma_truth.max()),
                "num_inputs": config.num_inputs,
            }
        )
        for rise, time in zip(rises, result.hit_times, strict=True):
            sweep.append({"proxy": spec.name, "policy": policy, "rise": float(rise),
                          "hit_time": float(time) if math.isfinite(time) else math.nan,
                          "censored": not math.isfinite(time), "t_max": config.t_max,
                          "lower_bound": time_lower_bound(np.sqrt(variance), sigma_truth, float(rise))})  # fmt: skip
        for time, truth_value, proxy_value in zip(result.times, result.truth_value, result.proxy_value, strict=True):
            trajectories.append({"proxy": spec.name, "policy": policy, "time": float(time),
                                 "truth_value": float(truth_value), "proxy_value": float(proxy_value)})  # fmt: skip
        if specs.index(spec) < config.ascent_proxies:
            steps_time = ascent_hitting_time(
                logits0, proxy, truth, config.rise, config.lr, int(config.t_max / config.lr)
            )
            ascent.append({"proxy": spec.name, "policy": policy, "lr": config.lr,
                           "ascent_time": steps_time if math.isfinite(steps_time) else math.nan,
                           "flow_time": rows[-1]["hit_time"]})  # fmt: skip
    return {
        "proxies": pd.DataFrame(rows),
        "trajectories": pd.DataFrame(trajectories),
        "rise_sweep": pd.DataFrame(sweep),
        "ascent": pd.DataFrame(ascent, columns=["proxy", "policy", "lr", "ascent_time", "flow_time"]),
    }

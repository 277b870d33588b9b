"""Experiment ``dynamics``: Theorem 2's hitting times of RFT vs SFT, flow, discrete steps and correlated inputs."""

from rftgrad.experiments.dynamics.analysis import (
    adam_slopes,
    discrete_errors,
    draw_discrete_steps,
    draw_flow_times,
    flow_panel_k,
    flow_slopes,
    make_figures,
    plot_dynamics,
    score,
    sft_log_ratio,
)
from rftgrad.experiments.dynamics.config import FULL, TESTING, Config
from rftgrad.experiments.dynamics.run import run

__all__ = [
    "FULL", "TESTING", "Config", "adam_slopes", "discrete_errors", "draw_discrete_steps", "draw_flow_times",
    "flow_panel_k", "flow_slopes", "make_figures", "plot_dynamics", "run", "score", "sft_log_ratio",
]  # fmt: skip

"""The paper's objects as math: exact V, STD, ∇V, martingale variances, γ, bounds, estimators."""

from rftgrad.theory.bounds import (
    BOUNDS,
    bound_table,
    logit_bound,
    martingale_bound,
    paper_bound,
    ratio,
    sharpened_bound,
    tight_bound,
)
from rftgrad.theory.exact import METHODS, ExactResult, exact, params_norm
from rftgrad.theory.gamma import gamma, jacobian_spectral_norms
from rftgrad.theory.instances import (
    POLICY_KINDS,
    REWARD_KINDS,
    InstanceSpec,
    draw_specs,
    random_instance,
    tightness_witness,
)
from rftgrad.theory.montecarlo import reinforce_gradient

__all__ = [
    "BOUNDS", "METHODS", "POLICY_KINDS", "REWARD_KINDS", "ExactResult", "InstanceSpec", "bound_table", "draw_specs",
    "exact", "gamma", "jacobian_spectral_norms", "logit_bound", "martingale_bound", "paper_bound", "params_norm",
    "random_instance", "ratio", "reinforce_gradient", "sharpened_bound", "tight_bound", "tightness_witness",
]

"""The paper's objects as math: exact V, STD, ∇V, martingale variances, γ, bounds, group-estimator closed forms."""

from rftgrad.theory.bounds import (
    BOUNDS,
    bound_table,
    logit_bound,
    martingale_bound,
    paper_bound,
    ratio,
    sharpened_bound,
    stalled,
    tight_bound,
)
from rftgrad.theory.exact import METHODS, ExactResult, exact, params_norm
from rftgrad.theory.gamma import gamma, jacobian_spectral_norms
from rftgrad.theory.group_updates import (
    ESTIMATOR_FORMS,
    Asymptote,
    asymptotic_update,
    expected_samples,
    expected_update,
    frac_reward_zero_std,
    prob_all_equal,
)
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
    "BOUNDS", "ESTIMATOR_FORMS", "METHODS", "POLICY_KINDS", "REWARD_KINDS", "Asymptote", "ExactResult", "InstanceSpec",
    "asymptotic_update", "bound_table", "draw_specs", "exact", "expected_samples", "expected_update",
    "frac_reward_zero_std", "gamma", "jacobian_spectral_norms", "logit_bound", "martingale_bound", "paper_bound",
    "params_norm", "prob_all_equal", "random_instance", "ratio", "reinforce_gradient", "sharpened_bound",
    "stalled", "tight_bound", "tightness_witness",
]

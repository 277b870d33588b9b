"""The paper's objects as math: exact V, STD, ∇V, martingale variances, γ, estimators."""

from rftgrad.theory.exact import METHODS, ExactResult, exact, params_norm
from rftgrad.theory.gamma import gamma, jacobian_spectral_norms
from rftgrad.theory.montecarlo import reinforce_gradient

__all__ = ["METHODS", "ExactResult", "exact", "gamma", "jacobian_spectral_norms", "params_norm", "reinforce_gradient"]

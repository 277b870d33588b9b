"""The paper's objects as math: exact V, STD, ∇V, martingale variances, γ, bounds, group-estimator
closed forms, Theorem 2's dynamics and the symbolic (sympy) checks (docs/paper.md §1-§2, §7).

Modules: ``exact`` (:func:`evaluate`, :func:`mean_gradient`, :func:`step_gradient`, :func:`exact`),
``gamma`` (:func:`gamma`), ``bounds`` (Theorem 1 and sharper bounds: :func:`paper_bound`,
:func:`sharpened_bound`, :func:`martingale_bound`, :func:`tight_bound`, :func:`logit_bound`,
:func:`stalled`), ``instances`` (:func:`random_instance`), ``montecarlo``
(:func:`reinforce_gradient`), ``group_updates`` (docs/paper.md §7: :func:`expected_update`),
``dynamics`` (Theorem 2: :func:`closed_form_hitting_time`), ``symbolic`` (sympy derivations) and
``check`` (the random-instance bound check, :func:`run_check`).

Importing this package does not import sympy: the names of ``symbolic`` (and of ``check``) are in
``__all__`` but load on first access (PEP 562 ``__getattr__``); Theorem 2's module imports sympy
only inside the functions that need it.
"""

from __future__ import annotations

import importlib
from typing import Any

from rftgrad.theory.bounds import (
    ABS_SLACK,
    BOUNDS,
    FAR_FRACTION,
    GAMMA_SLACK,
    PAPER_CONSTANT,
    REL_SLACK,
    bound_columns,
    bound_table,
    columns_as_arrays,
    logit_bound,
    martingale_bound,
    paper_bound,
    ratio,
    rounding_slack,
    sharpened_bound,
    stalled,
    tight_bound,
)
from rftgrad.theory.dynamics import (
    OBJECTIVES,
    OPTIMIZERS,
    FlowSolution,
    SymmetricReduction,
    asymptotic_constant,
    asymptotic_hitting_time,
    check_num_labels,
    check_objective,
    check_probability,
    check_start_and_target,
    closed_form_hitting_time,
    discrete_hitting_steps,
    expected_reward,
    gram_flow,
    hitting_time_ode,
    linear_model_flow,
    logit_gradient,
    logit_gradient_jacobian,
    loglog_slope,
    p0_grid,
    pm1_rewards,
    rft_gradient,
    rft_pm1_gradient,
    sft_gradient,
    softmax,
    solve_flow,
    solve_linear_model,
    std_from_p0,
    symmetric_logits,
    symmetric_reduction,
    symmetric_reduction_checks,
    target_probability,
)
from rftgrad.theory.exact import (
    GRADIENT_MODES,
    METHODS,
    Evaluation,
    ExactResult,
    ExactWorkspace,
    GradientMode,
    MeanGradResult,
    ShapingFn,
    StepGradient,
    evaluate,
    exact,
    mean_gradient,
    params_norm,
    step_gradient,
)
from rftgrad.theory.gamma import (
    GAMMA_METHODS,
    JACOBIAN_BUDGET,
    gamma,
    jacobian_spectral_norms,
)
from rftgrad.theory.group_updates import (
    ESTIMATOR_FORMS,
    GROUP_FORMS,
    Asymptote,
    asymptotic_update,
    conditional_update,
    dapo_factor,
    expected_samples,
    expected_update,
    fit_power,
    frac_reward_zero_std,
    informative_prob,
    leading_term_sympy,
    prob_all_equal,
)
from rftgrad.theory.instances import (
    NEAR_CONSTANT_NOISE,
    POLICY_KINDS,
    REWARD_KINDS,
    InstanceSpec,
    draw_specs,
    random_instance,
    random_reward_table,
    tightness_witness,
)
from rftgrad.theory.montecarlo import (
    reinforce_gradient,
)

#: name -> module, for the names loaded on first access (their modules import sympy or tqdm).
_LAZY: dict[str, str] = {
    "ArrayFunction": "rftgrad.theory.symbolic",
    "SoftmaxGradient": "rftgrad.theory.symbolic",
    "softmax_value_gradient": "rftgrad.theory.symbolic",
    "softmax_gradient_identity_holds": "rftgrad.theory.symbolic",
    "SoftmaxGradientFunctions": "rftgrad.theory.symbolic",
    "lambdify_softmax_gradient": "rftgrad.theory.symbolic",
    "VarianceGap": "rftgrad.theory.symbolic",
    "variance_gap": "rftgrad.theory.symbolic",
    "variance_gap_identity_holds": "rftgrad.theory.symbolic",
    "VarianceBoundFunctions": "rftgrad.theory.symbolic",
    "lambdify_variance_bound": "rftgrad.theory.symbolic",
    "ChebyshevThreshold": "rftgrad.theory.symbolic",
    "chebyshev_threshold_bound": "rftgrad.theory.symbolic",
    "lambdify_chebyshev_bound": "rftgrad.theory.symbolic",
    "MartingaleVariance": "rftgrad.theory.symbolic",
    "martingale_variance_identity": "rftgrad.theory.symbolic",
    "martingale_variance_identity_holds": "rftgrad.theory.symbolic",
    "MartingaleVarianceFunctions": "rftgrad.theory.symbolic",
    "lambdify_martingale_variance": "rftgrad.theory.symbolic",
    "bound_summary": "rftgrad.theory.check",
    "check_specs": "rftgrad.theory.check",
    "run_check": "rftgrad.theory.check",
}
_LAZY_MODULES = ("symbolic", "check")


def __getattr__(name: str) -> Any:
    """PEP 562: import :mod:`~rftgrad.theory.symbolic` (sympy) or :mod:`~rftgrad.theory.check`
    on first access of one of their names."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"rftgrad.theory.{name}")
    else:
        raise AttributeError(f"module 'rftgrad.theory' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ABS_SLACK",
    "ArrayFunction",
    "Asymptote",
    "BOUNDS",
    "ChebyshevThreshold",
    "ESTIMATOR_FORMS",
    "Evaluation",
    "ExactResult",
    "ExactWorkspace",
    "StepGradient",
    "FAR_FRACTION",
    "FlowSolution",
    "GAMMA_METHODS",
    "GAMMA_SLACK",
    "GRADIENT_MODES",
    "GROUP_FORMS",
    "GradientMode",
    "InstanceSpec",
    "JACOBIAN_BUDGET",
    "METHODS",
    "MartingaleVariance",
    "MartingaleVarianceFunctions",
    "MeanGradResult",
    "NEAR_CONSTANT_NOISE",
    "OBJECTIVES",
    "OPTIMIZERS",
    "PAPER_CONSTANT",
    "POLICY_KINDS",
    "REL_SLACK",
    "REWARD_KINDS",
    "ShapingFn",
    "SoftmaxGradient",
    "SoftmaxGradientFunctions",
    "SymmetricReduction",
    "VarianceBoundFunctions",
    "VarianceGap",
    "asymptotic_constant",
    "asymptotic_hitting_time",
    "asymptotic_update",
    "bound_columns",
    "bound_summary",
    "bound_table",
    "chebyshev_threshold_bound",
    "check_num_labels",
    "check_objective",
    "check_probability",
    "check_specs",
    "check_start_and_target",
    "columns_as_arrays",
    "closed_form_hitting_time",
    "conditional_update",
    "dapo_factor",
    "discrete_hitting_steps",
    "draw_specs",
    "evaluate",
    "exact",
    "expected_reward",
    "expected_samples",
    "expected_update",
    "fit_power",
    "frac_reward_zero_std",
    "gamma",
    "gram_flow",
    "hitting_time_ode",
    "informative_prob",
    "jacobian_spectral_norms",
    "lambdify_chebyshev_bound",
    "lambdify_martingale_variance",
    "lambdify_softmax_gradient",
    "lambdify_variance_bound",
    "leading_term_sympy",
    "linear_model_flow",
    "logit_bound",
    "logit_gradient",
    "logit_gradient_jacobian",
    "loglog_slope",
    "martingale_bound",
    "martingale_variance_identity",
    "martingale_variance_identity_holds",
    "mean_gradient",
    "step_gradient",
    "p0_grid",
    "paper_bound",
    "params_norm",
    "pm1_rewards",
    "prob_all_equal",
    "random_instance",
    "random_reward_table",
    "ratio",
    "rounding_slack",
    "reinforce_gradient",
    "rft_gradient",
    "rft_pm1_gradient",
    "run_check",
    "sft_gradient",
    "sharpened_bound",
    "softmax",
    "softmax_gradient_identity_holds",
    "softmax_value_gradient",
    "solve_flow",
    "solve_linear_model",
    "stalled",
    "std_from_p0",
    "symmetric_logits",
    "symmetric_reduction",
    "symmetric_reduction_checks",
    "target_probability",
    "tight_bound",
    "tightness_witness",
    "variance_gap",
    "variance_gap_identity_holds",
]

"""Softmax policies with a leading replica axis R: tabular, linear, MLP, tiny transformer.

A new policy subclasses :class:`SoftmaxPolicy` and writes its parameters' initialisation
(with :func:`init_normal`) and the pure single-replica
:meth:`SoftmaxPolicy.replica_prefix_logits` ``(params, ids, x, prefixes (N, M, l)) -> (N, M, V)``.
A policy whose logits are linear in its parameters may also return a :class:`ClosedFormTree` from
:meth:`SoftmaxPolicy.closed_form_tree`: the exact engine then needs no autograd.
"""

from rftgrad.models.base import (
    INIT_LOGPROB_TOLERANCE,
    TEMPERATURE_HEADROOM,
    ClosedFormTree,
    Params,
    SoftmaxPolicy,
    check_temperatures,
    init_normal,
    temperature_range,
)
from rftgrad.models.build import POLICIES, build_policy
from rftgrad.models.linear import FEATURE_MAPS, LinearSoftmaxPolicy
from rftgrad.models.mlp import ACTIVATIONS, MLPPolicy
from rftgrad.models.tabular import TabularPolicy
from rftgrad.models.transformer import TinyTransformerPolicy

__all__ = [
    "ACTIVATIONS",
    "FEATURE_MAPS",
    "INIT_LOGPROB_TOLERANCE",
    "POLICIES",
    "TEMPERATURE_HEADROOM",
    "ClosedFormTree",
    "LinearSoftmaxPolicy",
    "MLPPolicy",
    "Params",
    "SoftmaxPolicy",
    "TabularPolicy",
    "TinyTransformerPolicy",
    "build_policy",
    "init_normal",
    "check_temperatures",
    "temperature_range",
]

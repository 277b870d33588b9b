"""Softmax policies with a leading replica axis R: tabular, linear, MLP, tiny transformer."""

from rftgrad.models.base import INIT_LOGPROB_TOLERANCE, Params, SoftmaxPolicy
from rftgrad.models.build import POLICIES, build_policy
from rftgrad.models.linear import FEATURE_MAPS, LinearSoftmaxPolicy
from rftgrad.models.mlp import MLPPolicy
from rftgrad.models.tabular import TabularPolicy
from rftgrad.models.transformer import TinyTransformerPolicy

__all__ = [
    "FEATURE_MAPS",
    "INIT_LOGPROB_TOLERANCE",
    "POLICIES",
    "LinearSoftmaxPolicy",
    "MLPPolicy",
    "Params",
    "SoftmaxPolicy",
    "TabularPolicy",
    "TinyTransformerPolicy",
    "build_policy",
]

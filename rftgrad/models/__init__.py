"""Softmax policies with a leading replica axis R: tabular, linear, MLP, tiny transformer.

A new policy subclasses :class:`SoftmaxPolicy` and writes its parameters' initialisation
(with :func:`init_normal`) and the pure single-replica
:meth:`SoftmaxPolicy.replica_prefix_logits` ``(params, ids, x, prefixes (N, M, l)) -> (N, M, V)``.
"""

from rftgrad.models.base import INIT_LOGPROB_TOLERANCE, Params, SoftmaxPolicy, init_normal
from rftgrad.models.linear import FEATURE_MAPS, LinearSoftmaxPolicy
from rftgrad.models.mlp import ACTIVATIONS, MLPPolicy
from rftgrad.models.tabular import TabularPolicy
from rftgrad.models.transformer import TinyTransformerPolicy

#: name -> (class, one-line description), for `rftgrad list` and the CLI.
POLICIES: dict[str, tuple[type[SoftmaxPolicy], str]] = {
    "tabular": (TabularPolicy, "independent logits per input and prefix; gamma = 1/T"),
    "linear": (LinearSoftmaxPolicy, "logits W phi(x, prefix); feature maps " + ", ".join(FEATURE_MAPS)),
    "mlp": (MLPPolicy, "multilayer perceptron over features, classification (L = 1)"),
    "transformer": (TinyTransformerPolicy, "tiny causal transformer over prompt + output tokens"),
}

__all__ = [
    "ACTIVATIONS",
    "FEATURE_MAPS",
    "INIT_LOGPROB_TOLERANCE",
    "POLICIES",
    "LinearSoftmaxPolicy",
    "MLPPolicy",
    "Params",
    "SoftmaxPolicy",
    "TabularPolicy",
    "TinyTransformerPolicy",
    "init_normal",
]

"""Softmax policies with a leading replica axis R: tabular, linear, MLP, tiny transformer, HF causal LM.

:class:`HFCausalLM` wraps any ``transformers`` causal language model.

A new policy subclasses :class:`SoftmaxPolicy` and writes its parameters' initialisation
(with :func:`init_normal`) and the pure single-replica
:meth:`SoftmaxPolicy.replica_prefix_logits` ``(params, ids, x, prefixes (N, M, l)) -> (N, M, V)``.
A policy whose logits are linear in its parameters may also return a :class:`ClosedFormTree` from
:meth:`SoftmaxPolicy.closed_form_tree`: the exact engine then needs no autograd.

Importing this package does not import ``transformers``: the names of ``rftgrad.models.hf``
(:class:`HFCausalLM`, :func:`word_tokenizer`, ...) are in ``__all__`` but load on first access
(PEP 562 ``__getattr__``); without ``transformers`` that access raises
:class:`~rftgrad.errors.ConfigError` naming ``pip install -e ".[trl]"``.
"""

from __future__ import annotations

import importlib
from typing import Any

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

#: name -> module, for the names loaded on first access (their module imports transformers).
_LAZY: dict[str, str] = {
    "DEFAULT_ATTENTION": "rftgrad.models.hf",
    "HFCausalLM": "rftgrad.models.hf",
    "PACKED_TREE_LIMIT": "rftgrad.models.hf",
    "word_tokenizer": "rftgrad.models.hf",
}


def __getattr__(name: str) -> Any:
    """PEP 562: import :mod:`rftgrad.models.hf` (and so ``transformers``) on first access of one of its names."""
    if name not in _LAZY:
        raise AttributeError(f"module 'rftgrad.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ACTIVATIONS",
    "FEATURE_MAPS",
    "INIT_LOGPROB_TOLERANCE",
    "POLICIES",
    "TEMPERATURE_HEADROOM",
    "ClosedFormTree",
    "DEFAULT_ATTENTION",
    "HFCausalLM",
    "LinearSoftmaxPolicy",
    "MLPPolicy",
    "PACKED_TREE_LIMIT",
    "Params",
    "SoftmaxPolicy",
    "TabularPolicy",
    "TinyTransformerPolicy",
    "build_policy",
    "init_normal",
    "check_temperatures",
    "temperature_range",
    "word_tokenizer",
]

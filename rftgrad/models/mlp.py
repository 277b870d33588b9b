"""MLP softmax policy for classification (``L = 1``).

``h_0 = x``, ``h_{i+1} = act(W_i h_i + b_i)``, logits ``f_θ(x) = W_out h + b_out``
(the paper's controlled MNIST experiments use an MLP; Razin et al. 2024, Section 4.2).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from rftgrad.envs.base import RewardEnv
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.models.base import Params, SoftmaxPolicy, init_normal
from rftgrad.runtime import is_count

#: the hidden-layer activations of an MLP policy, by name.
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}


class MLPPolicy(SoftmaxPolicy):
    """A multilayer perceptron over ``env.features``; one output token.

    Args:
        * ``input_dim``: ``D >= 1``.
        * ``vocab_size``: number of classes ``V``.
        * ``hidden``: widths of the hidden layers, each an integer >= 1 (one int: one layer).
        * ``activation``: ``relu``, ``tanh`` or ``gelu``.
        * ``init_scale``: scale of the read-out weights, finite and >= 0 (0 starts from the uniform policy).
        * ``**kwargs``: seed, num_replicas, device, dtype, temperature (see SoftmaxPolicy).
    """

    name = "mlp"
    readout_keys = ("out_w", "out_b")

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        init_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        widths = (hidden,) if isinstance(hidden, numbers.Integral) else tuple(hidden)
        if not widths or any(not is_count(h) for h in widths):
            raise ConfigError(
                f"hidden widths must be a non-empty list of positive ints, got {hidden!r}; give e.g. hidden=(64,)"
            )
        if not is_count(input_dim):
            raise ConfigError(f"input_dim={input_dim!r} is invalid: the MLP needs at least 1 input feature")
        if not math.isfinite(init_scale) or init_scale < 0:
            raise ConfigError(f"init_scale={init_scale!r} is invalid: give a finite scale >= 0 (0: uniform policy)")
        hidden = widths
        self.input_dim = int(input_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.init_scale = float(init_scale)
        super().__init__(vocab_size, 1, **kwargs)

    @classmethod
    def for_env(cls, env: RewardEnv, **kwargs: Any) -> MLPPolicy:
        """An MLP sized for ``env`` (reads ``env.features``; needs ``L = 1``)."""
        return cls(env.features.shape[1], env.output_space.vocab_size, **kwargs)

    def _init_replica(self, gen: torch.Generator) -> Params:
        params: Params = {}
        widths = (self.input_dim, *self.hidden)
        gain = math.sqrt(2.0) if self.activation == "relu" else 1.0
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            params[f"w{i}"] = init_normal(gen, fan_out, fan_in, scale=gain)
            params[f"b{i}"] = torch.zeros(fan_out, dtype=torch.float64)
        params["out_w"] = init_normal(gen, self.vocab_size, widths[-1], scale=self.init_scale)
        params["out_b"] = torch.zeros(self.vocab_size, dtype=torch.float64)
        return params

    def _check_inputs(self, env: RewardEnv) -> None:
        if env.features.shape[1] != self.input_dim:
            raise ShapeMismatchError(
                f"MLP policy expects D={self.input_dim} features but {env.name} has D={env.features.shape[1]}; "
                "use MLPPolicy.for_env(env)"
            )

    def _hidden(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer ``(N, H)`` of inputs ``x`` ``(N, D)``."""
        act = ACTIVATIONS[self.activation]
        h = x  # (N, D)
        for i in range(len(self.hidden)):
            h = act(h @ params[f"w{i}"].T + params[f"b{i}"])  # (N, H_i)
        return h

    def _readout_features(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        h = self._hidden(params, x)  # (N, H)
        return h[:, None, :].expand(h.shape[0], prefixes.shape[1], h.shape[1])  # (N, M, H)

    def replica_prefix_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        # the readout once per input, then broadcast over the M prefixes (a matmul on the expanded
        # (N, M, H) features is many times slower under vmap)
        logits = self._hidden(params, x) @ params["out_w"].T + params["out_b"]  # (N, V)
        return logits[:, None, :].expand(prefixes.shape[0], prefixes.shape[1], self.vocab_size)

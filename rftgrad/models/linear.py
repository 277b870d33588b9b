"""Linear-softmax policy: ``f_W(x, u) = W φ(x, u)`` (docs/paper.md §3 uses ``φ = x``).

Feature maps ``φ(x, u)`` for an input ``x ∈ R^D`` and a prefix ``u`` of length ``l``:

* ``input``: ``φ = x`` (``D``); every position shares one softmax given ``x``.
* ``input_position``: ``φ = e_l ⊗ x`` (``L·D``); separate weights per position.
* ``input_prefix``: ``φ = e_state(u) ⊗ x`` (``S·D``, ``S = Σ_{l<L} V^l``); separate
  weights per prefix; with one-hot ``x`` this is the tabular policy.
* ``input_last_token``: ``φ = [x, e_l, e_{y_{l-1}}]`` (``D + L + V + 1``; the last slot
  marks the empty prefix), a bigram-like model.

``∂f/∂vec(W) = I_V ⊗ φ^T``, whose spectral norm is ``||φ||``, so ``γ = max ||φ(x,u)|| / T``.

The logits are linear in ``W``, so the exact engine needs no autograd (:class:`LinearTree`): for
logit cotangents ``g_u`` the gradient is ``∇_W Σ_{n,u} w_n g_{n,u}·f(x_n, u)/T = Σ_{n,u} (w_n/T) g_{n,u} φ_{n,u}^T``
and the per-input gradient ``∇_W V(x_n) = Σ_u g_{n,u} φ_{n,u}^T / T``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rftgrad.envs.base import OutputSpace, RewardEnv
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.models.base import ClosedFormTree, Params, SoftmaxPolicy, init_normal
from rftgrad.runtime import is_count

#: the feature maps φ(x, prefix) of a linear softmax policy: the input alone, or the input with the
#: position, the whole prefix or the last prefix token.
FEATURE_MAPS = ("input", "input_position", "input_prefix", "input_last_token")


def one_hot(index: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """``e_index`` in ``R^size``: ``(...) -> (..., size)``.

    Built by comparison rather than ``torch.nn.functional.one_hot``, whose range check
    calls ``.item()`` and fails under ``vmap(jacrev(...))`` (the generic γ path).
    """
    return (index[..., None] == torch.arange(size, device=index.device)).to(dtype)


class LinearSoftmaxPolicy(SoftmaxPolicy):
    """Logits ``W φ(x, u)`` with ``W`` of shape ``(R, V, D_φ)``.

    Args:
        * ``input_dim``: ``D >= 1``, the environment's feature dimension.
        * ``vocab_size``: ``V``.
        * ``max_length``: ``L``.
        * ``features``: one of ``FEATURE_MAPS``.
        * ``init_scale``: ``W ~ N(0, init_scale² / D_φ)``, finite and >= 0.
        * ``**kwargs``: seed, num_replicas, device, dtype, temperature (see SoftmaxPolicy).
    """

    name = "linear"
    readout_keys = ("W", None)

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        max_length: int = 1,
        features: str = "input",
        init_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if features not in FEATURE_MAPS:
            raise ConfigError(f"unknown feature map {features!r}; choose one of {', '.join(FEATURE_MAPS)}")
        if not is_count(input_dim):
            raise ConfigError(f"input_dim={input_dim!r} is invalid: the linear policy needs at least 1 input feature")
        if not math.isfinite(init_scale) or init_scale < 0:
            raise ConfigError(f"init_scale={init_scale!r} is invalid: give a finite scale >= 0")
        self.input_dim = int(input_dim)
        self.features = features
        self.init_scale = float(init_scale)
        num_states = sum(int(vocab_size) ** level for level in range(int(max_length)))
        self.feature_dim = {
            "input": self.input_dim,
            "input_position": int(max_length) * self.input_dim,
            "input_prefix": num_states * self.input_dim,
            "input_last_token": self.input_dim + int(max_length) + int(vocab_size) + 1,
        }[features]
        super().__init__(vocab_size, max_length, **kwargs)

    @classmethod
    def for_env(cls, env: RewardEnv, **kwargs: Any) -> LinearSoftmaxPolicy:
        """A linear policy sized for ``env`` (reads ``env.features``)."""
        return cls(env.features.shape[1], env.output_space.vocab_size, env.output_space.length, **kwargs)

    def _init_replica(self, gen: torch.Generator) -> Params:
        return {"W": init_normal(gen, self.vocab_size, self.feature_dim, scale=self.init_scale)}

    def _check_inputs(self, env: RewardEnv) -> None:
        if env.features.shape[1] != self.input_dim:
            raise ShapeMismatchError(
                f"linear policy expects D={self.input_dim} features but {env.name} has "
                f"D={env.features.shape[1]}; use LinearSoftmaxPolicy.for_env(env)"
            )

    def feature_vectors(self, x: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
        """``φ(x, u)``: ``x (N, D)``, ``prefixes (N, M, l)`` -> ``(N, M, D_φ)``."""
        num_inputs, num_prefixes, level = prefixes.shape
        x = x[:, None, :].expand(num_inputs, num_prefixes, self.input_dim)  # (N, M, D)
        if self.features == "input":
            return x
        if self.features == "input_position":
            slot = one_hot(torch.tensor(level, device=x.device), self.max_length, x.dtype)  # (L,)
            return (slot[:, None] * x[..., None, :]).flatten(-2)  # (N, M, L·D)
        if self.features == "input_prefix":
            state = self.output_space.prefix_state(prefixes)  # (N, M)
            slot = one_hot(state, self.output_space.num_prefix_states, x.dtype)  # (N, M, S)
            return (slot[..., :, None] * x[..., None, :]).flatten(-2)  # (N, M, S·D)
        position = one_hot(torch.tensor(level, device=x.device), self.max_length, x.dtype)
        last = prefixes[..., -1] if level else torch.full(prefixes.shape[:2], self.vocab_size, device=x.device)
        return torch.cat(
            [x, position.expand(num_inputs, num_prefixes, -1), one_hot(last, self.vocab_size + 1, x.dtype)], dim=-1
        )  # (N, M, D + L + V + 1)

    def _readout_features(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        return self.feature_vectors(x, prefixes)

    def replica_prefix_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        if self.features == "input":  # one softmax per input: x W^T once, then broadcast over the M prefixes
            logits = x @ params["W"].T  # (N, V); a matmul on the expanded (N, M, D) is 20x slower under vmap
            return logits[:, None, :].expand(prefixes.shape[0], prefixes.shape[1], self.vocab_size)
        return self.feature_vectors(x, prefixes) @ params["W"].T  # (N, M, V)

    def closed_form_jacobian_norms(self, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
        """``||I_V ⊗ φ^T||_2 = ||φ(x, u)||``, divided by ``T``."""
        norms = self.feature_vectors(x, prefixes).norm(dim=-1)  # (N, M)
        return norms[None] / self.temperature[:, None, None]

    def closed_form_tree(self, x: torch.Tensor, space: OutputSpace) -> ClosedFormTree:
        """``W φ(x, u)`` over the prefix tree with its adjoint in closed form (a :class:`ClosedFormTree`)."""
        return LinearTree(self, x, space)


class LinearTree(ClosedFormTree):
    """The linear policy's prefix tree, state-major ``(S, V, R, N)`` (see :class:`ClosedFormTree`).

    The features of every prefix state, ``Φ[s, n] = φ(x_n, u_s)`` ``(S, N, D_φ)``, are built once (``x (R, N, D)``,
    one set of inputs per replica as from :class:`~rftgrad.theory.batched.ReplicaEnvs`: ``Φ[s, r, n]``
    ``(S, R, N, D_φ)``, contracted per replica);
    ``f[s, a, r, n] = Σ_d W[r, a, d] Φ[s, n, d]``, and the adjoint of a cotangent ``c`` is
    ``∇W[r] = Σ_{s,n} scale[r, n] c[s, :, r, n] Φ[s, n]^T``. With ``features="input"`` every prefix has
    ``φ = x``: the logits are computed once per input and the cotangents summed over states first.
    """

    def __init__(self, policy: LinearSoftmaxPolicy, x: torch.Tensor, space: OutputSpace) -> None:
        self.shared = policy.features == "input"  # one feature vector per input, whatever the prefix
        self.replica_features = x.ndim == 3  # x (R, N, D): every replica its own inputs (ReplicaEnvs)
        flat = x.flatten(0, 1) if self.replica_features else x  # (R·N or N, D)
        if self.shared:
            self.state_features = flat[None]  # (1, N, D)
        else:
            count = flat.shape[0]
            levels = [space.prefixes(level, x.device)[None].expand(count, -1, -1) for level in range(space.length)]
            self.state_features = torch.cat(
                [policy.feature_vectors(flat, prefixes).transpose(0, 1) for prefixes in levels]
            )  # (S, N, D_φ)
        if self.replica_features:  # (S', R, N, D_φ)
            self.state_features = self.state_features.reshape(self.state_features.shape[0], *x.shape[:2], -1)

    def _raw_logits(self, params: Params) -> torch.Tensor:
        """``W φ`` before temperature, ``(S or 1, V, R, N)``."""
        weight = params["W"]  # (R, V, D_φ)
        if self.replica_features:  # f[s, a, r, n] = Σ_d W[r, a, d] Φ[s, r, n, d]
            return torch.einsum("rad,srnd->sarn", weight, self.state_features)  # (S or 1, V, R, N)
        num_replicas, vocab = weight.shape[:2]
        by_token = weight.transpose(0, 1).reshape(vocab * num_replicas, -1)  # (V·R, D_φ)
        logits = torch.matmul(by_token, self.state_features.transpose(1, 2))  # (S or 1, V·R, N)
        return logits.view(-1, vocab, num_replicas, logits.shape[-1])  # (S or 1, V, R, N)

    def logits(self, params: Params, temperature: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        logits = self._raw_logits(params)
        if self.shared:  # one logit vector per input, copied to every state
            return out.copy_((logits / temperature[:, None]).expand_as(out))
        return torch.div(logits, temperature[:, None], out=out)

    def scaled_logits(self, params: Params, scale: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        logits = self._raw_logits(params)
        factor = scale[:, None] if scale.ndim else scale  # (R, 1) over (S, V, R, N), or one number
        if self.shared:
            return out.copy_((logits * factor).expand_as(out))
        return torch.mul(logits, factor, out=out)

    def _state_sum(self, cotangent: torch.Tensor) -> torch.Tensor:
        """``c`` summed over states when every state shares ``φ = x`` (``(1, V, R, N)``), else ``c``."""
        return cotangent.sum(0, keepdim=True) if self.shared else cotangent

    def pullback(self, cotangent: torch.Tensor, scale: torch.Tensor | None, out: Params) -> Params:
        summed = self._state_sum(cotangent)  # (S', V, R, N)
        scaled = summed if scale is None else summed * scale
        if self.replica_features:
            return {"W": out["W"].copy_(torch.einsum("sarn,srnd->rad", scaled, self.state_features))}
        states, vocab, num_replicas, num_inputs = scaled.shape
        by_replica = scaled.permute(2, 1, 0, 3).reshape(num_replicas, vocab, states * num_inputs)  # (R, V, S'·N)
        features = self.state_features.reshape(states * num_inputs, -1)  # (S'·N, D_φ)
        return {"W": torch.matmul(by_replica, features, out=out["W"])}  # (R, V, D_φ)

    def per_input(self, cotangent: torch.Tensor, scale: torch.Tensor, keep: bool) -> tuple[torch.Tensor, Params | None]:
        summed = self._state_sum(cotangent)  # (S', V, R, N)
        pattern = "svrn,srnd->rnvd" if self.replica_features else "svrn,snd->rnvd"
        grads = torch.einsum(pattern, summed, self.state_features) * scale[:, :, None, None]  # (R, N, V, D_φ)
        return torch.linalg.vector_norm(grads, dim=(-2, -1)), ({"W": grads} if keep else None)

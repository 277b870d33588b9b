"""SGD and Adam over a replica axis: one learning rate and one optimiser state per replica.

Parameters are a dict of tensors ``(R, ...)``; a step takes the *ascent* direction
``d = ∇_θ objective`` (the trainer maximises) and moves each replica with its own
learning rate ``lr[r]``. Replica ``r``'s state depends on its own gradients only, so a
batched run equals ``R`` separate runs.
"""

from __future__ import annotations

import torch

from rftgrad.models.base import Params
from rftgrad.theory.exact import ExactWorkspace


def _per_replica(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(R,)`` -> ``(R, 1, ..., 1)`` broadcastable against ``like`` ``(R, ...)``."""
    return values.reshape(-1, *[1] * (like.ndim - 1))


#: bytes of ``lr · d`` an SGD step with one learning rate for every replica forms at a time (a cache-sized
#: scratch instead of one the size of the parameters)
SGD_CHUNK_BYTES = 2**18


def _memory_order(tensor: torch.Tensor) -> torch.Tensor | None:
    """``tensor`` viewed 1-D in memory order when it is dense (any axis order), else ``None``."""
    order = sorted(range(tensor.ndim), key=lambda dim: tensor.stride(dim), reverse=True)
    memory = tensor.permute(order)
    return memory.view(-1) if memory.is_contiguous() else None


class SGD:
    """Plain gradient ascent: ``θ ← θ + lr · d``."""

    def __init__(self, lr: torch.Tensor) -> None:
        self.lr = lr  # (R,)
        self.scratch = ExactWorkspace()  # a buffer per key for lr · d, reused every step (not state)
        self._uniform: tuple[torch.Tensor, int, torch.Tensor | None] | None = None  # (lr, version, lr[0] or None)
        self._flats: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = {}

    def _flat(
        self, key: str, param: torch.Tensor, direction: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``param`` and ``direction`` viewed 1-D in their common memory order, or ``None`` where their layouts
        differ or are not dense (kept per key while both tensors stay the same objects)."""
        cached = self._flats.get(key)
        if cached is not None and cached[0] is param and cached[1] is direction:
            return cached[2], cached[3]
        same = param.shape == direction.shape and param.stride() == direction.stride()
        flat = (_memory_order(param), _memory_order(direction)) if same else (None, None)
        self._flats[key] = (param, direction, *flat)
        return flat

    def _uniform_lr(self) -> torch.Tensor | None:
        """``lr[0]`` (0-dim) when every replica has that learning rate, else ``None`` (checked once per ``lr``)."""
        seen = self._uniform
        if seen is None or seen[0] is not self.lr or seen[1] != self.lr._version:
            first = self.lr.reshape(-1)[0].clone()
            seen = self._uniform = (self.lr, self.lr._version, first if bool((self.lr == first).all()) else None)
        return seen[2]

    def step(self, params: Params, ascent: Params) -> None:
        """Update ``params`` in place with ascent directions ``ascent`` (same keys and shapes).

        ``lr · d`` is rounded before the addition (a product, then a sum, as written; a fused
        multiply-add would round once and change the numbers). With one learning rate for every
        replica and a parameter and direction of the same memory layout, the product is formed
        ``SGD_CHUNK_BYTES`` at a time in memory order (the same numbers, no parameter-sized scratch).
        """
        uniform = self._uniform_lr()
        for key, direction in ascent.items():
            param = params[key]
            flat_param, flat_direction = self._flat(key, param, direction) if uniform is not None else (None, None)
            if flat_param is None or flat_direction is None:
                scaled = self.scratch.take_like(key, direction)
                torch.mul(direction, _per_replica(self.lr, direction), out=scaled)
                param.add_(scaled)
                continue
            size = flat_param.numel()
            chunk = max(1, SGD_CHUNK_BYTES // direction.element_size())
            scaled = self.scratch.take(f"{key}.chunk", (min(chunk, size),), direction)
            for start in range(0, size, chunk):
                part = scaled[: min(chunk, size - start)]
                torch.mul(flat_direction[start : start + chunk], uniform, out=part)
                flat_param[start : start + chunk].add_(part)

    def state_dict(self) -> dict[str, object]:
        """Optimiser state (SGD has none beyond its learning rates)."""
        return {}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`."""
        return None


class Adam:
    """Adam (Kingma & Ba, 2015) per replica, ascent form, no weight decay::

        m ← β1 m + (1-β1) d,   v ← β2 v + (1-β2) d²,
        θ ← θ + lr · m̂ / (sqrt(v̂) + ε),   m̂ = m / (1-β1^t),  v̂ = v / (1-β2^t),

    with ``d`` the ascent direction of step ``t`` and ``lr`` one learning rate per replica ``(R,)``.
    """

    def __init__(self, lr: torch.Tensor, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.lr = lr  # (R,)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.count = 0
        self.first: Params = {}
        self.second: Params = {}

    def step(self, params: Params, ascent: Params) -> None:
        """Update ``params`` in place with ascent directions ``ascent``."""
        self.count += 1
        bias1 = 1.0 - self.beta1**self.count
        bias2 = 1.0 - self.beta2**self.count
        for key, direction in ascent.items():
            if key not in self.first:
                self.first[key] = torch.zeros_like(direction)
                self.second[key] = torch.zeros_like(direction)
            first, second = self.first[key], self.second[key]
            first.mul_(self.beta1).add_(direction, alpha=1.0 - self.beta1)
            second.mul_(self.beta2).addcmul_(direction, direction, value=1.0 - self.beta2)
            denominator = (second / bias2).sqrt_().add_(self.eps)  # sqrt(v̂) + ε
            update = (first / bias1).div_(denominator).mul_(_per_replica(self.lr, direction))  # lr · m̂ / (...)
            params[key].add_(update)

    def state_dict(self) -> dict[str, object]:
        """Step count and moment estimates (for checkpoints)."""
        return {"count": self.count, "first": self.first, "second": self.second}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`."""
        self.count = int(state["count"])  # type: ignore[arg-type]
        self.first = dict(state["first"])  # type: ignore[arg-type]
        self.second = dict(state["second"])  # type: ignore[arg-type]


def make_optimizer(
    name: str, lr: torch.Tensor, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
) -> SGD | Adam:
    """``"sgd"`` or ``"adam"`` with per-replica learning rates ``lr`` ``(R,)``."""
    return SGD(lr) if name == "sgd" else Adam(lr, beta1, beta2, eps)

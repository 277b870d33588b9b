"""SGD and Adam over a replica axis: one learning rate and one optimiser state per replica.

Parameters are a dict of tensors ``(R, ...)``; a step takes the *ascent* direction
``d = ∇_θ objective`` (the trainer maximises) and moves each replica with its own
learning rate ``lr[r]``. Replica ``r``'s state depends on its own gradients only, so a
batched run equals ``R`` separate runs.
"""

from __future__ import annotations

import torch

from rftgrad.models.base import Params


def _per_replica(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(R,)`` -> ``(R, 1, ..., 1)`` broadcastable against ``like`` ``(R, ...)``."""
    return values.reshape(-1, *[1] * (like.ndim - 1))


class SGD:
    """Plain gradient ascent: ``θ ← θ + lr · d``, each number rounded once (a fused multiply-add, as
    ``torch.optim.SGD`` computes it)."""

    def __init__(self, lr: torch.Tensor) -> None:
        self.lr = lr  # (R,)
        self._uniform: tuple[torch.Tensor, int, float | None] | None = None  # (lr, version, lr[0] or None)

    def _uniform_lr(self) -> float | None:
        """``lr[0]`` when every replica has that learning rate, else ``None`` (checked once per ``lr`` and
        version: the check reads the tensor, a device sync on a GPU)."""
        seen = self._uniform
        if seen is None or seen[0] is not self.lr or seen[1] != self.lr._version:
            first = self.lr.reshape(-1)[0]
            same = bool((self.lr == first).all())
            seen = self._uniform = (self.lr, self.lr._version, float(first) if same else None)
        return seen[2]

    def step(self, params: Params, ascent: Params) -> None:
        """Update ``params`` in place with ascent directions ``ascent`` (same keys and shapes).

        One pass per parameter, no scratch: ``param.add_(d, alpha=lr)`` when every replica has one learning rate
        (a Python number in the parameter's dtype: the same rounding as a per-replica rate), else
        ``param.addcmul_(d, lr[r])``; both compute ``θ + lr · d`` with one rounding, so replica ``r`` of a batched
        step equals an SGD step with its learning rate alone, bit for bit. (Forming ``lr · d`` first and adding it
        rounds twice and writes and reads back a scratch of ``d``'s size: 0.12-0.16 ms against 0.055 ms for the
        one pass on the tabular benchmark at R = 64, benchmarks/README.md.)
        """
        uniform = self._uniform_lr()
        for key, direction in ascent.items():
            param = params[key]
            if uniform is not None:
                param.add_(direction, alpha=uniform)
            else:
                param.addcmul_(direction, _per_replica(self.lr.to(direction.dtype), direction))

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

"""Softmax policies with a leading replica axis (docs/paper.md §1).

A policy defines next-token logits ``f_θ(x, y_<l) ∈ R^V`` and the autoregressive
distribution ``p_θ(y|x) = Π_l softmax(f_θ(x, y_<l) / T)[y_l]`` (``T``: sampling
temperature). Every policy holds ``R`` independent parameter sets (replicas: seeds x
settings) as tensors with a leading ``R`` axis in ``policy.params``.

Subclasses write one *pure, single-replica* function, :meth:`SoftmaxPolicy.replica_prefix_logits`
``(params, ids (N,), x (N, ...), prefixes (N, M, l)) -> (N, M, V)`` (logits before temperature);
the base class vmaps it over replicas (``torch.func.vmap``) in :meth:`SoftmaxPolicy.prefix_logits`.
Being public and pure (no state read but hyper-parameters, no in-place update of ``params``),
the same function serves ``torch.func`` transforms from other modules: per-input gradients
(``vjp``) and Jacobians (``jacrev``) in :mod:`rftgrad.theory`. Its teacher-forcing companion
:meth:`SoftmaxPolicy.replica_sequence_logits` scores whole outputs, and
:meth:`SoftmaxPolicy.replica_tree_logits` every prefix of the exact engine's prefix tree
(a per-level loop over ``replica_prefix_logits`` unless a subclass does better).
``ids`` are input indices (tabular policies read them), ``x`` is what
:meth:`SoftmaxPolicy.inputs_from` takes from an environment (features or prompts).
Parameters are drawn per replica from a CPU generator seeded with that replica's seed,
so replica ``r`` equals a single-replica policy built with ``seed=seeds[r]`` on every
device and dtype.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

import torch
from torch.func import vmap

from rftgrad.envs.base import OutputSpace, RewardEnv
from rftgrad.errors import ConfigError, InitializationError, ShapeMismatchError
from rftgrad.runtime import generator, replica_seeds, resolve_device, resolve_dtype

#: a policy's parameters by name, each with the replica axis first: ``name -> (R, ...)``.
Params = dict[str, torch.Tensor]

#: dtype -> the ``|log p_achieved - log p_requested|`` allowed by :meth:`SoftmaxPolicy.set_output_probability`.
INIT_LOGPROB_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}

#: logits ``|f_θ|`` and Jacobian norms ``||J||`` up to this size stay finite at every allowed temperature
#: (see :func:`temperature_range`).
TEMPERATURE_HEADROOM = 1e6


def temperature_range(dtype: str | torch.dtype) -> tuple[float, float]:
    """``(T_min, T_max)``, the temperatures a policy of ``dtype`` accepts: ``H / sqrt(M)`` to ``sqrt(M) / H``.

    ``M = torch.finfo(dtype).max`` and ``H = TEMPERATURE_HEADROOM = 1e6``. Why these bounds: the policy
    divides logits by ``T``, the theory squares tempered quantities (the Gram matrix ``J J^T / T^2``
    whose top eigenvalue gives γ, the squared spreads of STD and of the martingale variances) and
    :meth:`SoftmaxPolicy.set_output_probability` multiplies logits by ``T``. For ``|f|, ||J|| <= H``
    and ``T`` in the range, ``(|f| / T)^2 <= M`` and ``|f| T <= sqrt(M)``, so none of them overflows
    (``T = 1e-300`` in float64 made ``J J^T / T^2`` infinite and ``eigh`` fail; in float32 it rounds
    to ``T = 0``). float64: about ``[7.5e-149, 1.3e148]``; float32: about ``[5.4e-14, 1.8e13]``.
    """
    root = math.sqrt(torch.finfo(resolve_dtype(dtype)).max)
    return TEMPERATURE_HEADROOM / root, root / TEMPERATURE_HEADROOM


def check_temperatures(temperatures: Iterable[float], dtype: str | torch.dtype) -> None:
    """Raise :class:`ConfigError` naming the first of ``temperatures`` outside :func:`temperature_range`
    of ``dtype`` (a policy's temperatures and a trainer config's, one rule)."""
    low, high = temperature_range(dtype)
    for value in temperatures:
        if not low <= value <= high:
            name = str(resolve_dtype(dtype)).replace("torch.", "")
            raise ConfigError(
                f"temperature={value!r} is outside [{low:.2g}, {high:.2g}], where logits / T stay finite in "
                f"{name}; give a temperature in that range (usually 0.1 to 10)"
            )


class SoftmaxPolicy(ABC):
    """Base class: ``R`` replicas of an autoregressive softmax policy over ``V`` tokens.

    Args:
        * ``vocab_size``: ``V``.
        * ``max_length``: longest output length ``L`` the policy serves.
        * ``seed``: first replica seed (replicas get ``seed, seed+1, ...``) or one seed per replica.
        * ``num_replicas``: ``R`` (default: 1, or the length of the seed list).
        * ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        * ``dtype``: ``"float32"`` or ``"float64"``.
        * ``temperature``: sampling temperature ``T``, one value or one per replica, finite and inside
          :func:`temperature_range` of ``dtype`` (about ``[7.5e-149, 1.3e148]`` in float64).
    """

    name: ClassVar[str] = "policy"
    #: which environment tensor the policy reads: ``"features"``, ``"prompts"`` or ``"index"``.
    input_kind: ClassVar[str] = "features"
    #: names of the final linear read-out ``logits = h W^T + b`` (weight, bias or None).
    readout_keys: ClassVar[tuple[str, str | None] | None] = None

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        seed: int | Sequence[int] = 0,
        num_replicas: int | None = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
        temperature: float | Sequence[float] = 1.0,
    ) -> None:
        self.output_space = OutputSpace(int(vocab_size), int(max_length))  # validates V, L
        self.vocab_size = int(vocab_size)
        self.max_length = int(max_length)
        self.seeds = replica_seeds(seed, num_replicas)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        temperature = self._checked_temperature(temperature)  # refused before any parameter is drawn
        per_replica = [self._init_replica(generator(s)) for s in self.seeds]
        self.params: Params = {
            key: torch.stack([p[key] for p in per_replica]).to(self.device, self.dtype)  # (R, ...)
            for key in per_replica[0]
        }
        self.set_temperature(temperature)

    # ----------------------------------------------------------------- to implement
    @abstractmethod
    def _init_replica(self, gen: torch.Generator) -> Params:
        """Parameters of one replica (float64, CPU), drawn from ``gen`` only."""

    @abstractmethod
    def replica_prefix_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        """Next-token logits ``f_θ(x_n, u)`` of one replica, before temperature (docs/paper.md §1).

        Pure and single-replica: ``params`` holds one replica's tensors (no leading ``R``
        axis), the result depends on the arguments only, and nothing is updated in place,
        so it can be transformed by ``torch.func`` (``vmap`` over replicas or inputs,
        ``vjp``, ``jacrev``). Divide by the replica's temperature ``T`` for the policy's logits.

        Args:
            * ``params``: name -> tensor of one replica (``policy.params[key][r]``).
            * ``ids``: ``(N,)`` input indices (tabular policies read them).
            * ``x``: ``(N, ...)`` inputs, as :meth:`inputs_from` returns them.
            * ``prefixes``: ``(N, M, l)`` long, ``M`` prefixes ``u`` of length ``l`` per input.

        Returns:
            ``(N, M, V)`` logits.
        """

    def _readout_features(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        """Features ``h`` of the final linear read-out, ``(N, M, H)`` (see ``readout_keys``)."""
        raise NotImplementedError(f"{type(self).__name__} has no linear read-out")

    def _check_inputs(self, env: RewardEnv) -> None:
        """Raise :class:`ShapeMismatchError` if ``env``'s inputs do not fit this policy."""
        return None  # the base checks in check_compatible suffice unless a subclass adds more

    # ----------------------------------------------------------------- shared machinery
    @property
    def num_replicas(self) -> int:
        """``R``."""
        return len(self.seeds)

    @property
    def num_parameters(self) -> int:
        """Parameters per replica."""
        return sum(p[0].numel() for p in self.params.values())

    def _checked_temperature(self, temperature: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
        """``temperature`` as ``(R,)`` float64, or :class:`ConfigError` (count, finite, > 0, in range)."""
        try:
            temp = torch.as_tensor(temperature, dtype=torch.float64).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"temperature must be a number or a list of numbers, got {temperature!r}") from None
        if temp.numel() == 1:
            temp = temp.expand(self.num_replicas)
        if temp.numel() != self.num_replicas:
            raise ConfigError(f"{temp.numel()} temperatures for R={self.num_replicas} replicas; give 1 or R")
        if not bool(torch.isfinite(temp).all() and (temp > 0).all()):
            raise ConfigError(f"temperature must be finite and > 0, got {temp.tolist()}; give e.g. temperature=1.0")
        check_temperatures(temp.tolist(), self.dtype)
        return temp

    def set_temperature(self, temperature: float | Sequence[float] | torch.Tensor) -> None:
        """Set ``T`` (one value, or one per replica): finite and inside :func:`temperature_range` of the dtype."""
        temp = self._checked_temperature(temperature)
        self.temperature = temp.to(self.device, self.dtype).clone()  # (R,)

    def inputs_from(self, env: RewardEnv) -> torch.Tensor:
        """The tensor ``x`` this policy reads from ``env``, on the policy's device (a copy: editing
        it leaves ``env`` as it is). Prompts ``(N, P)`` long, features ``(N, D)`` in the policy's
        dtype, or input indices ``(N,)`` for tabular policies."""
        self.check_compatible(env)
        if self.input_kind == "prompts":
            return env.prompts.to(self.device, copy=True)
        if self.input_kind == "index":
            return torch.arange(env.num_inputs, device=self.device)
        return env.features.to(self.device, self.dtype, copy=True)

    def check_compatible(self, env: RewardEnv) -> None:
        """Raise :class:`ShapeMismatchError` unless this policy can act in ``env``."""
        space = env.output_space
        if space.vocab_size != self.vocab_size:
            raise ShapeMismatchError(
                f"policy has V={self.vocab_size} output tokens but {env.name} has V={space.vocab_size}; "
                "build the policy for this environment (e.g. Policy.for_env(env))"
            )
        if space.length > self.max_length:
            raise ShapeMismatchError(
                f"policy serves outputs up to L={self.max_length} but {env.name} has L={space.length}; "
                "build the policy with max_length >= L"
            )
        if self.input_kind == "prompts" and env.prompts is None:
            raise ShapeMismatchError(f"{self.name} policy reads prompts but {env.name} has none; use a sequence env")
        self._check_inputs(env)

    def _replica_map(
        self, fn: Callable[..., torch.Tensor], prefixes: torch.Tensor, batched_prefix_ndim: int
    ) -> Callable[..., torch.Tensor]:
        """vmap ``fn(params, ids, x, prefixes)`` over replicas; prefixes may carry their own R axis."""
        prefix_dim = 0 if prefixes.ndim == batched_prefix_ndim + 1 else None
        return vmap(fn, in_dims=(0, None, None, prefix_dim))

    def prefix_logits(
        self, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor, params: Params | None = None
    ) -> torch.Tensor:
        """Tempered next-token logits ``f_θ(x, y_<l) / T``.

        ``prefixes``: ``(N, M, l)`` shared by all replicas or ``(R, N, M, l)``.
        Returns ``(R, N, M, V)``.
        """
        params = self.params if params is None else params
        prefixes = prefixes.to(self.device).long()
        logits = self._replica_map(self.replica_prefix_logits, prefixes, 3)(params, ids, x, prefixes)
        return logits / self.temperature[:, None, None, None]

    def replica_sequence_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, outputs: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``f_θ(x_n, y_<l)`` at every position ``l`` of ``outputs``, one replica, before temperature.

        Pure and single-replica like :meth:`replica_prefix_logits` (same ``params``, ``ids``,
        ``x``), for ``torch.func`` transforms. Position ``l`` reads ``y_<l`` only (teacher forcing).

        Args:
            * ``outputs``: ``(N, M, L')`` long, ``M`` outputs per input (``L' <= max_length``).

        Returns:
            ``(N, M, L', V)`` logits. Default: one :meth:`replica_prefix_logits` call per
            position; subclasses may score all positions in one pass.
        """
        return torch.stack(
            [self.replica_prefix_logits(params, ids, x, outputs[..., :pos]) for pos in range(outputs.shape[-1])], dim=-2
        )

    def replica_tree_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, ...]:
        """Logits ``f_θ(x_n, u)`` of every prefix ``u`` of every level ``l < length``, one replica, before temperature.

        The prefix tree of the exact engine (:mod:`rftgrad.theory.exact`, ``method="tree"``):
        level ``l`` holds the ``V^l`` prefixes of :meth:`~rftgrad.envs.OutputSpace.prefixes` ``(l)`` in that
        (lexicographic) order, so prefix ``i`` of level ``l`` has parent ``i // V`` and ancestor
        ``i // V^(l-j)`` at level ``j``. Pure and single-replica like :meth:`replica_prefix_logits`
        (same ``params``, ``ids``, ``x``), for ``torch.func`` transforms (``vmap`` over replicas and
        inputs, ``vjp``).

        Args:
            * ``length``: ``L' <= max_length``, the number of levels ``l = 0..L'-1``.

        Returns:
            ``L'`` tensors, level ``l``: ``(N, V^l, V)`` logits.

        Default: one :meth:`replica_prefix_logits` call per level on all ``V^l`` prefixes (each
        prefix scored from scratch). It is the reference that faster subclass versions (the
        transformer's KV-cached traversal) are tested against, and the baseline of
        ``benchmarks/transformer_tree.py``.
        """
        space = self._tree_space(length)
        num_inputs = ids.shape[0]
        return tuple(
            self.replica_prefix_logits(
                params, ids, x, space.prefixes(level, ids.device)[None].expand(num_inputs, -1, -1)
            )  # (N, V^l, V)
            for level in range(length)
        )

    def _tree_space(self, length: int) -> OutputSpace:
        """The output space of a prefix tree with ``length`` levels, or :class:`ShapeMismatchError`."""
        if not 1 <= length <= self.max_length:
            raise ShapeMismatchError(
                f"a prefix tree of length={length} is outside 1..max_length={self.max_length}; give L in that range"
            )
        return OutputSpace(self.vocab_size, length)

    def sequence_logits(
        self, ids: torch.Tensor, x: torch.Tensor, outputs: torch.Tensor, params: Params | None = None
    ) -> torch.Tensor:
        """Tempered logits at every position: ``outputs (N, M, L)`` or ``(R, N, M, L)`` -> ``(R, N, M, L, V)``."""
        params = self.params if params is None else params
        outputs = outputs.to(self.device).long()
        logits = self._replica_map(self.replica_sequence_logits, outputs, 3)(params, ids, x, outputs)
        return logits / self.temperature[:, None, None, None, None]

    def log_prob(
        self, ids: torch.Tensor, x: torch.Tensor, outputs: torch.Tensor, params: Params | None = None
    ) -> torch.Tensor:
        """``log p_θ(y|x) = Σ_l log softmax(f_θ(x, y_<l)/T)[y_l]``: ``(N, M, L)`` -> ``(R, N, M)``."""
        outputs = outputs.to(self.device).long()
        logp = torch.log_softmax(self.sequence_logits(ids, x, outputs, params), dim=-1)  # (R, N, M, L, V)
        index = outputs.expand(logp.shape[:-1])[..., None]  # (R, N, M, L, 1)
        return logp.gather(-1, index)[..., 0].sum(-1)

    def sample(self, ids: torch.Tensor, x: torch.Tensor, num_samples: int, length: int, seed: int = 0) -> torch.Tensor:
        """Draw ``num_samples`` outputs per input by the Gumbel-max trick: ``(R, N, M, L)``.

        Replica ``r`` uses a generator seeded from ``(seed, seeds[r])`` only, so its draws
        do not depend on the other replicas; noise is drawn on the CPU (same on every device).
        """
        if num_samples < 1 or not 1 <= length <= self.max_length:
            raise ConfigError(f"need num_samples >= 1 and 1 <= length <= {self.max_length}")
        gens = [generator(seed * 1_000_003 + s) for s in self.seeds]
        num_inputs = ids.shape[0]
        outputs = torch.zeros(self.num_replicas, num_inputs, num_samples, 0, dtype=torch.long, device=self.device)
        with torch.no_grad():
            for _ in range(length):
                logits = self.prefix_logits(ids, x, outputs)  # (R, N, M, V)
                uniform = torch.stack(
                    [torch.rand(logits.shape[1:], generator=g, dtype=torch.float64) for g in gens]
                ).clamp_min(1e-300)
                gumbel = -torch.log(-torch.log(uniform)).to(self.device, logits.dtype)
                token = (logits + gumbel).argmax(-1, keepdim=True)  # (R, N, M, 1)
                outputs = torch.cat([outputs, token], dim=-1)
        return outputs

    # ----------------------------------------------------------------- initialisation
    def set_output_probability(
        self, env: RewardEnv, prob: float | torch.Tensor, targets: torch.Tensor | None = None
    ) -> None:
        """Initialise so that ``p_θ(y*_n | x_n) = prob`` exactly for each input ``n``.

        Along each target path every position gets probability ``q = prob^(1/L)`` on the
        target token and equal shares ``(1-q)/(V-1)`` on the others, i.e. logits
        ``T·log(q(V-1)/(1-q))`` on the target token and 0 elsewhere. Tabular policies set
        those logits directly; policies with a linear read-out solve for the read-out by
        least squares over the ``N·L`` target-path states and raise
        :class:`InitializationError` if the achieved ``log p`` misses by more than
        ``INIT_LOGPROB_TOLERANCE`` (too few read-out features for the states).

        Args:
            * ``env``: the environment (inputs and default targets).
            * ``prob``: a value in (0, 1), or a tensor broadcastable to ``(R, N)``.
            * ``targets``: ``(N, L)`` outputs to put the probability on (default ``env.targets``).
        """
        x = self.inputs_from(env)
        ids = torch.arange(env.num_inputs, device=self.device)
        targets = (env.targets if targets is None else torch.as_tensor(targets)).to(self.device).long()
        env.output_space.check_outputs(targets)
        prob_t = torch.as_tensor(prob, dtype=torch.float64)
        inside = (prob_t > 0) & (prob_t < 1)
        if not bool(inside.all()):
            bad = float(prob_t.reshape(-1)[~inside.reshape(-1)][0])
            raise ConfigError(
                f"target probability must lie strictly inside (0, 1), got {bad!r}; give a probability such as 1e-3"
            )
        try:
            prob_t = prob_t.expand(self.num_replicas, env.num_inputs).to(self.device)  # (R, N)
        except RuntimeError as err:
            raise ShapeMismatchError(
                f"prob of shape {tuple(prob_t.shape)} does not broadcast to "
                f"(R, N)=({self.num_replicas}, {env.num_inputs})"
            ) from err
        length = targets.shape[1]
        q = prob_t ** (1.0 / length)  # (R, N)
        target_logit = torch.log(q * (self.vocab_size - 1) / (1 - q)) * self.temperature.double()[:, None]
        desired = torch.zeros(
            self.num_replicas, env.num_inputs, length, self.vocab_size, dtype=torch.float64, device=self.device
        )
        desired.scatter_(
            -1,
            targets.expand(self.num_replicas, -1, -1)[..., None],
            target_logit[..., None, None].expand(-1, -1, length, 1),
        )
        self._fit_target_logits(ids, x, targets, desired)  # (R, N, L, V) logits before temperature
        achieved = self.log_prob(ids, x, targets[:, None, :])[..., 0].double()  # (R, N)
        error = float((achieved - prob_t.log()).abs().max())
        if not error <= INIT_LOGPROB_TOLERANCE[self.dtype]:
            raise InitializationError(
                f"{self.name} policy reached log p off by {error:.2e} from the requested probability: its "
                f"read-out cannot separate the N·L = {env.num_inputs * length} target-path states; leave the "
                "probability unset (p0=0 in an experiment config, no --p0 on the command line), or use a "
                "tabular policy, a wider read-out or fewer inputs"
            )

    def _fit_target_logits(
        self, ids: torch.Tensor, x: torch.Tensor, targets: torch.Tensor, desired: torch.Tensor
    ) -> None:
        """Solve the read-out ``[h, 1] B = desired`` on target-path states (least squares)."""
        if self.readout_keys is None:
            raise InitializationError(f"{self.name} policy cannot be initialised to chosen probabilities")
        weight_key, bias_key = self.readout_keys
        num_inputs, length = targets.shape
        feats = torch.cat(
            [
                vmap(self._readout_features, in_dims=(0, None, None, None))(self.params, ids, x, targets[:, None, :pos])
                for pos in range(length)
            ],
            dim=2,
        ).double()  # (R, N, L, H)
        design = feats.reshape(self.num_replicas, num_inputs * length, -1)  # (R, S, H)
        if bias_key is not None:
            design = torch.cat([design, torch.ones_like(design[..., :1])], dim=-1)  # (R, S, H+1)
        solution = torch.linalg.pinv(design) @ desired.reshape(
            self.num_replicas, num_inputs * length, -1
        )  # (R, H(+1), V)
        if bias_key is not None:
            self.params[bias_key] = solution[:, -1, :].to(self.dtype).contiguous()
            solution = solution[:, :-1, :]
        self.params[weight_key] = solution.transpose(1, 2).to(self.dtype).contiguous()  # (R, V, H)

    # ----------------------------------------------------------------- theory hooks
    def closed_form_jacobian_norms(
        self, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor | None:
        """Spectral norm of ``∂(f_θ(x, prefix)/T)/∂θ`` per state, ``(R, N, M)``, if known in
        closed form; ``None`` lets :func:`rftgrad.theory.gamma` use ``torch.func.jacrev``."""
        return None

    def describe(self) -> str:
        """One line: name, R, parameters per replica, V, L, device, dtype."""
        return (
            f"{self.name}: R={self.num_replicas} replicas, {self.num_parameters} parameters each, "
            f"V={self.vocab_size}, L<={self.max_length}, {self.device}, {str(self.dtype).replace('torch.', '')}"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def closed_form_tree(self, x: torch.Tensor, space: OutputSpace) -> ClosedFormTree | None:
        """The policy's logits over the whole prefix tree of ``space`` for inputs ``x`` (as
        :meth:`inputs_from` returns them) as a linear map with a closed-form adjoint
        (:class:`ClosedFormTree`), or ``None`` (the default): the exact engine then runs the
        generic ``torch.func`` program (:meth:`replica_prefix_logits`, ``vmap``, ``vjp``)."""
        return None


def init_normal(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """``N(0, scale² / fan_in)`` weights (fan_in = last dimension), float64 on the CPU."""
    fan_in = shape[-1] if shape else 1
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * (scale / math.sqrt(fan_in))


class ClosedFormTree(ABC):
    """Logits of every prefix state, linear in the parameters, with the adjoint in closed form.

    What :meth:`SoftmaxPolicy.closed_form_tree` returns for policies whose logits are linear in
    ``θ`` (tabular: ``f = θ[n, u]``; linear: ``f = W φ(x, u)``), so that the exact engine
    (:func:`rftgrad.theory.exact` and its siblings) needs no autograd: ``∇_θ Σ_{n,u} c_{n,u}·f_θ(x_n, u) = A^T c``
    with ``A`` the (fixed) matrix of the map ``θ -> f``. Tensors are *state-major*,
    ``(S, V, R, N)``: the ``S = Σ_{l<L} V^l`` prefix states of the output space in
    :meth:`~rftgrad.envs.OutputSpace.prefix_state` order (level ``l`` is the contiguous block
    ``[Σ_{j<l} V^j, Σ_{j≤l} V^j)``), the vocabulary, then replicas and inputs innermost, so
    softmax sums over the vocabulary and sums over prefixes run over contiguous rows of ``R·N``.
    Built once per (policy, output space); the methods read the policy's current parameters.
    """

    @abstractmethod
    def logits(self, params: Params, temperature: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The tempered logits ``f_θ(x_n, u) / T_r`` (``temperature``: ``(R,)``) written into ``out``
        ``(S, V, R, N)`` and returned."""

    def scaled_logits(self, params: Params, scale: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The logits times a per-replica factor, ``f_θ(x_n, u) · scale_r`` (``scale``: ``(R,)``, or 0-dim for
        one factor for every replica), written
        into ``out`` ``(S, V, R, N)`` and returned: the closed-form step's one pass to its exponent
        ``f / (T ln 2)`` (default: :meth:`logits` at temperature ``1 / scale``, the same numbers to rounding)."""
        return self.logits(params, 1.0 / scale, out)

    def gradient_view(self, out: Params) -> torch.Tensor | None:
        """Where a cotangent ``(S, V, R, N)`` already scaled by ``scale[r, n]`` *is* the gradient: a view of the
        buffers ``out`` (name -> the parameter's shape) when the map ``θ -> f`` is a selection (tabular), so
        that the closed-form step writes its cotangents straight into the gradient; ``None`` (the default) when
        :meth:`pullback` must map them."""
        return None

    @abstractmethod
    def pullback(self, cotangent: torch.Tensor, scale: torch.Tensor | None, out: Params) -> Params:
        """``∇_θ Σ_{u,a,n} scale[r, n] · cotangent[u, a, r, n] · f_θ(x_n, u)[a]``: name -> ``(R, *shape)``.

        ``cotangent``: ``(S, V, R, N)``; ``scale``: ``(R, N)``, or ``None`` for a cotangent already
        scaled (then ``scale = 1``); ``out``: name -> a buffer of the parameter's shape, zero when first
        handed over, that the result may be written into (and returned as) instead of a fresh tensor."""

    @abstractmethod
    def per_input(self, cotangent: torch.Tensor, scale: torch.Tensor, keep: bool) -> tuple[torch.Tensor, Params | None]:
        """Per input ``n``, ``G_n = ∇_θ Σ_{u,a} scale[r, n] · cotangent[u, a, r, n] · f_θ(x_n, u)[a]``:
        its norm ``(R, N)``, and with ``keep`` the gradients name -> ``(R, N, *shape)`` (else ``None``)."""

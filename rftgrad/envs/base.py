"""The reward-environment interface (docs/paper.md §1).

An environment is a finite set of inputs ``x_1..x_N``, an output space of sequences
``y = (y_1..y_L)`` over a vocabulary of size ``V`` (``L = 1`` is classification / a
contextual bandit), a reward ``r(x, y) ∈ [-1, 1]`` and a target output ``y*`` per input
(what SFT trains on). Theorem 1 of Razin et al. (ICLR 2024) needs bounded rewards, so
every reward that leaves an environment is checked to lie in [-1, 1].

Outputs are enumerated in lexicographic order with ``y_1`` the most significant digit:
output index ``i = Σ_l y_l · V^(L-l)``. A prefix ``u`` of length ``l`` has index
``Σ_j u_j · V^(l-1-j)`` and its children ``u·a`` have indices ``u·V + a``, so the
outputs below prefix ``u`` form the contiguous block ``[u·V^(L-l), (u+1)·V^(L-l))``.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from rftgrad.errors import ConfigError, EnumerationLimitError, OutputSpaceError, RewardRangeError, ShapeMismatchError
from rftgrad.runtime import is_count

#: Largest output space (V**L) that exact enumeration accepts unless told otherwise.
DEFAULT_MAX_OUTPUTS = 2**20


@dataclass(frozen=True)
class OutputSpace:
    """Sequences of ``length`` tokens over ``range(vocab_size)``."""

    vocab_size: int  # V >= 2
    length: int  # L >= 1

    def __post_init__(self) -> None:
        if not is_count(self.vocab_size, 2):
            raise OutputSpaceError(f"vocabulary size V={self.vocab_size!r} is invalid; a softmax policy needs V >= 2")
        if not is_count(self.length):
            raise OutputSpaceError(f"output length L={self.length!r} is invalid; use L >= 1 (L = 1 is classification)")

    @property
    def num_outputs(self) -> int:
        """``V**L``, the number of distinct outputs."""
        return self.vocab_size**self.length

    def check_enumerable(self, max_outputs: int = DEFAULT_MAX_OUTPUTS) -> None:
        """Raise :class:`EnumerationLimitError` when ``V**L`` exceeds ``max_outputs``."""
        if self.num_outputs > max_outputs:
            raise EnumerationLimitError(
                f"output space V^L = {self.vocab_size}^{self.length} = {self.num_outputs} is past "
                f"the enumeration limit max_outputs={max_outputs}; lower V or L, raise max_outputs if "
                "memory allows, or estimate by sampling (rftgrad.theory.reinforce_gradient)"
            )

    def prefixes(self, level: int, device: torch.device | str | None = None) -> torch.Tensor:
        """All ``V**level`` prefixes of length ``level`` in lexicographic order.

        Returns a long tensor of shape ``(V**level, level)``.
        """
        if not 0 <= level <= self.length:
            raise OutputSpaceError(f"prefix level {level} outside [0, L={self.length}]")
        index = torch.arange(self.vocab_size**level, device=device)  # (V^l,)
        powers = self.vocab_size ** torch.arange(level - 1, -1, -1, device=device)  # (l,)
        return (index[:, None] // powers[None, :]) % self.vocab_size  # (V^l, l)

    def enumerate(
        self, device: torch.device | str | None = None, max_outputs: int = DEFAULT_MAX_OUTPUTS
    ) -> torch.Tensor:
        """All outputs, shape ``(V**L, L)``, in lexicographic order (refuses past the limit)."""
        self.check_enumerable(max_outputs)
        return self.prefixes(self.length, device)

    def index(self, outputs: torch.Tensor) -> torch.Tensor:
        """Enumeration index of each output: ``(..., L) -> (...)``."""
        self.check_outputs(outputs)
        powers = self.vocab_size ** torch.arange(self.length - 1, -1, -1, device=outputs.device)  # (L,)
        return (outputs.long() * powers).sum(-1)

    @property
    def num_prefix_states(self) -> int:
        """``Σ_{l<L} V^l``: the number of distinct prefixes a next-token distribution follows."""
        return sum(self.vocab_size**level for level in range(self.length))

    def prefix_state(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Index of each prefix among all ``num_prefix_states`` prefixes: ``(..., l) -> (...)``.

        Prefixes of length ``l`` occupy the block ``[Σ_{j<l} V^j, Σ_{j<=l} V^j)`` in
        lexicographic order (the empty prefix is state 0).
        """
        level = prefixes.shape[-1]
        offset = sum(self.vocab_size**j for j in range(level))
        powers = self.vocab_size ** torch.arange(level - 1, -1, -1, device=prefixes.device)  # (l,)
        return offset + (prefixes.long() * powers).sum(-1)

    def check_outputs(self, outputs: torch.Tensor) -> None:
        """Raise :class:`ShapeMismatchError` unless ``outputs`` is ``(..., L)`` tokens in ``[0, V)``."""
        if outputs.ndim < 1 or outputs.shape[-1] != self.length:
            raise ShapeMismatchError(f"outputs have shape {tuple(outputs.shape)}, expected (..., L={self.length})")
        if outputs.dtype.is_floating_point or outputs.dtype == torch.bool:
            raise ShapeMismatchError(f"outputs must be integer tokens, got dtype {outputs.dtype}")
        if outputs.numel() and (int(outputs.min()) < 0 or int(outputs.max()) >= self.vocab_size):
            raise ShapeMismatchError(
                f"output tokens must lie in [0, V={self.vocab_size}), got range "
                f"[{int(outputs.min())}, {int(outputs.max())}]"
            )


def _reward_array(rewards: object, what: str) -> torch.Tensor:
    """``rewards`` as a real tensor (int or float), or raise :class:`RewardRangeError` naming what is wrong."""
    if isinstance(rewards, torch.Tensor):
        values = rewards
    else:
        try:
            array = np.asarray(rewards)
        except ValueError:  # a ragged nest of lists
            raise RewardRangeError(f"{what} is a ragged list; give a rectangular array of numbers") from None
        if array.dtype == object:  # Python numbers (e.g. ints past int64), or anything else
            bad = [v for v in array.flat if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real)][:1]
            if bad:
                bad = bad[0]
                raise RewardRangeError(
                    f"{what} must be numbers, got {bad!r} ({type(bad).__name__}); return or give floats in [-1, 1]"
                )
            try:
                array = array.astype(np.float64)
            except OverflowError:
                raise RewardRangeError(
                    f"{what} holds a number too large for a float (e.g. 10**400); rescale rewards into [-1, 1]"
                ) from None
        if array.dtype.kind == "f" and array.dtype.itemsize > 8:  # long double: torch has no such dtype
            array = array.astype(np.float64)
        if array.dtype.kind not in "biufc":
            raise RewardRangeError(
                f"{what} must be numbers, got an array of dtype {array.dtype}; give floats in [-1, 1]"
            )
        values = torch.as_tensor(array)
    if values.dtype == torch.bool or values.dtype.is_complex:  # every other torch dtype is an int or a float
        raise RewardRangeError(f"{what} must be numeric, got dtype {values.dtype}; give floats in [-1, 1]")
    return values


def validate_rewards(rewards: torch.Tensor | np.ndarray | object, what: str = "reward") -> torch.Tensor:
    """Return ``rewards`` as a new float64 tensor (never the caller's), or raise :class:`RewardRangeError`.

    Accepts a tensor, an array, a list or a number of real values (bools, complex numbers, strings and other
    objects are refused). Theorem 1 (Razin et al., 2024) assumes ``r(x, y) ∈ [-1, 1]``; NaN and values outside
    that range (``±inf``, a Python int too large for a float) are refused (no silent clipping), naming the
    first offending entry.
    """
    values = _reward_array(rewards, what)
    values = values.to(torch.float64, copy=True)  # an environment keeping it is unaffected by later edits
    bad = torch.isnan(values) | (values < -1.0) | (values > 1.0)
    if bool(bad.any()):
        where = tuple(int(i) for i in torch.nonzero(bad)[0])
        value = float(values[where])
        loc = where[0] if len(where) == 1 else where
        raise RewardRangeError(
            f"{what} at index {loc} is {value}, outside [-1, 1]; rescale rewards into "
            "[-1, 1] (e.g. r -> 2r - 1 for r in [0, 1])"
        )
    return values


def index_tensor(values: torch.Tensor | np.ndarray | object, what: str) -> torch.Tensor:
    """``values`` (labels, target tokens, prompt tokens) as a long tensor, refusing what is not a whole number.

    Integer arrays pass as they are; float arrays pass only if every entry is a finite whole number
    (``2.0`` is label 2); ``1.7``, NaN, bools, strings or objects raise :class:`ConfigError` (a silent
    ``long()`` would truncate ``1.7`` to 1). Range checks are the caller's.
    """
    try:
        tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be integers, got {type(values).__name__}; give an integer array") from None
    if tensor.dtype == torch.bool or tensor.dtype.is_complex:
        raise ConfigError(f"{what} must be integers, got dtype {tensor.dtype}; give an integer array")
    if tensor.dtype.is_floating_point:
        whole = torch.isfinite(tensor) & (tensor == tensor.round())
        if not bool(whole.all()):
            where = tuple(int(i) for i in torch.nonzero(~whole)[0])
            loc = where[0] if len(where) == 1 else where
            raise ConfigError(
                f"{what} at index {loc} is {float(tensor[where])}, not a whole number; give integer "
                "labels or tokens (a float would be truncated)"
            )
    return tensor.long()


class RewardEnv(ABC):
    """Base class of reward environments.

    Subclasses set ``output_space``, ``features`` (``(N, D)`` float: what a linear or MLP
    policy reads), optionally ``prompts`` (``(N, P)`` long: what a transformer reads),
    ``targets`` (``(N, L)`` long: the SFT label of each input), and implement
    ``_reward``. ``groups`` maps a group name to a ``(N,)`` bool mask (metrics are
    reported per group; e.g. ``modified`` / ``unmodified``).
    """

    name: str = "env"
    output_space: OutputSpace
    features: torch.Tensor  # (N, D) float64
    targets: torch.Tensor  # (N, L) long
    prompts: torch.Tensor | None = None  # (N, P) long, sequence environments only
    prompt_vocab_size: int = 0  # size of the prompt-token vocabulary (0: no prompts)

    def __init__(self) -> None:
        self._reward_table: torch.Tensor | None = None
        self.groups: dict[str, torch.Tensor] = {}

    @property
    def num_inputs(self) -> int:
        """N, the number of inputs."""
        return int(self.features.shape[0])

    @abstractmethod
    def _reward(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Unvalidated rewards: ``input_ids (B,)``, ``outputs (B, L)`` -> ``(B,)``."""

    def reward(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """``r(x, y)`` for a batch: ``input_ids (B,)``, ``outputs (B, L)`` -> float64 ``(B,)``.

        Checks shapes and token ranges, and that every reward is in [-1, 1].
        """
        input_ids = torch.as_tensor(input_ids)
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise ShapeMismatchError(f"input ids must be integer indices, got dtype {input_ids.dtype}")
        input_ids = input_ids.long().reshape(-1)
        outputs = torch.as_tensor(outputs)
        self.output_space.check_outputs(outputs)
        if outputs.ndim != 2 or outputs.shape[0] != input_ids.shape[0]:
            raise ShapeMismatchError(
                f"reward() got {input_ids.shape[0]} input ids and outputs of shape "
                f"{tuple(outputs.shape)}; expected outputs (B={input_ids.shape[0]}, L)"
            )
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.num_inputs):
            raise ShapeMismatchError(
                f"input ids must lie in [0, N={self.num_inputs}), got range "
                f"[{int(input_ids.min())}, {int(input_ids.max())}]"
            )
        values = validate_rewards(self._reward(input_ids, outputs.long()), f"reward of {self.name}")
        if values.shape != input_ids.shape:
            raise ShapeMismatchError(
                f"reward function returned shape {tuple(values.shape)}, expected ({input_ids.shape[0]},)"
            )
        return values

    def reward_table(self, max_outputs: int = DEFAULT_MAX_OUTPUTS) -> torch.Tensor:
        """Rewards of every (input, output): float64 ``(N, V**L)`` on the CPU.

        Computed once and cached; each call returns a fresh copy, so editing the returned
        table leaves the environment's rewards as they are (use :meth:`with_rewards` for an
        environment with other rewards).
        """
        if self._reward_table is None:
            outputs = self.output_space.enumerate(max_outputs=max_outputs)  # (Y, L)
            num_outputs = outputs.shape[0]
            ids = torch.arange(self.num_inputs).repeat_interleave(num_outputs)  # (N*Y,)
            flat = self.reward(ids, outputs.repeat(self.num_inputs, 1))  # (N*Y,)
            self._reward_table = flat.reshape(self.num_inputs, num_outputs)
        else:
            self.output_space.check_enumerable(max_outputs)
        return self._reward_table.clone()

    def with_rewards(self, rewards: torch.Tensor | np.ndarray) -> RewardEnv:
        """The same inputs, targets and groups with the reward table ``rewards`` ``(N, V^L)``."""
        raise NotImplementedError(f"{type(self).__name__} cannot swap its reward table")

    def target_index(self) -> torch.Tensor:
        """Enumeration index of each input's target output, ``(N,)``."""
        return self.output_space.index(self.targets)

    def _set_groups(self, groups: dict[str, torch.Tensor] | None) -> None:
        """Store input groups, each a ``(N,)`` bool mask (raises :class:`ShapeMismatchError`)."""
        for key, mask in (groups or {}).items():
            mask = torch.as_tensor(mask, dtype=torch.bool).clone()  # not shared with the caller or another env
            if mask.shape != (self.num_inputs,):
                raise ShapeMismatchError(
                    f"group {key!r} mask has shape {tuple(mask.shape)}, expected (N={self.num_inputs},)"
                )
            self.groups[key] = mask

    def group_masks(self) -> dict[str, torch.Tensor]:
        """Input groups for reporting, name -> ``(N,)`` bool mask (copies); always contains ``all``."""
        return {"all": torch.ones(self.num_inputs, dtype=torch.bool), **{k: m.clone() for k, m in self.groups.items()}}

    def describe(self) -> str:
        """One line: name, N, V, L."""
        space = self.output_space
        return f"{self.name}: N={self.num_inputs} inputs, V={space.vocab_size}, L={space.length}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

"""Autoregressive environments (L >= 1, V >= 2): prompts and rewards on whole outputs.

A :class:`SequenceEnv` holds ``N`` prompts (token ids over their own vocabulary), an
output space ``(V, L)``, a target output per prompt and a reward function
``r(input_id, y) ∈ [-1, 1]``. Reward functions (each a callable
``(input_ids (B,), outputs (B, L)) -> (B,)``):

* :class:`ExactMatch`: ``+1`` if ``y = y*`` else ``-1`` (sparse);
* :class:`PositionMatch`: ``2·(fraction of positions with y_l = y*_l) - 1`` (dense);
* :class:`ContainsToken`: ``+1`` if a given token occurs in ``y`` else ``-1``;
* :class:`RandomRewardNetwork`: a fixed random network, ``tanh`` output;
* :class:`TableReward`: any user table ``(N, V**L)``; :class:`CallableReward`: any
  user function. Every value is validated to lie in [-1, 1] by the environment.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rftgrad.envs.base import OutputSpace, RewardEnv, index_tensor, validate_rewards
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.registry import SEQUENCE_REWARDS
from rftgrad.runtime import check_seed, generator, is_count

#: a sequence reward: (prompts (N, P), outputs (..., L)) -> rewards in [-1, 1] broadcast to (..., N).
RewardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ExactMatch:
    """``r = +1`` if ``y = y*(x)`` else ``-1``. ``targets``: ``(N, L)``."""

    def __init__(self, targets: torch.Tensor) -> None:
        self.targets = torch.as_tensor(targets).long()

    def __call__(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        match = (outputs == self.targets[input_ids]).all(-1)  # (B,)
        return match.double() * 2.0 - 1.0


class PositionMatch:
    """``r = 2·mean_l[y_l = y*_l] - 1``, the per-position overlap rescaled to [-1, 1]."""

    def __init__(self, targets: torch.Tensor) -> None:
        self.targets = torch.as_tensor(targets).long()

    def __call__(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        overlap = (outputs == self.targets[input_ids]).double().mean(-1)  # (B,)
        return overlap * 2.0 - 1.0


class ContainsToken:
    """``r = +1`` if token ``t(x)`` occurs anywhere in ``y`` else ``-1``.

    ``tokens``: one token for every input, or ``(N,)`` per input.
    """

    def __init__(self, tokens: int | torch.Tensor) -> None:
        self.tokens = torch.as_tensor(tokens).long()

    def __call__(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        token = self.tokens if self.tokens.ndim == 0 else self.tokens[input_ids]
        present = (outputs == torch.as_tensor(token).reshape(-1, 1)).any(-1)  # (B,)
        return present.double() * 2.0 - 1.0


class RandomRewardNetwork:
    """A fixed random two-layer network ``r = tanh(scale · w2 · relu(W1 [e_x, onehot(y)]))``.

    ``e_x`` is a random embedding of the input (dimension ``hidden``); the weights are
    drawn once from ``seed``, so the reward is deterministic. Stands in for a learned
    reward model: dense, smooth in the tokens, in (-1, 1).
    """

    def __init__(
        self, num_inputs: int, space: OutputSpace, hidden: int = 16, scale: float = 2.0, seed: int = 0
    ) -> None:
        gen = generator(seed)
        in_dim = hidden + space.length * space.vocab_size
        self.space = space
        self.scale = float(scale)
        self.embed = torch.randn(num_inputs, hidden, generator=gen, dtype=torch.float64)
        self.w1 = torch.randn(hidden, in_dim, generator=gen, dtype=torch.float64) / np.sqrt(in_dim)
        self.w2 = torch.randn(hidden, generator=gen, dtype=torch.float64) / np.sqrt(hidden)

    def __call__(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(outputs, self.space.vocab_size).double()  # (B, L, V)
        z = torch.cat([self.embed[input_ids], onehot.flatten(1)], dim=1)  # (B, H + L·V)
        return torch.tanh(self.scale * torch.relu(z @ self.w1.T) @ self.w2)


class TableReward:
    """Rewards read from a user table ``(N, V**L)`` in enumeration order (validated)."""

    def __init__(self, table: torch.Tensor | np.ndarray, space: OutputSpace) -> None:
        self.table = validate_rewards(table, "reward table")
        self.space = space
        if self.table.ndim != 2 or self.table.shape[1] != space.num_outputs:
            raise ShapeMismatchError(
                f"reward table has shape {tuple(self.table.shape)}, expected (N, V^L={space.num_outputs})"
            )

    def __call__(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return self.table[input_ids, self.space.index(outputs)]


class CallableReward:
    """Wraps a user function ``fn(input_ids (B,), outputs (B, L)) -> (B,)``.

    Tensors, NumPy arrays and lists of real numbers are accepted as return values, converted
    to float64 and checked to lie in [-1, 1] (:func:`~rftgrad.envs.base.validate_rewards`: a string,
    a bool or a number too large for a float raises :class:`~rftgrad.errors.RewardRangeError`);
    the environment checks the shape.
    """

    def __init__(self, fn: RewardFn, what: str = "reward") -> None:
        if not callable(fn):
            raise ConfigError(f"reward must be callable, a table or a reward name, got {type(fn).__name__}")
        self.fn = fn
        self.what = what  # how errors name the values (the environment passes "reward of <its name>")

    def __call__(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return validate_rewards(self.fn(input_ids, outputs), self.what)


#: the names of the sequence rewards defined above (the one list is ``rftgrad.registry.SEQUENCE_REWARDS``).
REWARDS = SEQUENCE_REWARDS


class SequenceEnv(RewardEnv):
    """Prompts plus a reward on whole outputs.

    Args:
        * ``prompts``: ``(N, P)`` prompt tokens in ``[0, prompt_vocab_size)``, ``N >= 1``, ``P >= 1``.
        * ``targets``: ``(N, L)`` target outputs (the SFT labels; exact/position match use them). Prompts
          and targets are integers, or floats that are whole numbers (``1.7`` is refused, not truncated).
        * ``vocab_size``: ``V``, the output vocabulary.
        * ``reward``: a reward name (see ``REWARDS``), a callable, or a ``(N, V**L)`` table.
        * ``prompt_vocab_size``: size of the prompt vocabulary (default ``max(prompts) + 1``).
        * ``groups``: optional name -> ``(N,)`` bool mask.
        * ``features``: optional ``(N, D)`` float features for linear / MLP policies (default:
          the one-hot prompt tokens, flattened).
    """

    def __init__(
        self,
        prompts: torch.Tensor | np.ndarray,
        targets: torch.Tensor | np.ndarray,
        vocab_size: int,
        reward: str | RewardFn | torch.Tensor | np.ndarray = "exact_match",
        prompt_vocab_size: int | None = None,
        groups: dict[str, torch.Tensor] | None = None,
        seed: int = 0,
        name: str = "sequence",
        features: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.prompts = index_tensor(prompts, f"prompts of {name}")
        targets = index_tensor(targets, f"targets of {name}")
        if self.prompts.ndim != 2:
            raise ShapeMismatchError(f"prompts must be 2-D (N, P), got shape {tuple(self.prompts.shape)}")
        if self.prompts.shape[0] < 1 or self.prompts.shape[1] < 1:
            raise ConfigError(
                f"{name} has prompts of shape {tuple(self.prompts.shape)}; give at least 1 prompt of at least 1 token"
            )
        if targets.ndim != 2 or targets.shape[0] != self.prompts.shape[0]:
            raise ShapeMismatchError(
                f"targets have shape {tuple(targets.shape)}, expected (N={self.prompts.shape[0]}, L)"
            )
        self.output_space = OutputSpace(int(vocab_size), int(targets.shape[1]))
        self.output_space.check_outputs(targets)
        self.targets = targets
        if int(self.prompts.min()) < 0:
            raise ShapeMismatchError("prompt tokens must be >= 0")
        needed = int(self.prompts.max()) + 1
        self.prompt_vocab_size = needed if prompt_vocab_size is None else int(prompt_vocab_size)
        if self.prompt_vocab_size < needed:
            raise ShapeMismatchError(
                f"prompt token {needed - 1} >= prompt_vocab_size={self.prompt_vocab_size}; raise prompt_vocab_size"
            )
        if features is None:  # one-hot of each prompt position, flattened
            self.features = torch.nn.functional.one_hot(self.prompts, self.prompt_vocab_size).double().flatten(1)
        else:
            self.features = torch.as_tensor(features, dtype=torch.float64)
            if self.features.ndim != 2 or self.features.shape[0] != self.prompts.shape[0]:
                raise ShapeMismatchError(
                    f"features have shape {tuple(self.features.shape)}, expected (N={self.prompts.shape[0]}, D)"
                )
        self.reward_fn = self._make_reward(reward, seed)
        self._set_groups(groups)

    def _make_reward(self, reward: str | RewardFn | torch.Tensor | np.ndarray, seed: int) -> RewardFn:
        if isinstance(reward, str):
            makers = {
                "exact_match": lambda: ExactMatch(self.targets),
                "position_match": lambda: PositionMatch(self.targets),
                "contains_token": lambda: ContainsToken(self.targets[:, 0]),
                "random_network": lambda: RandomRewardNetwork(self.num_inputs, self.output_space, seed=seed),
            }
            if reward not in makers:
                raise ConfigError(f"unknown reward {reward!r}; choose one of {', '.join(REWARDS)}")
            return makers[reward]()
        if isinstance(reward, torch.Tensor | np.ndarray):
            table = TableReward(reward, self.output_space)
            if table.table.shape[0] != self.num_inputs:
                raise ShapeMismatchError(f"reward table has {table.table.shape[0]} rows, expected N={self.num_inputs}")
            return table
        return (
            reward
            if isinstance(reward, ExactMatch | PositionMatch | ContainsToken | RandomRewardNetwork | TableReward)
            else CallableReward(reward, f"reward of {self.name}")
        )

    def _reward(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return self.reward_fn(input_ids, outputs)

    def with_rewards(self, rewards: torch.Tensor | np.ndarray) -> SequenceEnv:
        """The same prompts, targets, features and groups with the reward table ``rewards`` ``(N, V^L)``."""
        return SequenceEnv(
            self.prompts,
            self.targets,
            self.output_space.vocab_size,
            reward=rewards,
            prompt_vocab_size=self.prompt_vocab_size,
            groups=self.groups,
            name=self.name,
            features=self.features,
        )


def random_sequence_env(
    num_prompts: int = 8,
    vocab_size: int = 4,
    length: int = 3,
    prompt_length: int = 3,
    prompt_vocab_size: int = 8,
    reward: str | RewardFn | torch.Tensor | np.ndarray = "exact_match",
    seed: int = 0,
) -> SequenceEnv:
    """Random prompts and random targets, deterministic given ``seed``.

    ``num_prompts``, ``prompt_length`` and ``prompt_vocab_size`` are >= 1, ``seed >= 0``.
    """
    space = OutputSpace(vocab_size, length)  # validates V and L first
    for what, value in (("num_prompts", num_prompts), ("prompt_length", prompt_length),
                        ("prompt_vocab_size", prompt_vocab_size)):  # fmt: skip
        if not is_count(value):
            raise ConfigError(f"{what}={value!r} is invalid: give an integer >= 1")
    check_seed(seed)
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, prompt_vocab_size, size=(num_prompts, prompt_length))
    targets = rng.integers(0, space.vocab_size, size=(num_prompts, space.length))
    return SequenceEnv(
        prompts,
        targets,
        vocab_size,
        reward=reward,
        prompt_vocab_size=prompt_vocab_size,
        seed=seed,
        name=f"sequence-{reward if isinstance(reward, str) else 'custom'}",
    )

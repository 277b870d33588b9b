"""Random (environment, policy) instances for property checks, and the tightness witness.

An :class:`InstanceSpec` names everything that makes one instance (policy class, V, L,
number of inputs, logit scale, reward kind, temperature, seed); :func:`random_instance`
turns it into an environment and a float64 policy deterministically. The Hypothesis
strategies in the tests, ``rftgrad check`` and the ``bound`` experiment all draw through
it, so a failing case is reproduced from its spec alone.

Reward kinds: ``uniform`` (U[-1, 1] per output), ``binary`` (±1 at random), ``sparse_binary``
(+1 on one output per input, -1 elsewhere), ``constant`` (one value per input: STD = 0)
and ``near_constant`` (a constant plus noise of size 1e-6: STD near 0). A logit scale
around 50 makes the policy near-deterministic, the other road to a small STD.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from rftgrad.envs.base import OutputSpace, RewardEnv
from rftgrad.envs.classification import ClassificationEnv
from rftgrad.envs.sequence import SequenceEnv
from rftgrad.errors import ConfigError
from rftgrad.models import (
    FEATURE_MAPS,
    LinearSoftmaxPolicy,
    MLPPolicy,
    SoftmaxPolicy,
    TabularPolicy,
    TinyTransformerPolicy,
)

__all__ = [
    "POLICY_KINDS",
    "REWARD_KINDS",
    "NEAR_CONSTANT_NOISE",
    "InstanceSpec",
    "random_reward_table",
    "random_instance",
    "draw_specs",
    "tightness_witness",
]

#: the policy classes of the random instances that Theorem 1's checks draw.
POLICY_KINDS = ("tabular", "linear", "mlp", "transformer")
#: the reward tables the random instances draw: uniform in [-1, 1], binary ±1, sparse binary (one
#: rewarded output), constant (STD 0) and near-constant (STD about :data:`NEAR_CONSTANT_NOISE`).
REWARD_KINDS = ("uniform", "binary", "sparse_binary", "constant", "near_constant")
#: the scale of the noise added to a constant reward table in a ``near_constant`` instance.
NEAR_CONSTANT_NOISE = 1e-6
PROMPT_LENGTH, PROMPT_VOCAB, FEATURE_DIM = 2, 4, 3


@dataclass(frozen=True)
class InstanceSpec:
    """Everything that determines one random instance."""

    kind: str = "tabular"  # policy class, one of POLICY_KINDS
    vocab_size: int = 3  # V
    length: int = 2  # L (the MLP policy serves L = 1 only)
    num_inputs: int = 2  # N
    logit_scale: float = 1.0  # scale of the random logits / read-out; ~50 is near-deterministic
    reward_kind: str = "uniform"  # one of REWARD_KINDS
    temperature: float = 1.0  # sampling temperature T
    feature_map: str = "input_last_token"  # linear policies only, one of FEATURE_MAPS
    seed: int = 0  # seeds the environment and the policy

    def __post_init__(self) -> None:
        OutputSpace(self.vocab_size, self.length)  # validates V and L
        checks = {
            "kind": (self.kind, POLICY_KINDS),
            "reward_kind": (self.reward_kind, REWARD_KINDS),
            "feature_map": (self.feature_map, FEATURE_MAPS),
        }
        for field, (value, allowed) in checks.items():
            if value not in allowed:
                raise ConfigError(f"unknown {field} {value!r}; choose one of {', '.join(allowed)}")
        if self.kind == "mlp" and self.length != 1:
            raise ConfigError("the MLP policy serves L = 1 only; use length=1 or another policy kind")
        if self.num_inputs < 1 or self.logit_scale < 0:
            raise ConfigError("need num_inputs >= 1 and logit_scale >= 0")

    def as_dict(self) -> dict[str, object]:
        """The spec as a flat dict (for tables)."""
        return asdict(self)


def random_reward_table(kind: str, num_inputs: int, num_outputs: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(N, Y)`` reward table in [-1, 1] of the given kind (see the module docstring)."""
    shape = (num_inputs, num_outputs)
    if kind == "uniform":
        return rng.uniform(-1.0, 1.0, size=shape)
    if kind == "binary":
        return rng.choice([-1.0, 1.0], size=shape)
    if kind == "sparse_binary":
        table = -np.ones(shape)
        table[np.arange(num_inputs), rng.integers(0, num_outputs, size=num_inputs)] = 1.0
        return table
    level = rng.uniform(-0.9, 0.9, size=(num_inputs, 1))
    noise = NEAR_CONSTANT_NOISE * rng.uniform(-1.0, 1.0, size=shape) if kind == "near_constant" else 0.0
    return np.broadcast_to(level, shape) + noise


def random_instance(
    spec: InstanceSpec, num_replicas: int = 1, dtype: str = "float64", device: str = "cpu"
) -> tuple[RewardEnv, SoftmaxPolicy]:
    """The environment and policy of ``spec`` (deterministic in ``spec.seed``)."""
    rng = np.random.default_rng(spec.seed)
    space = OutputSpace(spec.vocab_size, spec.length)
    table = random_reward_table(spec.reward_kind, spec.num_inputs, space.num_outputs, rng)
    common = dict(
        seed=spec.seed,
        num_replicas=num_replicas,
        dtype=dtype,
        device=device,
        temperature=spec.temperature,
        init_scale=spec.logit_scale,
    )
    if spec.kind == "mlp":
        features = rng.standard_normal((spec.num_inputs, FEATURE_DIM + 1))
        env = ClassificationEnv(
            features,
            rng.integers(0, spec.vocab_size, spec.num_inputs),
            spec.vocab_size,
            reward_table=table,
            name=f"random-{spec.reward_kind}",
        )
        return env, MLPPolicy.for_env(env, hidden=(8,), **common)
    env = SequenceEnv(
        rng.integers(0, PROMPT_VOCAB, size=(spec.num_inputs, PROMPT_LENGTH)),
        rng.integers(0, spec.vocab_size, size=(spec.num_inputs, spec.length)),
        spec.vocab_size,
        reward=table,
        prompt_vocab_size=PROMPT_VOCAB,
        features=rng.standard_normal((spec.num_inputs, FEATURE_DIM)),
        name=f"random-{spec.reward_kind}",
    )
    if spec.kind == "tabular":
        return env, TabularPolicy.for_env(env, **common)
    if spec.kind == "linear":
        return env, LinearSoftmaxPolicy.for_env(env, features=spec.feature_map, **common)
    return env, TinyTransformerPolicy.for_env(env, d_model=8, num_heads=2, num_layers=1, **common)


def draw_specs(
    count: int,
    seed: int = 0,
    kinds: tuple[str, ...] = POLICY_KINDS,
    max_length: int = 5,
    max_vocab: int = 6,
    max_outputs: int = 1024,
) -> list[InstanceSpec]:
    """``count`` random specs: V in [2, max_vocab], L in [1, max_length] with V^L <= max_outputs,
    log-uniform logit scale in [0.1, 50], every reward kind, T in {0.5, 1, 2}."""
    if count < 0 or max_length < 1 or max_vocab < 2:
        raise ConfigError(f"need count >= 0, max_length >= 1, max_vocab >= 2 (got {count}, {max_length}, {max_vocab})")
    rng = np.random.default_rng(seed)
    specs = []
    for _ in range(count):
        kind = str(rng.choice(kinds))
        vocab = int(rng.integers(2, max_vocab + 1))
        longest = 1 if kind == "mlp" else max(1, min(max_length, int(np.log(max_outputs) / np.log(vocab))))
        specs.append(
            InstanceSpec(
                kind=kind,
                vocab_size=vocab,
                length=int(rng.integers(1, longest + 1)),
                num_inputs=int(rng.integers(1, 4)),
                logit_scale=float(np.exp(rng.uniform(np.log(0.1), np.log(50.0)))),
                reward_kind=str(rng.choice(REWARD_KINDS)),
                temperature=float(rng.choice([0.5, 1.0, 2.0])),
                feature_map=str(rng.choice(FEATURE_MAPS)),
                seed=int(rng.integers(0, 2**31 - 1)),
            )
        )
    return specs


def tightness_witness(length: int, prob: float = 0.5, dtype: str = "float64") -> tuple[SequenceEnv, SoftmaxPolicy]:
    """The witness that ``sqrt(L)`` is needed with shared parameters (docs/paper.md §2).

    ``V = 2``; every position draws from one shared softmax (a linear policy with the single
    feature ``φ = x = [1]``, so ``γ = 1``) with ``π(0) = prob``; the reward is the fraction of
    tokens equal to 0 rescaled to [-1, 1] (position match against the all-zero target).
    Then ``||∇V|| / (γ · STD) = sqrt(2 L prob (1 - prob))``, which is ``sqrt(L/2)`` at 1/2.
    """
    if not 0.0 < prob < 1.0:
        raise ConfigError(f"prob must lie strictly inside (0, 1), got {prob}")
    env = SequenceEnv(
        [[0]],
        [[0] * length],
        2,
        reward="position_match",
        prompt_vocab_size=1,
        features=[[1.0]],
        name=f"witness-L{length}",
    )
    policy = LinearSoftmaxPolicy.for_env(env, features="input", init_scale=0.0, dtype=dtype)
    logit = float(np.log(prob / (1.0 - prob)))
    policy.params["W"] = torch.tensor([[[logit], [0.0]]], dtype=policy.dtype)  # (R=1, V=2, D=1): π(0) = prob
    return env, policy

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

Besides the built-in classes of :data:`POLICY_KINDS`, a spec may name a ``transformers`` causal LM
(:data:`HF_POLICY_KINDS`: ``"gpt2"``, ``"llama"``), built locally from a random small configuration
(:func:`hf_config`; no download) as a :class:`rftgrad.models.HFCausalLM` over an answer subset of
``V`` tokens of its :data:`HF_MODEL_VOCAB`-token vocabulary, or over its whole vocabulary
(``full_vocab``, ``L = 1``). ``transformers`` (the optional extra ``trl``) is imported only when such
a spec is built, so the default kinds (and ``rftgrad check``) do not need it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
    "HF_POLICY_KINDS",
    "HF_MODEL_VOCAB",
    "HF_MAX_VOCAB",
    "HF_MAX_LENGTH",
    "REWARD_KINDS",
    "NEAR_CONSTANT_NOISE",
    "InstanceSpec",
    "random_reward_table",
    "random_instance",
    "hf_config",
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

#: ``transformers`` causal LMs (:class:`rftgrad.models.HFCausalLM`) a spec may name besides
#: :data:`POLICY_KINDS`: GPT-2 (learned positions, LayerNorm, tied embeddings) and Llama (RoPE,
#: RMSNorm, SwiGLU, grouped-query attention). Not drawn by default: they need ``transformers``.
HF_POLICY_KINDS = ("gpt2", "llama")
#: the vocabulary of an HF instance's model when its answers are a subset (``full_vocab=False``).
HF_MODEL_VOCAB = 16
#: the largest V and L :func:`draw_specs` draws for an HF kind with an answer subset (the model is
#: called once per prefix tree and differentiated per prefix, so its cost grows with ``V^L``).
HF_MAX_VOCAB, HF_MAX_LENGTH = 4, 3
#: the share of HF specs :func:`draw_specs` draws over the model's whole vocabulary (``L = 1``).
HF_FULL_VOCAB_SHARE = 0.25
#: HF kind -> the parameter-name prefix of the model's final normalisation, whose gain (weight and
#: bias) the logit scale multiplies: the logits are linear in it (``z = W_out (s · norm(h))``).
HF_FINAL_NORM = {"gpt2": "transformer.ln_f.", "llama": "model.norm."}
HF_WIDTHS, HF_LAYERS, HF_HEADS = (8, 16), (1, 2), (1, 2)  # the random architectures of an HF instance
TRANSFORMERS_HINT = 'pip install -e ".[trl]"'


@dataclass(frozen=True)
class InstanceSpec:
    """Everything that determines one random instance."""

    kind: str = "tabular"  # policy class, one of POLICY_KINDS or HF_POLICY_KINDS
    vocab_size: int = 3  # V
    length: int = 2  # L (the MLP policy serves L = 1 only)
    num_inputs: int = 2  # N
    logit_scale: float = 1.0  # scale of the random logits / read-out (HF: final norm gain); ~50: near-deterministic
    reward_kind: str = "uniform"  # one of REWARD_KINDS
    temperature: float = 1.0  # sampling temperature T
    feature_map: str = "input_last_token"  # linear policies only, one of FEATURE_MAPS
    seed: int = 0  # seeds the environment and the policy
    full_vocab: bool = False  # HF kinds only: the answers are the model's whole vocabulary of V tokens (L = 1)

    def __post_init__(self) -> None:
        OutputSpace(self.vocab_size, self.length)  # validates V and L
        checks = {
            "kind": (self.kind, POLICY_KINDS + HF_POLICY_KINDS),
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
        if self.full_vocab and (self.kind not in HF_POLICY_KINDS or self.length != 1 or self.vocab_size < PROMPT_VOCAB):
            raise ConfigError(
                f"full_vocab needs an HF kind ({', '.join(HF_POLICY_KINDS)}), length=1 and "
                f"vocab_size >= {PROMPT_VOCAB} (the prompt tokens); use full_vocab=False"
            )
        if self.kind in HF_POLICY_KINDS and not self.full_vocab and self.vocab_size > HF_MODEL_VOCAB:
            raise ConfigError(
                f"an HF answer subset has at most HF_MODEL_VOCAB={HF_MODEL_VOCAB} tokens, got vocab_size="
                f"{self.vocab_size}; use a smaller vocab_size"
            )

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
    """The environment and policy of ``spec`` (deterministic in ``spec.seed``).

    HF kinds (:data:`HF_POLICY_KINDS`) import ``transformers`` here; without it they raise
    :class:`~rftgrad.errors.ConfigError` naming ``pip install -e ".[trl]"``."""
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
    if spec.kind in HF_POLICY_KINDS:
        return env, _hf_policy(spec, rng, num_replicas, dtype, device)
    return env, TinyTransformerPolicy.for_env(env, d_model=8, num_heads=2, num_layers=1, **common)


def _transformers_config_classes() -> dict[str, type]:
    """HF kind -> its ``transformers`` config class; a missing ``transformers`` raises a one-line ConfigError."""
    try:
        from transformers import GPT2Config, LlamaConfig
    except ImportError as err:
        raise ConfigError(
            f"HF policy kinds ({', '.join(HF_POLICY_KINDS)}) need transformers, which rftgrad does not install "
            f"by default; {TRANSFORMERS_HINT}"
        ) from err
    return {"gpt2": GPT2Config, "llama": LlamaConfig}


def hf_config(
    kind: str, model_vocab: int, positions: int, width: int = 16, layers: int = 2, heads: int = 2, kv_heads: int = 0
) -> Any:
    """A small ``transformers`` config of HF kind ``kind`` (:data:`HF_POLICY_KINDS`), built locally.

    ``gpt2``: ``GPT2Config(n_embd=width, n_layer=layers, n_head=heads, n_positions=positions)`` (MLP
    ``4 · width``). ``llama``: ``LlamaConfig(hidden_size=width, intermediate_size=2 · width,
    num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads or heads,
    max_position_embeddings=positions)``. Both with ``vocab_size=model_vocab`` and weights drawn with
    std ``initializer_range = 1/sqrt(width)``, so that at the final norm's unit gain the logits have a
    standard deviation of about 1 (measured 0.83-0.96 at widths 8 and 16; as for
    :class:`~rftgrad.models.TinyTransformerPolicy` at ``init_scale=1``). BOS and EOS are id 0, and
    there is no padding token (a padding id gets a zero embedding, whose RMSNorm gain
    ``1/sqrt(ε) = 1e3`` inflates γ by as much). Raises :class:`ConfigError` for an unknown kind or
    without ``transformers``.
    """
    if kind not in HF_POLICY_KINDS:
        raise ConfigError(f"unknown HF kind {kind!r}; choose one of {', '.join(HF_POLICY_KINDS)}")
    config_class = _transformers_config_classes()[kind]
    common = dict(vocab_size=model_vocab, initializer_range=width**-0.5, bos_token_id=0, eos_token_id=0)
    if kind == "gpt2":
        return config_class(n_embd=width, n_layer=layers, n_head=heads, n_positions=positions, **common)
    return config_class(
        hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads, max_position_embeddings=positions, **common,
    )  # fmt: skip


def _hf_policy(
    spec: InstanceSpec, rng: np.random.Generator, num_replicas: int, dtype: str, device: str
) -> SoftmaxPolicy:
    """The :class:`rftgrad.models.HFCausalLM` of an HF spec, its architecture and answers drawn from ``rng``.

    Width, layers and heads from :data:`HF_WIDTHS`, :data:`HF_LAYERS`, :data:`HF_HEADS` (Llama: 1 or all
    key/value heads); the model vocabulary is ``V`` (``full_vocab``) or :data:`HF_MODEL_VOCAB` with ``V``
    distinct answer tokens at random. The logit scale multiplies the final norm's gain of every replica,
    hence the logits: ``f_θ = logit_scale · f_θ0`` at initialisation."""
    width, layers, heads = (int(rng.choice(options)) for options in (HF_WIDTHS, HF_LAYERS, HF_HEADS))
    kv_heads = int(rng.choice([1, heads]))
    model_vocab = spec.vocab_size if spec.full_vocab else HF_MODEL_VOCAB
    answers = None if spec.full_vocab else rng.choice(HF_MODEL_VOCAB, size=spec.vocab_size, replace=False).tolist()
    config = hf_config(spec.kind, model_vocab, PROMPT_LENGTH + spec.length, width, layers, heads, kv_heads)
    from rftgrad.models import HFCausalLM  # imports transformers: only for HF kinds

    policy = HFCausalLM.from_config(
        config, answer_tokens=answers, max_length=spec.length, seed=spec.seed, num_replicas=num_replicas,
        device=device, dtype=dtype, temperature=spec.temperature,
    )  # fmt: skip
    scaled = [key for key in policy.params if key.startswith(HF_FINAL_NORM[spec.kind])]
    if not scaled:  # transformers renamed the module: fail loudly rather than ignore the logit scale
        raise ConfigError(f"no parameter {HF_FINAL_NORM[spec.kind]}* in the {spec.kind} model; update HF_FINAL_NORM")
    for key in scaled:  # in place: the module's own weights are views of replica 0's (HFCausalLM)
        policy.params[key].mul_(spec.logit_scale)
    return policy


def draw_specs(
    count: int,
    seed: int = 0,
    kinds: tuple[str, ...] = POLICY_KINDS,
    max_length: int = 5,
    max_vocab: int = 6,
    max_outputs: int = 1024,
) -> list[InstanceSpec]:
    """``count`` random specs: V in [2, max_vocab], L in [1, max_length] with V^L <= max_outputs,
    log-uniform logit scale in [0.1, 50], every reward kind, T in {0.5, 1, 2}.

    HF kinds (:data:`HF_POLICY_KINDS`, given in ``kinds``) draw smaller output spaces: an answer subset
    of V in [2, min(max_vocab, HF_MAX_VOCAB)] tokens and L in [1, min(max_length, HF_MAX_LENGTH)], or
    (a share ``HF_FULL_VOCAB_SHARE``, 1/4) the whole vocabulary of V in [PROMPT_VOCAB, HF_MODEL_VOCAB]
    tokens at L = 1 (within ``max_outputs``). The draws of the other kinds do not depend on them."""
    if count < 0 or max_length < 1 or max_vocab < 2:
        raise ConfigError(f"need count >= 0, max_length >= 1, max_vocab >= 2 (got {count}, {max_length}, {max_vocab})")
    rng = np.random.default_rng(seed)
    specs = []
    for _ in range(count):
        kind = str(rng.choice(kinds))
        full_vocab = kind in HF_POLICY_KINDS and bool(rng.random() < HF_FULL_VOCAB_SHARE)
        if full_vocab:
            vocab = int(rng.integers(PROMPT_VOCAB, max(PROMPT_VOCAB, min(HF_MODEL_VOCAB, max_outputs)) + 1))
            longest = 1
        else:
            top_vocab, top_length = (min(max_vocab, HF_MAX_VOCAB), min(max_length, HF_MAX_LENGTH)) if (
                kind in HF_POLICY_KINDS) else (max_vocab, max_length)  # fmt: skip
            vocab = int(rng.integers(2, top_vocab + 1))
            longest = 1 if kind == "mlp" else max(1, min(top_length, int(np.log(max_outputs) / np.log(vocab))))
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
                full_vocab=full_vocab,
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

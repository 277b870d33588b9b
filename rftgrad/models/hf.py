"""Any ``transformers`` causal language model as a softmax policy of the exact engine (docs/paper.md §1-§2).

:class:`HFCausalLM` wraps a causal LM (GPT-2, Llama, ... any ``AutoModelForCausalLM``) as ``R``
replicas of the autoregressive softmax policy of Razin et al. (ICLR 2024), Section 3, over an *answer
vocabulary*: ``V`` chosen token ids (or the model's whole vocabulary), so that
:func:`rftgrad.theory.exact`, :func:`rftgrad.theory.gamma` and :func:`rftgrad.finetune.train` run on
a real architecture exactly as on the built-in policies. The model is only ever called through
``torch.func.functional_call`` with one replica's parameters, which ``torch.func.vmap`` batches over
replicas and inputs and ``torch.func.vjp`` differentiates.

Importing this module imports ``transformers`` (the optional extra ``trl``); ``import rftgrad``
does not: :mod:`rftgrad.models` loads this module on first access of one of its names.
:func:`word_tokenizer` builds a word-level tokenizer locally (no download) for tests and examples.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, OutputSpace, RewardEnv
from rftgrad.envs.text import check_left_padded
from rftgrad.errors import ConfigError, EnumerationLimitError, ShapeMismatchError, first_line
from rftgrad.models.base import Params, SoftmaxPolicy
from rftgrad.runtime import replica_seeds, resolve_dtype

try:
    import transformers
    from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast
except ImportError as err:  # the optional extra is missing
    raise ConfigError(
        'rftgrad.models.HFCausalLM needs transformers (not installed by default); pip install -e ".[trl]"'
    ) from err

__all__ = ["DEFAULT_ATTENTION", "PACKED_TREE_LIMIT", "HFCausalLM", "word_tokenizer"]

#: the longest packed prefix-tree sequence ``P + Σ_{1<=l<L} V^l`` that :meth:`HFCausalLM.replica_tree_logits`
#: runs in one pass (its attention mask and scores are quadratic in that length); past it the tree is
#: scored level by level (:meth:`SoftmaxPolicy.replica_tree_logits`).
PACKED_TREE_LIMIT = 4096

#: the attention implementation an :class:`HFCausalLM` runs its model with by default: ``"sdpa"``, evaluated
#: with torch's MATH backend (a composite of matmuls and a softmax in the model's dtype, which
#: ``torch.func.vmap`` batches natively; torch's fused CPU kernels have no batching rule). transformers'
#: ``"eager"`` attention of Llama-like models takes its softmax in float32, so a float64 policy on
#: ``"eager"`` is only float32-accurate there.
DEFAULT_ATTENTION = "sdpa"

#: a causal LM, or a function ``seed -> causal LM`` (run under a forked, seeded global RNG).
ModelSource = PreTrainedModel | Callable[[int], PreTrainedModel]


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Run the block with torch's global CPU RNG seeded with ``seed``, then restore the caller's state.

    ``transformers`` initialises weights from torch's global generator; forking it keeps the
    caller's random stream as it was (no global state changes, tests/models/test_hf.py)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _rotary_forward(module: torch.nn.Module, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A standard rotary embedding's ``(cos, sin)`` computed in ``x``'s dtype (transformers: in float32).

    ``θ_{t,i} = t · inv_freq_i``, ``emb = [θ, θ]``, ``(cos(emb), sin(emb)) · attention_scaling``: the formula
    of ``LlamaRotaryEmbedding.forward`` and its copies, with the angles, cos and sin in ``x.dtype``."""
    freqs = position_ids[..., None].to(x.dtype) * module.inv_freq.to(device=x.device, dtype=x.dtype)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * module.attention_scaling, emb.sin() * module.attention_scaling


def _rms_norm_forward(module: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """A standard RMSNorm, ``w ⊙ h / sqrt(mean(h²) + ε)``, in ``h``'s dtype (transformers: in float32)."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return module.weight * (hidden_states * torch.rsqrt(variance + module.variance_epsilon))


def _float64_replacement(module: torch.nn.Module, config: Any) -> Callable[..., Any] | None:
    """The float64 forward for a module transformers runs in float32 (a standard rotary embedding or
    RMSNorm), or None: another module, or one whose output differs from the replacement's on a probe."""
    rope_type = getattr(module, "rope_type", None)
    if (isinstance(getattr(module, "inv_freq", None), torch.Tensor) and isinstance(rope_type, str)
            and rope_type not in ("dynamic", "longrope") and hasattr(module, "attention_scaling")):  # fmt: skip
        device = module.inv_freq.device
        probe = (torch.zeros(1, 1, 1, dtype=torch.float64, device=device),
                 torch.arange(_max_positions(config) or 256, device=device)[None])  # fmt: skip
        replacement: Callable[..., Any] = functools.partial(_rotary_forward, module)
    elif type(module).__name__.endswith("RMSNorm") and isinstance(getattr(module, "variance_epsilon", None), float):
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 1:
            return None
        gen = torch.Generator().manual_seed(0)
        probe = (torch.randn(2, 3, weight.shape[0], generator=gen, dtype=torch.float64).to(weight.device),)
        replacement = functools.partial(_rms_norm_forward, module)
    else:
        return None
    with torch.no_grad():
        try:
            original, ours = module(*probe), replacement(*probe)
        except (TypeError, RuntimeError):  # another signature: leave the module as it is
            return None
    pairs = list(zip(original, ours, strict=True)) if isinstance(original, tuple) else [(original, ours)]
    agree = all(
        isinstance(a, torch.Tensor) and a.shape == b.shape and bool(torch.allclose(a.double(), b, rtol=1e-5, atol=1e-5))
        for a, b in pairs
    )
    return replacement if agree else None


def _run_in_float64(model: torch.nn.Module) -> list[str]:
    """Make the modules of ``model`` (a policy's own float64 copy) that transformers runs in float32 run in float64.

    transformers computes rotary angles, ``cos`` and ``sin`` (``LlamaRotaryEmbedding`` and its copies) and
    RMSNorm (``LlamaRMSNorm`` and its copies) in float32 even in a float64 model: that caps the accuracy of
    a float64 Llama at about 1e-7, and float32 ``cos``/``sin`` even round differently (by an ulp) with the
    tensor's length (vectorised or scalar kernels), so one position would get embeddings differing by 1e-8
    between two batch layouts (the packed tree and the per-level run, padded and unpadded prompts).
    Each such module whose original output matches the same formula evaluated in float64 to float32
    accuracy on a probe (rotary: positions ``0..max_positions-1``; RMSNorm: random states) gets that
    float64 forward, on this instance only; rotary types that update ``inv_freq`` per call (``dynamic``,
    ``longrope``) and RMSNorm variants (e.g. Gemma's ``1 + w``) stay as they are. Returns their names.
    """
    changed = []
    for name, module in model.named_modules():
        replacement = _float64_replacement(module, model.config)
        if replacement is not None:
            module.forward = replacement
            changed.append(name)
    return changed


def _max_positions(config: Any) -> int | None:
    """The model's longest sequence (``max_position_embeddings``, GPT-2's ``n_positions``), or None."""
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) else None


class HFCausalLM(SoftmaxPolicy):
    r"""``R`` replicas of a ``transformers`` causal LM as a softmax policy over an answer vocabulary.

    **The policy.** With answer tokens ``A = (a_0, ..., a_{V-1})`` (distinct token ids of the model),
    the next-token logits of prompt ``x`` and prefix ``u = (u_1, ..., u_l)`` (indices into ``A``) are the
    model's logits at the last position of the token sequence ``[x, a_{u_1}, ..., a_{u_l}]``, restricted to
    ``A``:

    .. math::

        f_\theta(x, u) = \big(z_\theta([x, a_{u_1}, \dots, a_{u_l}])_{a_v}\big)_{v < V}, \qquad
        p_\theta(y \mid x) = \prod_{l=1}^{L} \operatorname{softmax}\big(f_\theta(x, y_{\lt l}) / T\big)[y_l],

    the autoregressive softmax policy of Razin et al. (ICLR 2024), Section 3 (docs/paper.md §1), on
    which Theorem 1 and the exact engine (:func:`rftgrad.theory.exact`) act. An output ``y`` is a
    sequence of ``L`` answer tokens, fed back to the model as their token ids ``a_{y_l}``.

    **What it is not.** It is the model's next-token distribution *conditioned on staying inside*
    ``A`` (a softmax over the subset's logits, renormalised), not its unconstrained generation: the
    probability of every token outside ``A`` is dropped, no end-of-sequence token ends an output early,
    and every output has exactly ``L`` tokens. With ``answer_tokens=None`` the subset is the model's
    whole vocabulary (``V = config.vocab_size``) and for ``L = 1`` the policy is the model's own
    next-token distribution; ``V^L`` must stay within the enumeration limit, which for a real vocabulary
    means ``L = 1``.

    **Prompts.** ``x`` is ``(N, P)`` long, left-padded with :data:`rftgrad.envs.PROMPT_PAD` (``-1``), so prompts of
    different lengths batch (:func:`rftgrad.envs.left_pad`); every prompt holds at least one token. The
    wrapper builds the attention mask (keys with ``x >= 0``, causal), the position ids (``cumsum`` of the
    mask minus one: a padded prompt sees the positions of its unpadded run) and feeds token 0 in the
    padding slots (masked out), so the logits equal the unpadded single-prompt run to rounding.

    **Parameters.** ``self.params``: name -> ``(R, ...)`` for every entry of
    ``model.named_parameters()`` (tied weights, e.g. GPT-2's ``lm_head``/``wte``, appear once).
    ``self.model`` is a private copy of the module, in eval mode (dropout off), used only as the
    skeleton of ``torch.func.functional_call``: every call substitutes one replica's parameters, and the
    module's own are views of replica 0's initial tensors (no second copy of the weights).

    Build it with :meth:`from_config` (``R`` random initialisations, one per seed), :meth:`from_pretrained`
    (a local directory) or ``HFCausalLM(model)`` (every replica starts from the weights of ``model``, or
    from ``model(seed)`` when ``model`` is a function of the seed). Example, with a tokenizer built
    locally::

        from transformers import GPT2Config
        from rftgrad.envs import TextEnv
        from rftgrad.models import HFCausalLM, word_tokenizer
        from rftgrad.theory import exact, gamma

        tokenizer = word_tokenizer(["what", "is", "one", "plus", "two", "1", "2", "3"])
        env = TextEnv.from_texts(["what is one plus one", "what is one plus two"], tokenizer,
                                 answers=["1", "2", "3"], length=1, reward="exact_match",
                                 references=["2", "3"])
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=2, n_head=2, n_positions=32,
                            bos_token_id=0, eos_token_id=0)
        policy = HFCausalLM.from_config(config, answer_tokens=env.answer_tokens, num_replicas=2)
        result = exact(policy, env)     # value, std, grad_norm (R, N) over the V^L = 3 outputs
        print(gamma(policy, env))       # γ(x;θ) (R, N): Theorem 1's Jacobian factor

    Args:
        * ``model``: a causal LM (a ``transformers.PreTrainedModel`` returning ``.logits``), or a
          function ``seed -> model`` called once per replica under a forked global RNG seeded with the
          replica's seed (what :meth:`from_config` passes).
        * ``answer_tokens``: ``None`` (the whole vocabulary) or ``V >= 2`` distinct token ids.
        * ``max_length``: ``L``, the longest output (``V^L <= max_outputs``).
        * ``seed``, ``num_replicas``, ``device``, ``dtype``, ``temperature``: as :class:`SoftmaxPolicy`
          (default ``dtype`` float64, for the theory's checks).
        * ``attn_implementation``: the attention the policy's copy of the model runs (default
          :data:`DEFAULT_ATTENTION`, ``"sdpa"``), or None to keep the model's.
        * ``max_outputs``: the enumeration limit ``V^L`` is checked against.
        * ``packed_tree_limit``: longest packed prefix-tree sequence (:meth:`replica_tree_logits`).
    """

    name = "hf"
    input_kind = "prompts"

    def __init__(
        self,
        model: ModelSource,
        answer_tokens: Sequence[int] | torch.Tensor | None = None,
        max_length: int = 1,
        seed: int | Sequence[int] = 0,
        num_replicas: int | None = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float64",
        temperature: float | Sequence[float] = 1.0,
        attn_implementation: str | None = DEFAULT_ATTENTION,
        max_outputs: int = DEFAULT_MAX_OUTPUTS,
        packed_tree_limit: int = PACKED_TREE_LIMIT,
    ) -> None:
        seeds = replica_seeds(seed, num_replicas)
        if isinstance(model, torch.nn.Module):
            skeleton = copy.deepcopy(model)  # the caller's module is left as it is (mode, device, dtype)
            self._build: Callable[[int], torch.nn.Module] | None = None
        elif callable(model):
            self._build = model
            skeleton = self._built(seeds[0])
        else:
            raise ConfigError(
                f"model must be a transformers causal LM or a function seed -> model, got {type(model).__name__}"
            )
        self._check_model(skeleton)
        self.config = skeleton.config
        self.model_vocab_size = int(self.config.vocab_size)
        self.answer_tokens = self._checked_answer_tokens(answer_tokens)
        vocab = self.model_vocab_size if self.answer_tokens is None else len(self.answer_tokens)
        space = OutputSpace(vocab, max_length)  # validates V >= 2 and L >= 1
        self._check_enumerable(space, max_outputs)
        if isinstance(packed_tree_limit, bool) or not isinstance(packed_tree_limit, int) or packed_tree_limit < 0:
            raise ConfigError(f"packed_tree_limit={packed_tree_limit!r} is invalid; give an integer >= 0")
        self.packed_tree_limit = packed_tree_limit
        self._first_replica = {key: value.detach() for key, value in skeleton.named_parameters()}
        if attn_implementation is not None and attn_implementation != skeleton.config._attn_implementation:
            try:
                skeleton.set_attn_implementation(attn_implementation)  # our copy's config only
            except (ValueError, KeyError, ImportError) as err:
                raise ConfigError(
                    f"{type(skeleton).__name__} cannot run attn_implementation={attn_implementation!r}: "
                    f"{first_line(err)}; give 'sdpa', 'eager' or None (keep the model's)"
                ) from err
        self.model = skeleton.to(dtype=resolve_dtype(dtype)).eval().requires_grad_(False)
        #: names of the modules changed to compute in float64 (see ``_run_in_float64``).
        self.float64_modules = _run_in_float64(self.model) if self.model.dtype == torch.float64 else []
        super().__init__(vocab, max_length, seeds, None, device, dtype, temperature)
        del self._first_replica
        self.model.to(self.device)
        self._share_weights_with_first_replica()
        self.answer_ids = (
            torch.arange(vocab, device=self.device)
            if self.answer_tokens is None
            else torch.tensor(self.answer_tokens, dtype=torch.long, device=self.device)
        )  # (V,): the model's token id of each answer token
        self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self._ancestors: dict[tuple[int, str], torch.Tensor] = {}

    def _share_weights_with_first_replica(self) -> None:
        """Make ``self.model``'s parameters views of replica 0's initial tensors (``self.params[key][0]``).

        The policy never reads them (every call substitutes a replica's parameters), so the module keeps
        no second copy of the weights; tied parameters stay tied (one view for all their uses)."""
        names = {id(param): key for key, param in self.model.named_parameters()}  # tied: the first name
        views: dict[int, torch.nn.Parameter] = {}
        for module in self.model.modules():
            for attribute, param in list(module._parameters.items()):
                if param is not None:
                    if id(param) not in views:
                        views[id(param)] = torch.nn.Parameter(self.params[names[id(param)]][0], requires_grad=False)
                    module._parameters[attribute] = views[id(param)]

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_config(
        cls,
        config: transformers.PretrainedConfig,
        answer_tokens: Sequence[int] | torch.Tensor | None = None,
        max_length: int = 1,
        seed: int | Sequence[int] = 0,
        num_replicas: int | None = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float64",
        temperature: float | Sequence[float] = 1.0,
        attn_implementation: str = DEFAULT_ATTENTION,
        **kwargs: Any,
    ) -> HFCausalLM:
        """``R`` randomly initialised models of ``config``: replica ``r`` is
        ``AutoModelForCausalLM.from_config(config)`` built under ``torch.manual_seed(seeds[r])`` (in a
        forked RNG: the caller's global random state is unchanged), drawn in float32 on the CPU, then
        cast to ``dtype``, so replica ``r`` equals a one-replica policy with ``seed=seeds[r]``.

        ``config`` is copied (transformers writes the dtype and attention into the config it builds
        from). ``attn_implementation``: ``"sdpa"`` (default, see :data:`DEFAULT_ATTENTION`) or ``"eager"``.
        ``**kwargs``: ``max_outputs``, ``packed_tree_limit`` (see the class)."""
        if not isinstance(config, transformers.PretrainedConfig):
            raise ConfigError(f"config must be a transformers config (e.g. GPT2Config), got {type(config).__name__}")

        def build(replica_seed: int) -> PreTrainedModel:
            try:
                return AutoModelForCausalLM.from_config(
                    copy.deepcopy(config), dtype=torch.float32, attn_implementation=attn_implementation
                )
            except ValueError as err:  # an architecture without a causal-LM head, an unknown attention
                raise ConfigError(f"cannot build a causal LM from {type(config).__name__}: {first_line(err)}") from err

        return cls(build, answer_tokens, max_length, seed, num_replicas, device, dtype, temperature, None, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        answer_tokens: Sequence[int] | torch.Tensor | None = None,
        max_length: int = 1,
        num_replicas: int | None = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float64",
        temperature: float | Sequence[float] = 1.0,
        attn_implementation: str = DEFAULT_ATTENTION,
        **kwargs: Any,
    ) -> HFCausalLM:
        """The causal LM saved in the LOCAL directory ``path`` (``save_pretrained``'s output: ``config.json``
        and the weights), loaded with ``local_files_only=True`` (nothing is downloaded). One replica, or
        ``num_replicas`` copies of the same weights. A missing directory, ``config.json`` or weights file
        raises :class:`~rftgrad.errors.ConfigError`. ``**kwargs``: ``max_outputs``, ``packed_tree_limit``."""
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(
                f"model directory {str(folder)!r} does not exist; give a local directory written by "
                "save_pretrained (HFCausalLM never downloads)"
            )
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"{str(folder)!r} has no config.json; give the directory save_pretrained wrote (config and weights)"
            )
        try:
            model = AutoModelForCausalLM.from_pretrained(
                folder, local_files_only=True, dtype=resolve_dtype(dtype), attn_implementation=attn_implementation
            )
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"cannot load a causal LM from {str(folder)!r}: {first_line(err)}") from err
        return cls(model, answer_tokens, max_length, 0, num_replicas, device, dtype, temperature, None, **kwargs)

    def _built(self, replica_seed: int) -> torch.nn.Module:
        """``self._build(replica_seed)`` under a forked global RNG seeded with ``replica_seed``."""
        with _seeded_global_rng(replica_seed):
            model = self._build(replica_seed)
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"the model function returned {type(model).__name__}; return a causal LM module")
        return model

    @staticmethod
    def _check_model(model: torch.nn.Module) -> None:
        """Refuse a module that is not a ``transformers`` model with a config."""
        if not isinstance(getattr(model, "config", None), transformers.PretrainedConfig):
            raise ConfigError(
                f"{type(model).__name__} has no transformers config; give a causal LM such as GPT2LMHeadModel"
            )

    def _checked_answer_tokens(self, answer_tokens: Sequence[int] | torch.Tensor | None) -> tuple[int, ...] | None:
        """``answer_tokens`` as a tuple of distinct ids in ``[0, vocab)``, or None (the whole vocabulary)."""
        if answer_tokens is None:
            return None
        try:
            ids = torch.as_tensor(answer_tokens)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"answer_tokens must be a list of token ids, got {answer_tokens!r}") from None
        if ids.ndim != 1 or ids.dtype.is_floating_point or ids.dtype in (torch.bool, torch.complex64, torch.complex128):
            raise ConfigError(f"answer_tokens must be a flat list of integer token ids, got {answer_tokens!r}")
        tokens = tuple(int(t) for t in ids.tolist())
        bad = [t for t in tokens if not 0 <= t < self.model_vocab_size]
        if bad:
            raise ConfigError(
                f"answer token {bad[0]} is outside the model's vocabulary [0, {self.model_vocab_size}); "
                "give ids of the model's tokenizer"
            )
        if len(set(tokens)) != len(tokens):
            raise ConfigError(f"answer_tokens {list(tokens)} repeat an id; give distinct token ids")
        return tokens

    def _check_enumerable(self, space: OutputSpace, max_outputs: int) -> None:
        """:class:`EnumerationLimitError` for ``V^L > max_outputs``, naming answer_tokens for the full vocabulary."""
        if space.num_outputs <= max_outputs:
            return
        if self.answer_tokens is None:
            raise EnumerationLimitError(
                f"the full vocabulary of V={space.vocab_size} tokens gives V^L = {space.num_outputs} outputs for "
                f"L={space.length}, past the enumeration limit {max_outputs}; use L=1, or a few answer_tokens"
            )
        space.check_enumerable(max_outputs)

    def _init_replica(self, gen: torch.Generator) -> Params:
        replica_seed = gen.initial_seed()  # the generator of the replica's seed (SoftmaxPolicy.__init__)
        if self._build is None or replica_seed == self.seeds[0]:
            source = self._first_replica
        else:
            source = dict(self._built(replica_seed).named_parameters())
        return {key: value.detach().to(torch.float64, copy=True) for key, value in source.items()}

    def _check_inputs(self, env: RewardEnv) -> None:
        prompts = env.prompts
        check_left_padded(prompts, f"prompts of {env.name}")
        if int(prompts.max()) >= self.model_vocab_size:
            raise ShapeMismatchError(
                f"{env.name} has prompt token {int(prompts.max())} but the model reads ids in "
                f"[0, {self.model_vocab_size}); tokenise with the model's tokenizer"
            )
        longest = _max_positions(self.config)
        if longest is not None and prompts.shape[1] + env.output_space.length - 1 > longest:
            raise ShapeMismatchError(
                f"{env.name} prompts of {prompts.shape[1]} tokens plus L-1={env.output_space.length - 1} output "
                f"tokens exceed the model's {longest} positions; shorten the prompts or use a longer model"
            )
        env_answers = getattr(env, "answer_tokens", None)
        own = tuple(range(self.model_vocab_size)) if self.answer_tokens is None else self.answer_tokens
        if env_answers is not None and tuple(int(t) for t in env_answers) != own:
            raise ShapeMismatchError(
                f"{env.name} scores answer tokens {list(env_answers)[:8]} but the policy's are {list(own)[:8]}; "
                "build the policy with answer_tokens=env.answer_tokens"
            )

    # ----------------------------------------------------------------- the model, one replica
    def _logits(
        self, params: Params, tokens: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor, keep: int
    ) -> torch.Tensor:
        """The model's logits at the last ``keep`` positions, restricted to the answer tokens.

        ``tokens`` ``(B, T)`` ids, ``positions`` ``(B, T)`` position ids, ``allowed`` ``(B, T, T)`` bool
        (query ``i`` may attend key ``j``). The mask goes to the model as a 4D additive float mask
        ``(B, 1, T, T)`` (0 where allowed, the dtype's most negative number elsewhere), which transformers
        passes to the attention as it is (``masking_utils``: an already prepared 4D mask is returned
        unchanged). Returns ``(B, keep, V)``.
        """
        dtype = self.dtype
        zero = torch.zeros((), dtype=dtype, device=tokens.device)
        mask = torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]  # (B, 1, T, T)
        kwargs: dict[str, Any] = {"input_ids": tokens, "attention_mask": mask, "position_ids": positions}
        if self._keeps_logits:
            kwargs["logits_to_keep"] = keep
        with sdpa_kernel(SDPBackend.MATH):  # exact in the model's dtype, and vmap batches it
            logits = functional_call(self.model, params, (), {**kwargs, "use_cache": False}).logits[:, -keep:]
        if self.answer_tokens is None:
            return logits  # (B, keep, V): the whole vocabulary
        return logits.index_select(-1, self.answer_ids)  # (B, keep, V)

    @staticmethod
    def _prompt_parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded prompts ``x (N, P)`` -> ``valid (N, P)`` bool, ``tokens (N, P)`` (0 in the padding),
        ``positions (N, P)`` (``cumsum(valid) - 1``, clamped at 0)."""
        valid = x >= 0
        tokens = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
        positions = (valid.long().cumsum(-1) - 1).clamp_min(0)
        return valid, tokens, positions

    def _sequence_run(self, params: Params, x: torch.Tensor, answers: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits of ``[prompt_n, a_{answers[n, m, 0]}, ...]`` at its last ``keep`` positions:
        ``x (N, P)``, ``answers (N, M, k)`` answer indices -> ``(N, M, keep, V)``."""
        num_inputs, num_seqs, extra = answers.shape
        valid, tokens, positions = self._prompt_parts(x)  # (N, P) each
        prompt_length = x.shape[1]
        count = valid.sum(-1, keepdim=True)  # (N, 1): real prompt tokens
        steps = torch.arange(extra, device=x.device)
        seq_tokens = torch.cat(
            [tokens[:, None, :].expand(-1, num_seqs, -1), self.answer_ids[answers]], dim=-1
        )  # (N, M, T)
        seq_positions = torch.cat([positions, count + steps], dim=-1)  # (N, T): the answers follow the prompt
        keys = torch.cat([valid, torch.ones(num_inputs, extra, dtype=torch.bool, device=x.device)], dim=-1)  # (N, T)
        length = prompt_length + extra
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()  # (T, T)
        diagonal = torch.eye(length, dtype=torch.bool, device=x.device)  # a padding query sees itself (no empty row)
        allowed = (causal & keys[:, None, :]) | diagonal  # (N, T, T)
        logits = self._logits(
            params,
            seq_tokens.reshape(num_inputs * num_seqs, length),
            seq_positions.repeat_interleave(num_seqs, dim=0),
            allowed.repeat_interleave(num_seqs, dim=0),
            keep,
        )  # (N·M, keep, V)
        return logits.reshape(num_inputs, num_seqs, keep, -1)

    def replica_prefix_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        """``f_θ(x_n, u)``: the model's logits after ``[x_n, a_{u_1}, ..., a_{u_l}]`` on the answer tokens.

        One model call on the ``N·M`` sequences; ``x`` ``(N, P)`` left-padded prompts, ``prefixes``
        ``(N, M, l)`` answer indices. Returns ``(N, M, V)`` logits before temperature.
        """
        return self._sequence_run(params, x, prefixes, 1)[:, :, 0]

    def replica_sequence_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, outputs: torch.Tensor
    ) -> torch.Tensor:
        """All ``L'`` positions of ``outputs (N, M, L')`` in one causal pass over
        ``[x_n, a_{y_1}, ..., a_{y_{L'-1}}]`` (teacher forcing): ``(N, M, L', V)``."""
        length = outputs.shape[-1]
        return self._sequence_run(params, x, outputs[..., : length - 1], length)

    def _tree_ancestors(self, length: int, device: torch.device) -> torch.Tensor:
        """``(S', S')`` bool over the tree nodes of levels ``1..length-1`` (``S' = Σ V^l``, level-major, each
        level in :meth:`~rftgrad.envs.OutputSpace.prefixes` order): entry ``[i, j]`` says node ``j`` is node
        ``i`` or one of its ancestors. Node ``k`` of level ``l`` has ancestor ``k // V^(l-j)`` at level ``j``."""
        key = (length, str(device))
        if key not in self._ancestors:
            vocab = self.vocab_size
            offsets = [0]
            for level in range(1, length):
                offsets.append(offsets[-1] + vocab**level)
            ancestors = torch.zeros(offsets[-1], offsets[-1], dtype=torch.bool, device=device)
            for level in range(1, length):
                local = torch.arange(vocab**level, device=device)
                for above in range(1, level + 1):
                    ancestors[offsets[level - 1] + local, offsets[above - 1] + local // vocab ** (level - above)] = True
            self._ancestors[key] = ancestors
        return self._ancestors[key]

    def replica_tree_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, ...]:
        """The exact engine's prefix tree in ONE model call per input batch: every prefix once, the prompt once.

        Each input's sequence packs its prompt (``P`` left-padded positions; the last one gives the
        empty prefix's logits) and then, level by level ``l = 1..L'-1``, one position per prefix ``u`` of
        :meth:`~rftgrad.envs.OutputSpace.prefixes` ``(l)``: node ``u`` holds the token id ``a_{u_l}`` at
        position id ``n_x + l - 1`` (``n_x`` real prompt tokens). A custom 4D attention mask lets a node
        attend to the prompt's real tokens, its ancestors and itself only, which is exactly what the last
        position of ``[x, a_{u_1}, ..., a_{u_l}]`` attends to causally, at the same position ids; so every
        node's logits equal those of the per-level reference (:meth:`SoftmaxPolicy.replica_tree_logits`,
        every prefix encoded from scratch) to rounding (tests: 1e-12 in float64), with
        ``P + Σ_{1<=l<L'} V^l`` positions per input instead of ``Σ_{l<L'} V^l (P + l)``. Sequences longer
        than ``packed_tree_limit`` (the mask is quadratic in the length) are scored by that reference.

        Returns:
            ``L'`` tensors, level ``l``: ``(N, V^l, V)`` logits before temperature.
        """
        space = self._tree_space(length)
        num_inputs, prompt_length = x.shape
        widths = [self.vocab_size**level for level in range(1, length)]  # nodes of levels 1..L'-1
        nodes = sum(widths)
        if length == 1 or prompt_length + nodes > self.packed_tree_limit:
            return super().replica_tree_logits(params, ids, x, space.length)
        device = x.device
        valid, tokens, positions = self._prompt_parts(x)  # (N, P) each
        node_index = torch.arange(nodes, device=device)  # level offsets V + V^2 + ... are multiples of V
        node_tokens = self.answer_ids[node_index % self.vocab_size]  # (S',): node u holds a_{u_l}
        node_levels = torch.arange(1, length, device=device).repeat_interleave(
            torch.tensor(widths, device=device), output_size=nodes
        )  # (S',)
        count = valid.sum(-1, keepdim=True)  # (N, 1)
        seq_tokens = torch.cat([tokens, node_tokens.expand(num_inputs, -1)], dim=-1)  # (N, S)
        seq_positions = torch.cat([positions, count - 1 + node_levels], dim=-1)  # (N, S)
        causal = torch.ones(prompt_length, prompt_length, dtype=torch.bool, device=device).tril()
        diagonal = torch.eye(prompt_length, dtype=torch.bool, device=device)
        prompt_rows = torch.cat(
            [
                (causal & valid[:, None, :]) | diagonal,
                torch.zeros(num_inputs, prompt_length, nodes, dtype=torch.bool, device=device),
            ],
            dim=-1,
        )  # (N, P, S): the prompt attends causally within itself
        node_rows = torch.cat(
            [valid[:, None, :].expand(-1, nodes, -1), self._tree_ancestors(length, device).expand(num_inputs, -1, -1)],
            dim=-1,
        )  # (N, S', S): a node attends to the prompt, its ancestors and itself
        allowed = torch.cat([prompt_rows, node_rows], dim=1)  # (N, S, S)
        logits = self._logits(params, seq_tokens, seq_positions, allowed, 1 + nodes)  # (N, 1 + S', V)
        return logits.split([1, *widths], dim=1)

    def describe(self) -> str:
        """One line: name and architecture, R, parameters per replica, V, L, device, dtype."""
        return super().describe().replace(self.name, f"{self.name} ({type(self.model).__name__})", 1)


def word_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """A word-level ``PreTrainedTokenizerFast`` over ``words``, built locally (no download).

    Ids: ``[PAD]`` 0, ``[UNK]`` 1, then ``words`` in order (``2, 3, ...``); text is split on whitespace
    (``tokenizers``' ``WordLevel`` model with a ``WhitespaceSplit`` pre-tokenizer), an unknown word becomes
    ``[UNK]``, and ``decode`` joins tokens with spaces. For tests and examples of :class:`HFCausalLM` with
    :class:`rftgrad.envs.TextEnv`: every word is one token, so any word can be an answer token.
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    names = [str(word) for word in words]
    if not names or len(set(names)) != len(names) or any(not w or w.split() != [w] for w in names):
        raise ConfigError(
            f"word_tokenizer needs a non-empty list of distinct words without spaces, got {list(words)[:8]!r}"
        )
    if {"[PAD]", "[UNK]"} & set(names):
        raise ConfigError("[PAD] and [UNK] are the tokenizer's own tokens; leave them out of words")
    vocab = {word: index for index, word in enumerate(["[PAD]", "[UNK]", *names])}
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")

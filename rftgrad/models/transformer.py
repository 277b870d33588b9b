"""Tiny causal transformer policy for sequences (pre-LayerNorm GPT, nanoGPT-style).

The model reads ``[prompt tokens, BOS, y_1, ..., y_{l-1}]`` and predicts ``y_l`` from the
last position. Token ids: prompt tokens ``0..P_v-1``, BOS ``P_v``, output token ``a`` is
``P_v + 1 + a``. Every block is ``h += Attn(LN(h)); h += MLP(LN(h))`` with causal
multi-head attention; logits ``= W_U LN(h) + b_U``. Written as a pure function of a
parameter dict so that ``torch.func.vmap`` batches it over replicas and inputs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.functional import gelu, layer_norm

from rftgrad.envs.base import RewardEnv
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.models.base import Params, SoftmaxPolicy, init_normal
from rftgrad.runtime import is_count

#: ``attend(q, k, v)``: per-head queries, keys, values ``(..., H, T, d/H)`` -> mixed values, same shape.
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class TinyTransformerPolicy(SoftmaxPolicy):
    """A causal transformer over prompt + output tokens.

    Args:
        prompt_vocab_size: size of the prompt-token vocabulary ``P_v``, >= 1.
        prompt_length: ``P``, prompt tokens per input, >= 0.
        vocab_size: output vocabulary ``V``.
        max_length: longest output ``L``.
        d_model: width, >= 1; ``num_heads`` must divide it.
        num_heads: attention heads, >= 1.
        num_layers: blocks, >= 1 (with none the logits would read the token embeddings only).
        init_scale: scale of the unembedding, finite and >= 0 (0 starts from the uniform policy).
        **kwargs: seed, num_replicas, device, dtype, temperature (see SoftmaxPolicy).
    """

    name = "transformer"
    input_kind = "prompts"
    readout_keys = ("unembed_w", "unembed_b")

    def __init__(
        self,
        prompt_vocab_size: int,
        prompt_length: int,
        vocab_size: int,
        max_length: int,
        d_model: int = 32,
        num_heads: int = 2,
        num_layers: int = 2,
        init_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        sizes = {"d_model": (d_model, 1), "num_heads": (num_heads, 1), "num_layers": (num_layers, 1),
                 "prompt_vocab_size": (prompt_vocab_size, 1), "prompt_length": (prompt_length, 0)}  # fmt: skip
        for what, (value, least) in sizes.items():
            if not is_count(value, least):
                raise ConfigError(
                    f"{what}={value!r} is invalid: the transformer needs an integer {what} >= {least}; "
                    f"set it to at least {least}"
                )
        if d_model % num_heads:
            raise ConfigError(f"num_heads={num_heads} must divide d_model={d_model} (both >= 1); give a divisor")
        if not math.isfinite(init_scale) or init_scale < 0:
            raise ConfigError(f"init_scale={init_scale!r} is invalid: give a finite scale >= 0 (0: uniform policy)")
        self.prompt_vocab_size = int(prompt_vocab_size)
        self.prompt_length = int(prompt_length)
        self.d_model, self.num_heads, self.num_layers = int(d_model), int(num_heads), int(num_layers)
        self.init_scale = float(init_scale)
        super().__init__(vocab_size, max_length, **kwargs)

    @classmethod
    def for_env(cls, env: RewardEnv, **kwargs: Any) -> TinyTransformerPolicy:
        """A transformer sized for a sequence environment ``env``."""
        if env.prompts is None:
            raise ShapeMismatchError(
                f"the transformer policy reads prompts but {env.name} has none; use a sequence env"
            )
        space = env.output_space
        return cls(env.prompt_vocab_size, env.prompts.shape[1], space.vocab_size, space.length, **kwargs)

    def _init_replica(self, gen: torch.Generator) -> Params:
        d, layers = self.d_model, self.num_layers
        num_tokens = self.prompt_vocab_size + 1 + self.vocab_size
        depth_scale = 1.0 / math.sqrt(2 * layers)  # GPT-2: residual writes scaled by depth
        return {
            "tok_emb": torch.randn(num_tokens, d, generator=gen, dtype=torch.float64) * 0.5,
            "pos_emb": torch.randn(self.prompt_length + self.max_length, d, generator=gen, dtype=torch.float64) * 0.5,
            "ln1_w": torch.ones(layers, d, dtype=torch.float64),
            "ln1_b": torch.zeros(layers, d, dtype=torch.float64),
            "qkv_w": init_normal(gen, layers, 3 * d, d),
            "proj_w": init_normal(gen, layers, d, d, scale=depth_scale),
            "ln2_w": torch.ones(layers, d, dtype=torch.float64),
            "ln2_b": torch.zeros(layers, d, dtype=torch.float64),
            "fc_w": init_normal(gen, layers, 4 * d, d),
            "fc_b": torch.zeros(layers, 4 * d, dtype=torch.float64),
            "out_w": init_normal(gen, layers, d, 4 * d, scale=depth_scale),
            "out_b": torch.zeros(layers, d, dtype=torch.float64),
            "lnf_w": torch.ones(d, dtype=torch.float64),
            "lnf_b": torch.zeros(d, dtype=torch.float64),
            "unembed_w": init_normal(gen, self.vocab_size, d, scale=self.init_scale),
            "unembed_b": torch.zeros(self.vocab_size, dtype=torch.float64),
        }

    def _check_inputs(self, env: RewardEnv) -> None:
        if env.prompts.shape[1] != self.prompt_length or env.prompt_vocab_size > self.prompt_vocab_size:
            raise ShapeMismatchError(
                f"transformer expects prompts of length {self.prompt_length} over {self.prompt_vocab_size} tokens but "
                f"{env.name} has length {env.prompts.shape[1]} over {env.prompt_vocab_size}; "
                "use TinyTransformerPolicy.for_env(env)"
            )

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(..., T, d) -> (..., H, T, d/H)``: queries, keys or values per head."""
        heads = self.num_heads
        return t.unflatten(-1, (heads, self.d_model // heads)).transpose(-2, -3)

    def _block(
        self, params: Params, layer: int, h: torch.Tensor, attend: Attend
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Block ``layer``: ``h += W_O Attn(LN_1(h)); h += W_2 GELU(W_1 LN_2(h) + b_1) + b_2``.

        The one definition of the block maths, for the teacher-forcing pass (``attend``: causal
        attention over one sequence) and the KV-cached tree (``attend``: a node over its
        ancestors). ``h``: ``(..., T, d)`` states of ``T`` positions (or tree nodes);
        ``attend(q, k, v)`` mixes the values, ``(..., H, T, d/H)`` each, into ``(..., H, T, d/H)``.

        Returns:
            the new ``h`` ``(..., T, d)`` and this layer's keys and values ``(..., H, T, d/H)``.
        """
        d = self.d_model
        a = layer_norm(h, (d,), params["ln1_w"][layer], params["ln1_b"][layer])
        q, k, v = (self._split_heads(t) for t in (a @ params["qkv_w"][layer].T).split(d, dim=-1))  # (..., H, T, d/H)
        mixed = attend(q, k, v).transpose(-2, -3).flatten(-2)  # (..., T, d)
        h = h + mixed @ params["proj_w"][layer].T
        m = layer_norm(h, (d,), params["ln2_w"][layer], params["ln2_b"][layer])
        hidden = gelu(m @ params["fc_w"][layer].T + params["fc_b"][layer])  # (..., T, 4d)
        h = h + hidden @ params["out_w"][layer].T + params["out_b"][layer]
        return h, k, v

    def _encode(
        self, params: Params, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Causal pass over token ids ``(B, T)`` at positions ``0..T-1``.

        Returns:
            final-LayerNorm states ``(B, T, d)`` and each layer's keys and values ``(B, H, T, d/H)``.
        """
        seq = tokens.shape[1]
        scale = math.sqrt(self.d_model // self.num_heads)
        causal = torch.ones(seq, seq, dtype=torch.bool, device=tokens.device).tril()  # (T, T)

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            scores = ((q @ k.transpose(-1, -2)) / scale).masked_fill(~causal, float("-inf"))  # (B, H, T, T)
            return torch.softmax(scores, dim=-1) @ v  # (B, H, T, d/H)

        h = params["tok_emb"][tokens] + params["pos_emb"][:seq]  # (B, T, d)
        cache = []
        for layer in range(self.num_layers):
            h, k, v = self._block(params, layer, h, attend)
            cache.append((k, v))
        return self._final_norm(params, h), cache

    def _final_norm(self, params: Params, h: torch.Tensor) -> torch.Tensor:
        return layer_norm(h, (self.d_model,), params["lnf_w"], params["lnf_b"])

    def _hidden(self, params: Params, prompts: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm states of ``[prompt, BOS, prefix]``: ``(N, M, P + 1 + l, d)``."""
        num_inputs, num_prefixes, level = prefixes.shape
        bos = torch.full(
            (num_inputs, num_prefixes, 1), self.prompt_vocab_size, dtype=torch.long, device=prefixes.device
        )
        tokens = torch.cat(
            [prompts[:, None, :].expand(-1, num_prefixes, -1), bos, prefixes + self.prompt_vocab_size + 1], dim=-1
        ).reshape(num_inputs * num_prefixes, -1)  # (B, T) with B = N·M, T = P + 1 + l
        h, _ = self._encode(params, tokens)  # (B, T, d)
        return h.reshape(num_inputs, num_prefixes, tokens.shape[1], self.d_model)

    def _readout_features(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        return self._hidden(params, x, prefixes)[:, :, -1, :]  # (N, M, d)

    def _unembed(self, params: Params, h: torch.Tensor) -> torch.Tensor:
        """Logits ``W_U h + b_U``: ``(..., d) -> (..., V)``."""
        return h @ params["unembed_w"].T + params["unembed_b"]

    def replica_prefix_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        return self._unembed(params, self._readout_features(params, ids, x, prefixes))  # (N, M, V)

    def replica_sequence_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, outputs: torch.Tensor
    ) -> torch.Tensor:
        """All ``L`` positions in one causal pass over ``[prompt, BOS, y_1..y_{L-1}]``."""
        length = outputs.shape[-1]
        h = self._hidden(params, x, outputs[..., : length - 1])[:, :, self.prompt_length :, :]  # (N, M, L, d)
        return self._unembed(params, h)  # (N, M, L, V)

    def replica_tree_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, ...]:
        """The prefix tree by a KV-cached traversal: ``[prompt, BOS]`` once per input, one token per node.

        Same numbers as the base per-level loop (:meth:`SoftmaxPolicy.replica_tree_logits`, every
        prefix re-encoded from scratch) up to float round-off, with work and memory of one
        position per tree node instead of ``P + 1 + l`` (the exact engine's ``method="tree"``
        for the policy gradient of Razin et al., ICLR 2024, Section 3).

        Level 0 is the causal pass over ``[prompt, BOS]`` (positions ``0..P``); its states give
        the logits of the empty prefix and its keys and values ``K_0, V_0`` ``(N, H, P+1, d/H)``
        per layer. Node ``i`` of level ``l >= 1`` is the prefix ``u`` of
        :meth:`OutputSpace.prefixes` ``(l)`` order: its token ``i mod V`` sits at position
        ``P + l``, and its query at each layer attends over the prompt block, over its ancestor
        ``i // V^(l-j)`` of every level ``1 <= j < l`` and over itself, exactly the keys the full
        sequence ``[prompt, BOS, u]`` attends over causally:

            Attn(q_i) = Σ_t softmax_t(q_i·k_t / sqrt(d/H)) v_t,   t ∈ {prompt, BOS} ∪ ancestors(i) ∪ {i}.

        An ancestor's keys ``K_j`` ``(N, H, V^j, d/H)`` are read by grouping the level's
        ``V^l`` queries as ``(V^j, V^(l-j))`` (broadcasting, no copy of any path per node).
        Blocks, pre-LayerNorm, GELU and positions are those of the teacher-forcing pass
        (:meth:`_block`, one definition).

        Returns:
            ``length`` tensors, level ``l``: ``(N, V^l, V)`` logits before temperature.
        """
        self._tree_space(length)
        num_inputs = x.shape[0]
        bos = torch.full((num_inputs, 1), self.prompt_vocab_size, dtype=torch.long, device=x.device)
        h, prompt_cache = self._encode(params, torch.cat([x, bos], dim=-1))  # (N, P+1, d)
        logits = [self._unembed(params, h[:, -1:, :])]  # level 0: (N, 1, V)
        # per layer: keys and values (N, H, ·, d/H) of the prompt block, then of levels 1, 2, ... (V^j nodes)
        ancestors: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[kv] for kv in prompt_cache]
        output_emb = params["tok_emb"][self.prompt_vocab_size + 1 :]  # (V, d): output token a is P_v + 1 + a
        scale = math.sqrt(self.d_model // self.num_heads)
        for level in range(1, length):
            node_emb = (output_emb + params["pos_emb"][x.shape[-1] + level]).repeat(self.vocab_size ** (level - 1), 1)
            h = node_emb.expand(num_inputs, -1, -1)  # (N, V^l, d): node i holds token i mod V
            for layer in range(self.num_layers):
                attend = functools.partial(_tree_attention, cached=ancestors[layer], scale=scale)
                h, k, v = self._block(params, layer, h, attend)
                if level < length - 1:  # the last level's keys are read by no descendant
                    ancestors[layer].append((k, v))
            logits.append(self._unembed(params, self._final_norm(params, h)))  # (N, V^l, V)
        return tuple(logits)


def _tree_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cached: list[tuple[torch.Tensor, torch.Tensor]],
    scale: float,
) -> torch.Tensor:
    """Attention of the ``M = V^l`` nodes of level ``l`` over their ancestors and themselves.

    ``q, k, v``: ``(N, H, M, d/H)`` of the level's nodes. ``cached``: ``[(K_0, V_0), (K_1, V_1), ...,
    (K_{l-1}, V_{l-1})]``, the prompt block ``(N, H, P+1, d/H)`` then level ``j``'s nodes
    ``(N, H, V^j, d/H)``; node ``i``'s ancestor at level ``j`` is ``i // V^(l-j)``, so the queries
    grouped as ``(V^j, V^(l-j))`` meet ``K_j`` by broadcasting. Softmax over the concatenated
    ``P + 1 + l`` scores ``q·k / scale``; returns ``(N, H, M, d/H)``.
    """
    (prompt_k, prompt_v), *levels = cached
    nodes = q.shape[-2]
    scores = [(q @ prompt_k.transpose(-1, -2)) / scale]  # (N, H, M, P+1)
    for level_k, _ in levels:
        width = level_k.shape[-2]  # V^j ancestors, each shared by V^(l-j) nodes
        grouped = q.unflatten(-2, (width, nodes // width))  # (N, H, V^j, V^(l-j), d/H)
        scores.append(((grouped @ level_k[..., None]).flatten(-3) / scale)[..., None])  # (N, H, M, 1)
    scores.append((q * k).sum(-1, keepdim=True) / scale)  # (N, H, M, 1): the node itself
    weights = torch.softmax(torch.cat(scores, dim=-1), dim=-1)  # (N, H, M, P+1+l)
    block = prompt_k.shape[-2]
    mixed = weights[..., :block] @ prompt_v  # (N, H, M, d/H)
    for j, (_, level_v) in enumerate(levels):
        width = level_v.shape[-2]
        grouped = weights[..., block + j].unflatten(-1, (width, nodes // width))  # (N, H, V^j, V^(l-j))
        mixed = mixed + (grouped[..., None] * level_v[..., :, None, :]).flatten(-3, -2)  # (N, H, M, d/H)
    return mixed + weights[..., -1:] * v

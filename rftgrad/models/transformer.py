"""Tiny causal transformer policy for sequences (pre-LayerNorm GPT, nanoGPT-style).

The model reads ``[prompt tokens, BOS, y_1, ..., y_{l-1}]`` and predicts ``y_l`` from the
last position. Token ids: prompt tokens ``0..P_v-1``, BOS ``P_v``, output token ``a`` is
``P_v + 1 + a``. Every block is ``h += Attn(LN(h)); h += MLP(LN(h))`` with causal
multi-head attention; logits ``= W_U LN(h) + b_U``. Written as a pure function of a
parameter dict so that ``torch.func.vmap`` batches it over replicas and inputs.

The exact engine's prefix tree (:meth:`TinyTransformerPolicy.replica_tree_logits`) is one
KV-cached pass per input: ``[prompt, BOS]`` once, then one position per prefix, attending over
its ancestors' keys and values (:func:`_tree_attention`) instead of re-encoding each prefix.
Both passes share :meth:`TinyTransformerPolicy._blocks`, the one definition of the blocks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.functional import gelu, layer_norm, linear

from rftgrad.envs.base import RewardEnv
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.models.base import Params, SoftmaxPolicy, init_normal
from rftgrad.runtime import is_count

#: ``attend(q, k, v)``: per-head queries, keys, values ``(..., H, T, d/H)`` -> mixed values, same shape.
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class TinyTransformerPolicy(SoftmaxPolicy):
    """A causal transformer over prompt + output tokens.

    Args:
        * ``prompt_vocab_size``: size of the prompt-token vocabulary ``P_v``, >= 1.
        * ``prompt_length``: ``P``, prompt tokens per input, >= 0.
        * ``vocab_size``: output vocabulary ``V``.
        * ``max_length``: longest output ``L``.
        * ``d_model``: width, >= 1; ``num_heads`` must divide it.
        * ``num_heads``: attention heads, >= 1.
        * ``num_layers``: blocks, >= 1 (with none the logits would read the token embeddings only).
        * ``init_scale``: scale of the unembedding, finite and >= 0 (0 starts from the uniform policy).
        * ``**kwargs``: seed, num_replicas, device, dtype, temperature (see SoftmaxPolicy).
    """

    name = "transformer"
    input_kind = "prompts"
    readout_keys = ("unembed_w", "unembed_b")
    #: the largest packed tree (``S = P + 1 + Σ_{1<=l<L} V^l`` positions) whose attention runs as one masked
    #: ``S x S`` attention (few, larger operations: the small trees of the property tests and ``rftgrad
    #: check``); larger trees attend segment by segment (work and memory ``O(S (P + L))``, not ``O(S²)``).
    dense_tree_positions = 128

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

    def _layer(self, params: Params, i: int) -> Params:
        """Block ``i``'s tensors (a view; with one block a squeeze, whose reverse pass is a view too)."""
        if self.num_layers == 1:
            return {key: params[key].squeeze(0) for key in LAYER_KEYS}
        return {key: params[key][i] for key in LAYER_KEYS}

    def _blocks(self, params: Params, h: torch.Tensor, attend: Attend, read_from: int = 0) -> torch.Tensor:
        """Every block, then the final LayerNorm: ``(..., T, d) -> (..., T - read_from, d)``.

        Block ``i``: ``h += W_O Attn(LN_1(h)); h += W_2 GELU(W_1 LN_2(h) + b_1) + b_2``. The one
        definition of the block maths, for the causal pass over whole sequences (``attend`` =
        :func:`_masked_attention` with a causal mask) and the packed prefix tree (``attend`` =
        :func:`_tree_attention`, or :func:`_masked_attention` with the tree's mask).
        ``h``: ``(..., T, d)`` embedded tokens of ``T`` positions (or tree nodes); ``attend(q, k, v)``
        mixes the values ``(..., H, T, d/H)`` for the queries of the last ``T_q`` positions, ``(..., H,
        T_q, d/H)``, into ``(..., H, T_q, d/H)``. Only positions ``read_from..T-1`` are returned, so the
        last block runs its queries, residual and MLP on those only (their keys and values still come
        from every position): the other positions' last-block states are never read.
        """
        d, heads = self.d_model, self.num_heads
        for i in range(self.num_layers):
            w = self._layer(params, i)
            a = layer_norm(h, (d,), w["ln1_w"], w["ln1_b"])
            qkv = (a @ w["qkv_w"].T).unflatten(-1, (3, heads, d // heads)).movedim(-3, 0).transpose(-2, -3)
            q, k, v = qkv.unbind(0)  # (..., H, T, d/H) each
            if i == self.num_layers - 1 and read_from:
                h, q = h[..., read_from:, :], q[..., read_from:, :]  # (..., T_q, d), (..., H, T_q, d/H)
            h = h + attend(q, k, v).transpose(-2, -3).flatten(-2) @ w["proj_w"].T
            m = layer_norm(h, (d,), w["ln2_w"], w["ln2_b"])
            h = h + linear(gelu(linear(m, w["fc_w"], w["fc_b"])), w["out_w"], w["out_b"])
        return layer_norm(h, (d,), params["lnf_w"], params["lnf_b"])

    def _causal_mask(self, queries: int, keys: int, device: torch.device) -> torch.Tensor:
        """``(T_q, T)`` bool: query ``i`` (position ``T - T_q + i``) sees keys ``<=`` its position (cached)."""
        key, masks = ("causal", queries, keys, str(device)), self._mask_cache()
        if key not in masks:
            masks[key] = torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)
        return masks[key]

    def _mask_cache(self) -> dict[tuple[object, ...], torch.Tensor]:
        """The policy's attention masks by shape (constants; created on first use, also on an unpickled policy)."""
        return self.__dict__.setdefault("_masks", {})

    def _hidden(
        self, params: Params, prompts: torch.Tensor, prefixes: torch.Tensor, read_from: int = 0
    ) -> torch.Tensor:
        """Final-LayerNorm states of ``[prompt, BOS, prefix]`` at positions ``read_from..``: ``(N, M, P + 1 + l
        - read_from, d)``."""
        num_inputs, num_prefixes, level = prefixes.shape
        bos = torch.full(
            (num_inputs, num_prefixes, 1), self.prompt_vocab_size, dtype=torch.long, device=prefixes.device
        )
        tokens = torch.cat(
            [prompts[:, None, :].expand(-1, num_prefixes, -1), bos, prefixes + self.prompt_vocab_size + 1], dim=-1
        ).reshape(num_inputs * num_prefixes, -1)  # (B, T) with B = N·M, T = P + 1 + l
        seq = tokens.shape[1]
        h = params["tok_emb"][tokens] + params["pos_emb"][:seq]  # (B, T, d)
        masks = functools.partial(self._causal_mask, device=tokens.device)
        attend = functools.partial(_masked_attention, scale=math.sqrt(self.d_model // self.num_heads), masks=masks)
        return self._blocks(params, h, attend, read_from).reshape(num_inputs, num_prefixes, seq - read_from, -1)

    def _readout_features(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        last = x.shape[1] + prefixes.shape[-1]  # P + l: the position that predicts the next token
        return self._hidden(params, x, prefixes, read_from=last)[:, :, 0, :]  # (N, M, d)

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
        h = self._hidden(params, x, outputs[..., : length - 1], read_from=x.shape[1])  # (N, M, L, d)
        return self._unembed(params, h)  # (N, M, L, V)

    def replica_tree_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, ...]:
        """The prefix tree in one packed pass: ``[prompt, BOS]`` once per input, one position per tree node.

        Same numbers as the base per-level loop (:meth:`SoftmaxPolicy.replica_tree_logits`, every
        prefix ``[prompt, BOS, u]`` encoded from scratch) up to float round-off, with the work and
        memory of ``S = P + 1 + Σ_{1<=l<L} V^l`` positions per input instead of
        ``Σ_{l<L} V^l (P + 1 + l)`` (the exact engine's ``method="tree"`` for the policy gradient
        of Razin et al., ICLR 2024, Section 3).

        Each input's sequence packs the prompt block ``[prompt, BOS]`` (positions ``0..P``; BOS
        gives the empty prefix's logits) and then, level by level ``l = 1..L-1``, one position
        per prefix ``u`` in :meth:`~rftgrad.envs.OutputSpace.prefixes` ``(l)`` order: node ``i`` holds its last
        token ``i mod V`` at position ``P + l``. At every layer a node's query attends over the
        prompt block's keys and values, those of its ancestor ``i // V^(l-j)`` of each level
        ``1 <= j < l`` and its own: exactly what the last position of ``[prompt, BOS, u]`` attends
        over causally (``_tree_attention``), so a node's states equal those of that position.
        The blocks (``_blocks``) run once over the packed ``(N, S, d)`` states: each weight
        enters one product per layer, in the forward pass and in the (per-input) VJPs.

        Returns:
            ``length`` tensors, level ``l``: ``(N, V^l, V)`` logits before temperature.
        """
        self._tree_space(length)
        num_inputs, prompt_length = x.shape
        device, vocab = x.device, self.vocab_size
        widths = [vocab**level for level in range(1, length)]  # nodes of levels 1..L-1
        bos = torch.full((num_inputs, 1), self.prompt_vocab_size, dtype=torch.long, device=device)
        prompt_h = params["tok_emb"][torch.cat([x, bos], dim=-1)] + params["pos_emb"][: prompt_length + 1]
        nodes = sum(widths)  # offsets of the levels, V + V^2 + ..., are multiples of V
        node_tokens = torch.arange(nodes, device=device) % vocab  # (Σ V^l,): node i of level l holds token i mod V
        node_positions = (torch.arange(1, length, device=device) + prompt_length).repeat_interleave(
            torch.tensor(widths, dtype=torch.long, device=device), output_size=nodes
        )  # (Σ V^l,): level l at position P + l
        node_h = params["tok_emb"][node_tokens + self.prompt_vocab_size + 1] + params["pos_emb"][node_positions]
        h = torch.cat([prompt_h, node_h.expand(num_inputs, -1, -1)], dim=1)  # (N, S, d)
        scale = math.sqrt(self.d_model // self.num_heads)
        if h.shape[1] <= self.dense_tree_positions:  # small tree: one masked attention over all S positions
            masks = functools.partial(self._tree_mask, prompt_length + 1, length, device=device)
            attend = functools.partial(_masked_attention, scale=scale, masks=masks)
        else:
            masks = functools.partial(self._causal_mask, device=device)
            attend = functools.partial(_tree_attention, segments=[prompt_length + 1, *widths], scale=scale, masks=masks)
        logits = self._unembed(params, self._blocks(params, h, attend, read_from=prompt_length))  # (N, 1 + Σ V^l, V)
        return logits.split([1, *widths], dim=1)

    def _tree_mask(self, block: int, length: int, queries: int, keys: int, device: torch.device) -> torch.Tensor:
        """``(T_q, S)`` bool over the packed tree of ``S = block + Σ_{1<=l<length} V^l`` positions (the
        last ``T_q`` as queries): the prompt block ``[prompt, BOS]`` (``block = P + 1``) is causal, and
        node ``i`` of level ``l`` sees the prompt block, its ancestor ``i // V^(l-j)`` of each level
        ``1 <= j < l`` and itself: the keys of :func:`_tree_attention` (cached)."""
        cache, masks = ("tree", block, length, str(device)), self._mask_cache()
        if cache not in masks:
            vocab = self.vocab_size
            offsets = [block]
            for level in range(1, length):
                offsets.append(offsets[-1] + vocab**level)
            mask = torch.zeros(offsets[-1], offsets[-1], dtype=torch.bool)
            mask[:block, :block] = torch.ones(block, block, dtype=torch.bool).tril()
            mask[block:, :block] = True
            for level in range(1, length):
                local = torch.arange(vocab**level)
                for above in range(1, level + 1):
                    mask[offsets[level - 1] + local, offsets[above - 1] + local // vocab ** (level - above)] = True
            masks[cache] = mask.to(device)
        return masks[cache][keys - queries :]


#: the per-block tensors (leading axis: the block).
LAYER_KEYS = ("ln1_w", "ln1_b", "qkv_w", "proj_w", "ln2_w", "ln2_b", "fc_w", "fc_b", "out_w", "out_b")


def _masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, masks: Callable[[int, int], torch.Tensor]
) -> torch.Tensor:
    """``softmax(q k^T / scale, masked) v``: queries of the last ``T_q`` positions ``(..., H, T_q, d/H)``,
    keys and values ``(..., H, T, d/H)``; ``masks(T_q, T)`` ``(T_q, T)`` bool says which keys a query sees."""
    scores = ((q @ k.transpose(-1, -2)) / scale).masked_fill(~masks(q.shape[-2], k.shape[-2]), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (..., H, T_q, d/H)


def _tree_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segments: list[int],
    scale: float,
    masks: Callable[[int, int], torch.Tensor],
) -> torch.Tensor:
    """Attention over a packed prefix tree: ``(N, H, S, d/H)`` keys and values, queries of the last
    ``S_q`` positions ``(N, H, S_q, d/H)`` (``S_q >= S - P``: BOS and every node) -> mixed values, same shape.

    The ``S`` positions are ``segments``: the prompt block ``[prompt, BOS]`` (``P + 1``, causal
    attention within it), then level ``l = 1, 2, ...`` with ``V^l`` nodes. Node ``i`` of level
    ``l`` attends over the prompt block, its ancestor ``i // V^(l-j)`` of every level
    ``1 <= j < l`` and itself (softmax over the ``P + 1 + l`` scores ``q·k / scale``):

        Attn(q_i) = Σ_t softmax_t(q_i·k_t / scale) v_t,   t ∈ {prompt, BOS} ∪ ancestors(i) ∪ {i}.

    Level ``j``'s keys ``K_j`` ``(N, H, V^j, d/H)`` meet level ``l``'s queries grouped as
    ``(V^j, V^(l-j))`` by broadcasting: no copy of any path per node.
    """
    block = segments[0]  # P + 1
    query_segments = [block - (k.shape[-2] - q.shape[-2]), *segments[1:]]  # the prompt block's last queries
    prompt_q, *level_qs = q.split(query_segments, dim=-2)
    (prompt_k, *level_ks), (prompt_v, *level_vs) = (t.split(segments, dim=-2) for t in (k, v))
    mixed = [_masked_attention(prompt_q, prompt_k, prompt_v, scale, masks)]  # causal: (N, H, S_q - Σ V^l, d/H)
    for level, query in enumerate(level_qs):
        scores = [(query @ prompt_k.transpose(-1, -2)) / scale]  # (N, H, V^l, P+1)
        for key in level_ks[:level]:  # the ancestors' levels j = 1..l-1
            grouped = query.unflatten(-2, (key.shape[-2], -1))  # (N, H, V^j, V^(l-j), d/H)
            scores.append(((grouped * key[..., None, :]).sum(-1).flatten(-2) / scale)[..., None])  # (N, H, V^l, 1)
        scores.append((query * level_ks[level]).sum(-1, keepdim=True) / scale)  # (N, H, V^l, 1): the node itself
        weights = torch.softmax(torch.cat(scores, dim=-1), dim=-1)  # (N, H, V^l, P+1+l)
        out = weights[..., :block] @ prompt_v  # (N, H, V^l, d/H)
        for j, value in enumerate(level_vs[:level]):
            grouped = weights[..., block + j].unflatten(-1, (value.shape[-2], -1))  # (N, H, V^j, V^(l-j))
            out = out + (grouped[..., None] * value[..., :, None, :]).flatten(-3, -2)  # (N, H, V^l, d/H)
        mixed.append(out + weights[..., -1:] * level_vs[level])
    return torch.cat(mixed, dim=-2)  # (N, H, S_q, d/H)

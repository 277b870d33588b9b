"""Tiny causal transformer policy for sequences (pre-LayerNorm GPT, nanoGPT-style).

The model reads ``[prompt tokens, BOS, y_1, ..., y_{l-1}]`` and predicts ``y_l`` from the
last position. Token ids: prompt tokens ``0..P_v-1``, BOS ``P_v``, output token ``a`` is
``P_v + 1 + a``. Every block is ``h += Attn(LN(h)); h += MLP(LN(h))`` with causal
multi-head attention; logits ``= W_U LN(h) + b_U``. Written as a pure function of a
parameter dict so that ``torch.func.vmap`` batches it over replicas and inputs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn.functional import gelu, layer_norm

from rftgrad.envs.base import RewardEnv
from rftgrad.errors import ConfigError, ShapeMismatchError
from rftgrad.models.base import Params, SoftmaxPolicy, init_normal
from rftgrad.runtime import is_count


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

    def _hidden(self, params: Params, prompts: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm states of ``[prompt, BOS, prefix]``: ``(N, M, P + 1 + l, d)``."""
        num_inputs, num_prefixes, level = prefixes.shape
        bos = torch.full(
            (num_inputs, num_prefixes, 1), self.prompt_vocab_size, dtype=torch.long, device=prefixes.device
        )
        tokens = torch.cat(
            [prompts[:, None, :].expand(-1, num_prefixes, -1), bos, prefixes + self.prompt_vocab_size + 1], dim=-1
        ).reshape(num_inputs * num_prefixes, -1)  # (B, T) with B = N·M, T = P + 1 + l
        seq = tokens.shape[1]
        d, heads = self.d_model, self.num_heads
        h = params["tok_emb"][tokens] + params["pos_emb"][:seq]  # (B, T, d)
        causal = torch.ones(seq, seq, dtype=torch.bool, device=tokens.device).tril()
        for i in range(self.num_layers):
            a = layer_norm(h, (d,), params["ln1_w"][i], params["ln1_b"][i])
            q, k, v = (a @ params["qkv_w"][i].T).split(d, dim=-1)  # (B, T, d) each
            q, k, v = (
                t.reshape(t.shape[0], seq, heads, d // heads).transpose(1, 2) for t in (q, k, v)
            )  # (B, H, T, d/H)
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // heads)  # (B, H, T, T)
            scores = scores.masked_fill(~causal, float("-inf"))
            attn = torch.softmax(scores, dim=-1) @ v  # (B, H, T, d/H)
            h = h + attn.transpose(1, 2).reshape(h.shape) @ params["proj_w"][i].T
            m = layer_norm(h, (d,), params["ln2_w"][i], params["ln2_b"][i])
            h = h + gelu(m @ params["fc_w"][i].T + params["fc_b"][i]) @ params["out_w"][i].T + params["out_b"][i]
        h = layer_norm(h, (d,), params["lnf_w"], params["lnf_b"])
        return h.reshape(num_inputs, num_prefixes, seq, d)

    def _readout_features(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        return self._hidden(params, x, prefixes)[:, :, -1, :]  # (N, M, d)

    def replica_prefix_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, prefixes: torch.Tensor
    ) -> torch.Tensor:
        h = self._readout_features(params, ids, x, prefixes)  # (N, M, d)
        return h @ params["unembed_w"].T + params["unembed_b"]  # (N, M, V)

    def replica_sequence_logits(
        self, params: Params, ids: torch.Tensor, x: torch.Tensor, outputs: torch.Tensor
    ) -> torch.Tensor:
        """All ``L`` positions in one causal pass over ``[prompt, BOS, y_1..y_{L-1}]``."""
        length = outputs.shape[-1]
        h = self._hidden(params, x, outputs[..., : length - 1])[:, :, self.prompt_length :, :]  # (N, M, L, d)
        return h @ params["unembed_w"].T + params["unembed_b"]  # (N, M, L, V)

"""Environments written in text: prompts as strings, outputs decoded by a tokenizer, rewards on strings.

A :class:`TextEnv` is the reward environment of Razin et al. (ICLR 2024), Section 3 (docs/paper.md §1)
for a real language model: ``N`` tokenised prompts, an output space of ``L`` tokens over ``V`` *answer
tokens* (token ids of the tokenizer: ``"A"``, ``"B"``, ... or digits) and a reward ``r(x, y) ∈ [-1, 1]``
computed once per (prompt, output) from the prompt's text and the output's decoded text, stored as an
``(N, V^L)`` table. :class:`rftgrad.models.HFCausalLM` acts in it (``answer_tokens=env.answer_tokens``).

Prompts of different lengths batch as one ``(N, P)`` tensor LEFT-padded with :data:`PROMPT_PAD`
(:func:`left_pad`): ``[-1, ..., -1, t_1, ..., t_k]``. This module imports no ``transformers``: a
tokenizer is anything with ``encode(text, add_special_tokens=...) -> list[int]`` and
``decode(ids) -> str`` (a ``transformers`` tokenizer, or :func:`rftgrad.models.word_tokenizer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, OutputSpace, RewardEnv, index_tensor, validate_rewards
from rftgrad.errors import ConfigError, ShapeMismatchError

#: the id that left-pads a prompt in a ``(N, P)`` prompt tensor (never a token id: those are >= 0).
PROMPT_PAD = -1

#: a text reward: ``(prompt_text, output_text) -> r`` in [-1, 1].
TextReward = Callable[[str, str], float]

#: the reward names :meth:`TextEnv.from_texts` knows (besides a callable).
TEXT_REWARDS: tuple[str, ...] = ("exact_match",)


def left_pad(sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    """Token-id lists of different lengths as one ``(N, P)`` long tensor, LEFT-padded with :data:`PROMPT_PAD`.

    ``P`` is the longest length; row ``n`` is ``[-1] * (P - len_n) + sequences[n]``. Every sequence needs
    at least one token, every id is >= 0 (:class:`~rftgrad.errors.ConfigError` otherwise).
    """
    rows = [list(sequence) for sequence in sequences]
    if not rows:
        raise ConfigError("left_pad got no sequences; give at least one list of token ids")
    for row_index, row in enumerate(rows):
        if not row:
            raise ConfigError(f"sequence {row_index} is empty; every prompt needs at least one token")
    width = max(len(row) for row in rows)
    padded = [[PROMPT_PAD] * (width - len(row)) + row for row in rows]
    tensor = index_tensor(padded, "token ids")
    if bool((tensor[tensor != PROMPT_PAD] < 0).any()):
        raise ConfigError("token ids must be >= 0 (-1 is the padding); give the tokenizer's ids")
    return tensor


def check_left_padded(prompts: torch.Tensor, what: str) -> None:
    """Refuse prompts that are not ``(N, P)`` token ids left-padded with :data:`PROMPT_PAD` (``-1``).

    Raises :class:`~rftgrad.errors.ShapeMismatchError` unless every id is >= 0 or the padding, every row
    holds at least one token and no padding follows a token."""
    if prompts.ndim != 2 or prompts.shape[0] < 1 or prompts.shape[1] < 1:
        raise ShapeMismatchError(f"{what} must be (N, P) with N, P >= 1, got shape {tuple(prompts.shape)}")
    valid = prompts >= 0
    if bool((prompts < PROMPT_PAD).any()):
        raise ShapeMismatchError(f"{what} hold ids below -1; token ids are >= 0 and -1 pads (rftgrad.envs.left_pad)")
    if not bool(valid[:, -1].all()):
        row = int((~valid[:, -1]).nonzero()[0, 0])
        raise ShapeMismatchError(
            f"row {row} of {what} is empty or right-padded; left-pad with -1 (rftgrad.envs.left_pad), one token or more"
        )
    after = valid[:, :-1] & ~valid[:, 1:]  # a token followed by padding
    if bool(after.any()):
        row = int(after.any(-1).nonzero()[0, 0])
        raise ShapeMismatchError(f"row {row} of {what} has padding after a token; pad on the left only")


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    """``tokenizer.encode(text)`` as a list of ints (:class:`ConfigError` if the tokenizer cannot encode)."""
    if not callable(getattr(tokenizer, "encode", None)) or not callable(getattr(tokenizer, "decode", None)):
        raise ConfigError(
            f"tokenizer must have encode(text) and decode(ids), got {type(tokenizer).__name__}; pass e.g. a "
            "transformers tokenizer or rftgrad.models.word_tokenizer(words)"
        )
    return [int(token) for token in tokenizer.encode(text, add_special_tokens=add_special_tokens)]


class TextEnv(RewardEnv):
    """Tokenised prompts, ``V`` answer tokens, outputs of ``L`` answer tokens, a reward table ``(N, V^L)``.

    Output ``y = (y_1, ..., y_L)`` (indices into ``answer_tokens``) is the token sequence
    ``(answer_tokens[y_1], ..., answer_tokens[y_L])``; outputs are enumerated in
    :class:`~rftgrad.envs.OutputSpace` order. ``targets`` (the SFT labels) default to each prompt's
    best-reward output (the first one in enumeration order on ties). ``features`` is an ``(N, 1)`` zero
    placeholder: only policies that read prompts (``input_kind = "prompts"``, such as
    :class:`rftgrad.models.HFCausalLM`) act in a text environment, and a one-hot of real prompts would be
    huge. Build one from strings with :meth:`from_texts`.

    Args:
        * ``prompts``: ``(N, P)`` token ids, left-padded with :data:`PROMPT_PAD` (:func:`left_pad`).
        * ``answer_tokens``: the ``V >= 2`` distinct token ids outputs are made of.
        * ``length``: ``L >= 1``.
        * ``rewards``: ``(N, V^L)`` rewards in [-1, 1] (validated).
        * ``prompt_texts``, ``output_texts``: optional texts of the ``N`` prompts and the ``V^L`` outputs.
        * ``targets``: optional ``(N, L)`` SFT labels (default: the best-reward output of each prompt).
        * ``prompt_vocab_size``: the tokenizer's vocabulary size (default: largest prompt id + 1).
        * ``groups``: optional name -> ``(N,)`` bool mask; ``name``: the environment's name.
    """

    def __init__(
        self,
        prompts: torch.Tensor | np.ndarray | Sequence[Sequence[int]],
        answer_tokens: Sequence[int] | torch.Tensor,
        length: int,
        rewards: torch.Tensor | np.ndarray,
        prompt_texts: Sequence[str] | None = None,
        output_texts: Sequence[str] | None = None,
        targets: torch.Tensor | np.ndarray | None = None,
        prompt_vocab_size: int | None = None,
        groups: dict[str, torch.Tensor] | None = None,
        name: str = "text",
    ) -> None:
        super().__init__()
        self.name = name
        self.prompts = index_tensor(prompts, f"prompts of {name}").clone()
        check_left_padded(self.prompts, f"prompts of {name}")
        answers = index_tensor(answer_tokens, f"answer_tokens of {name}")
        if answers.ndim != 1 or bool((answers < 0).any()) or answers.unique().numel() != answers.numel():
            raise ConfigError(f"answer_tokens of {name} must be distinct token ids >= 0, got {answers.tolist()}")
        self.answer_tokens: tuple[int, ...] = tuple(int(t) for t in answers.tolist())
        self.output_space = OutputSpace(len(self.answer_tokens), length)  # validates V >= 2, L >= 1
        num_inputs = self.prompts.shape[0]
        table = validate_rewards(rewards, f"reward of {name}")
        if table.shape != (num_inputs, self.output_space.num_outputs):
            raise ShapeMismatchError(
                f"reward table of {name} has shape {tuple(table.shape)}, expected "
                f"(N={num_inputs}, V^L={self.output_space.num_outputs})"
            )
        self._table = table
        self.prompt_texts = None if prompt_texts is None else [str(text) for text in prompt_texts]
        self.output_texts = None if output_texts is None else [str(text) for text in output_texts]
        for what, texts, count in (("prompt_texts", self.prompt_texts, num_inputs),
                                   ("output_texts", self.output_texts, self.output_space.num_outputs)):  # fmt: skip
            if texts is not None and len(texts) != count:
                raise ShapeMismatchError(f"{len(texts)} {what} for {count} {what.split('_')[0]}s; give one per item")
        if targets is None:
            targets = self.output_space.prefixes(length)[table.argmax(-1)]  # (N, L): first best output
        self.targets = index_tensor(targets, f"targets of {name}").clone()
        if self.targets.shape != (num_inputs, length):
            raise ShapeMismatchError(f"targets have shape {tuple(self.targets.shape)}, expected (N={num_inputs}, L)")
        self.output_space.check_outputs(self.targets)
        self.prompt_vocab_size = int(self.prompts.max()) + 1 if prompt_vocab_size is None else int(prompt_vocab_size)
        self.features = torch.zeros(num_inputs, 1, dtype=torch.float64)  # placeholder: see the class docstring
        self._set_groups(groups)

    @classmethod
    def from_texts(
        cls,
        prompts: Sequence[str],
        tokenizer: Any,
        answer_tokens: Sequence[int] | None = None,
        answers: Sequence[str] | None = None,
        length: int = 1,
        reward: str | TextReward = "exact_match",
        references: Sequence[str] | None = None,
        add_special_tokens: bool = True,
        max_outputs: int = DEFAULT_MAX_OUTPUTS,
        name: str = "text",
    ) -> TextEnv:
        """Tokenise ``prompts`` once, enumerate the ``V^L`` outputs, decode each and fill the reward table once.

        ``r(x_n, y) = reward(prompts[n], tokenizer.decode([answer_tokens[y_1], ..., answer_tokens[y_L]]))``
        for every prompt and output (``N·V^L`` calls), checked to lie in [-1, 1] (Theorem 1 of Razin et
        al., ICLR 2024, assumes bounded rewards; :class:`~rftgrad.errors.RewardRangeError` otherwise).

        Args:
            * ``prompts``: ``N >= 1`` strings, each encoded with ``tokenizer.encode(text,
              add_special_tokens=add_special_tokens)`` (at least one token each).
            * ``tokenizer``: anything with ``encode`` and ``decode`` (a ``transformers`` tokenizer).
            * ``answer_tokens`` or ``answers``: the ``V >= 2`` answer tokens, as ids or as strings that
              encode to exactly one known token each (without special tokens).
            * ``length``: ``L``, tokens per output (``V^L <= max_outputs``).
            * ``reward``: a callable ``(prompt_text, output_text) -> float in [-1, 1]``, or ``"exact_match"``:
              ``+1`` if the output's decoded text equals ``references[n]`` (both stripped of surrounding
              whitespace), else ``-1``.
            * ``references``: one reference answer per prompt, for ``"exact_match"``.
        """
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise ConfigError("prompts must be a non-empty list of strings; give one string per prompt")
        prompt_texts = [str(text) for text in prompts]
        encoded = [_encode(tokenizer, text, add_special_tokens) for text in prompt_texts]
        empty = [index for index, ids in enumerate(encoded) if not ids]
        if empty:
            raise ConfigError(f"prompt {empty[0]} encodes to no tokens; give prompts of at least one token")
        ids = cls._answer_ids(tokenizer, answer_tokens, answers)
        space = OutputSpace(len(ids), length)
        space.check_enumerable(max_outputs)
        outputs = space.enumerate(max_outputs=max_outputs).tolist()  # (Y, L) answer indices
        output_texts = [str(tokenizer.decode([ids[token] for token in output])) for output in outputs]
        score = cls._reward_function(reward, references, len(prompt_texts), output_texts)
        table = [[score(n, text, output) for output in output_texts] for n, text in enumerate(prompt_texts)]
        vocab = getattr(tokenizer, "__len__", None)
        return cls(
            left_pad(encoded),
            ids,
            length,
            validate_rewards(table, f"reward of {name}"),
            prompt_texts=prompt_texts,
            output_texts=output_texts,
            prompt_vocab_size=len(tokenizer) if vocab is not None else None,
            name=name,
        )

    @staticmethod
    def _answer_ids(tokenizer: Any, answer_tokens: Sequence[int] | None, answers: Sequence[str] | None) -> list[int]:
        """The answer token ids, from ``answer_tokens`` or by encoding each of ``answers`` to one token."""
        if (answer_tokens is None) == (answers is None):
            raise ConfigError("give exactly one of answer_tokens (token ids) and answers (strings)")
        if answer_tokens is not None:
            return [int(t) for t in index_tensor(answer_tokens, "answer_tokens").reshape(-1).tolist()]
        if isinstance(answers, str):
            raise ConfigError(f"answers must be a list of strings, got the string {answers!r}; e.g. ['A', 'B']")
        ids = []
        for answer in answers:
            encoded = _encode(tokenizer, str(answer), False)
            if len(encoded) != 1:
                raise ConfigError(
                    f"answer {answer!r} is {len(encoded)} tokens {encoded}, not one; give answers that are "
                    "single tokens of the tokenizer (or their ids as answer_tokens)"
                )
            if str(tokenizer.decode(encoded)).strip() != str(answer).strip():
                raise ConfigError(
                    f"answer {answer!r} is not in the tokenizer's vocabulary (it decodes as "
                    f"{tokenizer.decode(encoded)!r}); give answers the tokenizer knows"
                )
            ids.append(encoded[0])
        return ids

    @staticmethod
    def _reward_function(
        reward: str | TextReward, references: Sequence[str] | None, num_prompts: int, output_texts: list[str]
    ) -> Callable[[int, str, str], Any]:
        """``(prompt index, prompt text, output text) -> reward`` for ``reward`` (checks ``references``)."""
        if isinstance(reward, str):
            if reward not in TEXT_REWARDS:
                raise ConfigError(
                    f"unknown text reward {reward!r}; give a callable or one of {', '.join(TEXT_REWARDS)}"
                )
            if references is None or isinstance(references, str):
                raise ConfigError('reward="exact_match" needs references: one reference answer string per prompt')
            wanted = [str(text).strip() for text in references]
            if len(wanted) != num_prompts:
                raise ShapeMismatchError(
                    f"{len(wanted)} references for {num_prompts} prompts; give one reference answer per prompt"
                )
            outputs = {text.strip() for text in output_texts}
            missing = [index for index, text in enumerate(wanted) if text not in outputs]
            if missing:
                raise ConfigError(
                    f"reference {references[missing[0]]!r} of prompt {missing[0]} is no output's text; give a "
                    "reference made of the answer tokens"
                )
            return lambda index, _prompt, output: 1.0 if output.strip() == wanted[index] else -1.0
        if not callable(reward):
            raise ConfigError(f"reward must be a callable (prompt, output) -> float or a name, got {reward!r}")
        if references is not None:
            raise ConfigError("references are for reward='exact_match'; a callable reward reads the texts itself")
        return lambda _index, prompt, output: reward(prompt, output)

    def _reward(self, input_ids: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return self._table[input_ids, self.output_space.index(outputs)]

    def with_rewards(self, rewards: torch.Tensor | np.ndarray) -> TextEnv:
        """The same prompts, answer tokens, texts, targets and groups with the reward table ``rewards`` ``(N, V^L)``."""
        return TextEnv(
            self.prompts,
            self.answer_tokens,
            self.output_space.length,
            rewards,
            prompt_texts=self.prompt_texts,
            output_texts=self.output_texts,
            targets=self.targets,
            prompt_vocab_size=self.prompt_vocab_size,
            groups=self.groups,
            name=self.name,
        )

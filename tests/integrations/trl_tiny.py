"""A tiny, offline TRL setup for integration tests: a char-level tokenizer, a random causal LM,
and :func:`run_grpo`, which runs a real ``GRPOTrainer`` (or ``RLOOTrainer``) on the CPU.

Nothing is downloaded: the tokenizer is built with the ``tokenizers`` library over a fixed
vocabulary (:data:`VOCAB`) and the model is randomly initialised from a config. A run of 3 steps
takes about 0.3 s on this 2-core machine once trl is imported (the imports take about 6 s).

Test reward functions (deterministic in the completion text; the random model writes about one
completion in three with one of ``aeo``, a digit or a mark, so a generation batch holds both all-equal and
mixed groups):

* :func:`vowel_reward`: 1.0 if the completion contains one of :data:`VOWELS` (``aeo``), else 0.0;
* :func:`contains_char`: 1.0 if it contains a digit, else 0.0 (a name without "reward" in it);
* :func:`maybe_none_reward`: ``None`` when the completion contains one of :data:`MARKS`,
  otherwise :func:`vowel_reward`'s value;
* :func:`half_or_none_reward`: ``None`` on the same completions and on those with a ``z``,
  otherwise 0.5 with a digit and 0.0 without. With :func:`maybe_none_reward` alone or next to it,
  the completions with a mark are unscorable (every function gave ``None``); next to it, those
  with a ``z`` and no mark have one ``None``.

Usage::

    from tests.integrations.trl_tiny import run_grpo, vowel_reward
    out, logs = run_grpo(tmp_path, prompts=["ab", "cd"], reward_funcs=[vowel_reward])
    # out / "completions" / "completions_00001.parquet", logs[0]["reward"], ...
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")
os.environ.setdefault("WANDB_DISABLED", "true")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    PrinterCallback,
    TrainerCallback,
)
from transformers.utils import logging as hf_logging  # noqa: E402
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer  # noqa: E402

SPECIAL = ("<pad>", "<eos>", "<bos>", "<unk>")
#: every character the tokenizer knows, one token each, after the special tokens.
VOCAB = "abcdefghijklmnopqrstuvwxyz0123456789 .,:?!\n"
MAX_COMPLETION_LENGTH = 6
VOWELS = "aeo"
#: a completion with one of these is unscorable for :func:`maybe_none_reward` and :func:`half_or_none_reward`.
MARKS = "!?."
#: the config fields run_grpo always sets: one generation batch per logged step, CPU, nothing saved or reported.
FIXED_SETTINGS: dict[str, Any] = {
    "gradient_accumulation_steps": 1,
    "max_completion_length": MAX_COMPLETION_LENGTH,
    "temperature": 1.0,
    "learning_rate": 1e-2,
    "logging_steps": 1,
    "log_completions": True,
    "num_completions_to_print": 0,
    "report_to": "none",
    "save_strategy": "no",
    "use_vllm": False,
    "use_cpu": True,
    "bf16": False,
    "fp16": False,
    "dataloader_num_workers": 0,
    "dataloader_pin_memory": False,
    "disable_tqdm": True,
}
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'][0] }}:{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}a:{% endif %}"
)

__all__ = [
    "CHAT_TEMPLATE",
    "FIXED_SETTINGS",
    "LogCapture",
    "RLOOWithCompletions",
    "MAX_COMPLETION_LENGTH",
    "VOCAB",
    "MARKS",
    "VOWELS",
    "chat_prompts",
    "contains_char",
    "half_or_none_reward",
    "make_model",
    "make_tokenizer",
    "maybe_none_reward",
    "run_grpo",
    "vowel_reward",
]


def make_tokenizer(chat: bool = False) -> PreTrainedTokenizerFast:
    """A char-level ``PreTrainedTokenizerFast`` over :data:`VOCAB` with pad/eos/bos/unk tokens.

    Args:
        chat: give it :data:`CHAT_TEMPLATE` (``r:content`` lines, ``a:`` as the generation prompt),
            so that conversational prompts (lists of ``{"role", "content"}``) work.
    """
    vocab = {token: i for i, token in enumerate((*SPECIAL, *VOCAB))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token per character
    backend.decoder = decoders.Fuse()  # join characters without spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        model_max_length=128,
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_model(tokenizer: PreTrainedTokenizerFast, arch: str = "llama", seed: int = 0) -> PreTrainedModel:
    """A tiny randomly initialised float32 causal LM (hidden 16, 1 layer, 2 heads) for ``tokenizer``.

    Args:
        arch: ``"llama"`` (``LlamaForCausalLM``) or ``"gpt2"`` (``GPT2LMHeadModel``).
        seed: the initialisation seed (``torch.manual_seed``).
    """
    ids = dict(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=128,
            **ids,
        )
        model = LlamaForCausalLM(config)
    elif arch == "gpt2":
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=128, **ids)
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"arch must be 'llama' or 'gpt2', got {arch!r}")
    return model.float()


# ----------------------------------------------------------------------------- reward functions
def _text(completion: Any) -> str:  # noqa: ANN401 - a string or chat messages
    """The completion's text: itself, or the content of its messages (conversational prompts)."""
    return completion if isinstance(completion, str) else "".join(m["content"] for m in completion)


def vowel_reward(completions: list, **kwargs: Any) -> list[float]:
    """1.0 where the completion contains one of :data:`VOWELS`, else 0.0."""
    return [float(any(ch in _text(c) for ch in VOWELS)) for c in completions]


def contains_char(completions: list, **kwargs: Any) -> list[float]:
    """1.0 where the completion contains a digit, else 0.0 (its name has no "reward" in it)."""
    return [float(any(ch.isdigit() for ch in _text(c))) for c in completions]


def _marked(completion: Any) -> bool:  # noqa: ANN401
    return any(ch in _text(completion) for ch in MARKS)


def maybe_none_reward(completions: list, **kwargs: Any) -> list[float | None]:
    """``None`` where the completion contains one of :data:`MARKS`, else :func:`vowel_reward`'s value."""
    return [None if _marked(c) else value for c, value in zip(completions, vowel_reward(completions), strict=True)]


def half_or_none_reward(completions: list, **kwargs: Any) -> list[float | None]:
    """``None`` where the completion contains one of :data:`MARKS` or a ``z``, else 0.5 with a digit and 0.0 without."""
    digits = contains_char(completions)
    return [
        None if _marked(c) or "z" in _text(c) else 0.5 * value for c, value in zip(completions, digits, strict=True)
    ]


def chat_prompts(texts: Sequence[str]) -> list[list[dict[str, str]]]:
    """Each text as a one-message conversation ``[{"role": "user", "content": text}]``."""
    return [[{"role": "user", "content": text}] for text in texts]


# ----------------------------------------------------------------------------- running TRL
class LogCapture(TrainerCallback):
    """Keeps a copy of every dict the trainer logs (``on_log``), in order, in :attr:`logs`."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:  # noqa: ANN401
        if logs is not None:
            self.logs.append({**logs, "_global_step": state.global_step})


class RLOOWithCompletions(RLOOTrainer):
    """``RLOOTrainer`` that also writes ``completions/completions_{step:05d}.parquet`` as ``GRPOTrainer`` does.

    TRL 1.16's ``RLOOTrainer.log`` builds the completions table but only sends it to wandb/trackio;
    this writes the same table (``step, prompt, completion, <reward functions>, <extras>, advantage``)
    to the output directory so tests can read it like GRPO's.
    """

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(logs, start_time)
        if self.accelerator.is_main_process and self.log_completions:
            table = {
                "step": [self.state.global_step] * len(self._logs["prompt"]),
                "prompt": list(self._logs["prompt"]),
                "completion": list(self._logs["completion"]),
                **{name: list(values) for name, values in self._logs["rewards"].items()},
                **{name: list(values) for name, values in self._logs["extra"].items()},
                "advantage": list(self._logs["advantages"]),
            }
            folder = Path(self.args.output_dir) / "completions"
            folder.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(table).to_parquet(folder / f"completions_{self.state.global_step:05d}.parquet")


def run_grpo(
    out_dir: str | os.PathLike,
    *,
    prompts: list[str] | list[list[dict]],
    reward_funcs: Callable | Sequence[Callable],
    reward_weights: Sequence[float] | None = None,
    scale_rewards: str = "group",
    num_generations: int = 4,
    prompts_per_step: int = 2,
    max_steps: int = 3,
    seed: int = 0,
    trainer_cls: type = GRPOTrainer,
    extra_args: dict[str, Any] | None = None,
    callbacks: Sequence[TrainerCallback] | None = None,
    arch: str = "llama",
    eval_prompts: list[str] | list[list[dict]] | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """Run a real ``GRPOTrainer`` (or ``RLOOTrainer``) on the CPU with a tiny random model.

    One generation batch per logged step: ``gradient_accumulation_steps=1``, ``logging_steps=1``,
    ``per_device_train_batch_size = prompts_per_step * num_generations`` completions, so each step
    draws ``prompts_per_step`` groups of ``num_generations`` and TRL writes
    ``<out_dir>/completions/completions_{step:05d}.parquet`` (``log_completions=True``).
    Temperature 1, ``max_completion_length=MAX_COMPLETION_LENGTH``, no vLLM, ``report_to="none"``,
    no checkpoints. Conversational prompts (lists of messages) get the chat tokenizer.

    Args:
        out_dir: the trainer's ``output_dir``.
        prompts: the dataset's ``prompt`` column (texts, or conversations).
        reward_funcs: passed to the trainer as they are (wrap them first to monitor them).
        reward_weights: the config's ``reward_weights``.
        scale_rewards: GRPO's ``scale_rewards`` (``group``, ``batch``, ``none``); not used by RLOO.
        num_generations: the group size ``G``.
        prompts_per_step: groups per generation batch.
        max_steps: optimisation steps.
        seed: the config's ``seed`` (and the model's initialisation seed).
        trainer_cls: ``GRPOTrainer`` or ``RLOOTrainer`` (configured with ``RLOOConfig``, ``beta=0``
            unless ``extra_args`` says otherwise, so rewards are not KL-shaped). ``RLOOTrainer`` itself
            is run as :class:`RLOOWithCompletions`, so that its completions are written too.
        extra_args: more config fields, overriding the ones above (e.g. ``{"shuffle_dataset": False}``).
        callbacks: trainer callbacks (a :class:`LogCapture` is added after them).
        arch: :func:`make_model`'s architecture.
        eval_prompts: an evaluation dataset, evaluated after every step (``eval_strategy="steps"``,
            ``eval_steps=1``, ``per_device_eval_batch_size`` as for training).

    Returns:
        ``(output_dir, logs)``: logs is every dict passed to ``on_log``, copied, with the
        ``global_step`` at logging time added as ``_global_step`` (the last one is the
        end-of-training summary, which holds ``train_runtime``).
    """
    if len(prompts) < prompts_per_step:  # TRL would run 0 steps without a word
        raise ValueError(f"need at least prompts_per_step={prompts_per_step} prompts, got {len(prompts)}")
    out_dir = Path(out_dir)
    chat = not isinstance(prompts[0], str)
    tokenizer = make_tokenizer(chat=chat)
    model = make_model(tokenizer, arch=arch, seed=seed)
    rloo = issubclass(trainer_cls, RLOOTrainer)
    settings: dict[str, Any] = {
        **FIXED_SETTINGS,
        "output_dir": str(out_dir),
        "num_generations": num_generations,
        "per_device_train_batch_size": num_generations * prompts_per_step,
        "max_steps": max_steps,
        "seed": seed,
        "data_seed": seed,
        "reward_weights": None if reward_weights is None else list(reward_weights),
    }
    if eval_prompts is not None:
        settings.update(
            eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=num_generations * prompts_per_step
        )
    if rloo:
        settings["beta"] = 0.0
    else:
        settings["scale_rewards"] = scale_rewards
    settings.update(extra_args or {})
    config_cls = RLOOConfig if rloo else GRPOConfig
    if trainer_cls is RLOOTrainer:
        trainer_cls = RLOOWithCompletions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = config_cls(**settings)
    capture = LogCapture()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    trl_logger = logging.getLogger("trl")
    trl_level = trl_logger.level
    trl_logger.setLevel(logging.ERROR)  # "All reward functions returned None" warnings are expected here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = trainer_cls(
                model=model,
                reward_funcs=reward_funcs if callable(reward_funcs) else list(reward_funcs),
                args=config,
                train_dataset=Dataset.from_dict({"prompt": list(prompts)}),
                eval_dataset=None if eval_prompts is None else Dataset.from_dict({"prompt": list(eval_prompts)}),
                processing_class=tokenizer,
                callbacks=[*(callbacks or []), capture],
            )
            trainer.remove_callback(PrinterCallback)  # disable_tqdm=True would print every log
            trainer.train()
    finally:
        hf_logging.set_verbosity(verbosity)
        trl_logger.setLevel(trl_level)
    return out_dir, capture.logs

"""``transformers`` causal LMs as policies (:class:`rftgrad.models.HFCausalLM`) and text environments.

Tiny random GPT-2 and Llama configs built locally (no download), float64. The exact engine on the
wrapper is checked against a brute-force enumeration through the HF model itself (a plain
``model(input_ids)`` per output sequence, autograd for the gradients); the wrapper's layouts
(left padding, the packed prefix tree, vmapped replicas) against each other.
"""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig  # noqa: E402

from rftgrad.envs import TextEnv, left_pad  # noqa: E402
from rftgrad.errors import (  # noqa: E402
    ConfigError,
    EnumerationLimitError,
    RewardRangeError,
    ShapeMismatchError,
)
from rftgrad.finetune import TrainConfig, train  # noqa: E402
from rftgrad.models import HFCausalLM, SoftmaxPolicy, word_tokenizer  # noqa: E402
from rftgrad.runtime import generator  # noqa: E402
from rftgrad.theory import exact, gamma  # noqa: E402
from tests.tolerances import ATOL, HF_LAYOUT_ATOL, LANCZOS_RTOL  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VOCAB = 24  # the tiny models' vocabulary
ANSWERS = (5, 9, 14, 20)  # a 4-token answer subset
PROMPTS = ([3, 7, 11, 2, 8], [4, 1], [6, 6, 12])  # three prompts of different lengths


def gpt2_config(vocab: int = VOCAB) -> GPT2Config:
    """GPT-2, 2 layers of width 16, 2 heads; weights at scale 0.5 so that the policy is far from uniform."""
    return GPT2Config(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, n_positions=32, initializer_range=0.5,
                      bos_token_id=0, eos_token_id=0)  # fmt: skip


def llama_config(vocab: int = VOCAB) -> LlamaConfig:
    """Llama, 2 layers of width 16, 2 query heads sharing 1 key/value head (GQA), RoPE, RMSNorm."""
    return LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
                       initializer_range=0.5, bos_token_id=0, eos_token_id=0, pad_token_id=0)  # fmt: skip


CONFIGS = {"gpt2": gpt2_config, "llama": llama_config}


def table_env(answer_tokens: tuple[int, ...], length: int, seed: int = 0) -> TextEnv:
    """:data:`PROMPTS` (left-padded) with a random reward table in [-1, 1]."""
    num_outputs = len(answer_tokens) ** length
    rewards = torch.rand(len(PROMPTS), num_outputs, generator=generator(seed), dtype=torch.float64) * 2 - 1
    return TextEnv(left_pad(PROMPTS), answer_tokens, length, rewards)


def first_replica(policy: HFCausalLM) -> dict[str, torch.Tensor]:
    return {key: value[0] for key, value in policy.params.items()}


def brute_force(model: torch.nn.Module, answers: list[int], length: int, rewards: torch.Tensor, temperature: float):
    """V, STD, ||∇V|| per prompt and ∇ of their mean, by enumerating every output through ``model(input_ids)``.

    ``log p(y|x) = Σ_l log softmax(z_l[answers] / T)[y_l]`` with ``z_l`` the model's logits at the
    position before ``y_l`` of the unpadded sequence ``[x, answers[y_1], ..., answers[y_{L-1}]]``.
    """
    params = dict(model.named_parameters())
    values, stds, norms = [], [], []
    mean = [torch.zeros_like(p) for p in params.values()]
    for n, prompt in enumerate(PROMPTS):
        logps = []
        for output in itertools.product(range(len(answers)), repeat=length):
            tokens = torch.tensor([prompt + [answers[t] for t in output[:-1]]])
            logits = model(input_ids=tokens).logits[0, len(prompt) - 1 :][:, answers] / temperature  # (L, V)
            logps.append(torch.log_softmax(logits, -1)[torch.arange(length), list(output)].sum())
        probs = torch.stack(logps).exp()
        value = (probs * rewards[n]).sum()
        values.append(value.detach())
        stds.append((probs * (rewards[n] - value) ** 2).sum().sqrt().detach())
        grads = torch.autograd.grad(value, list(params.values()))
        norms.append(torch.sqrt(sum((g**2).sum() for g in grads)))
        mean = [m + g / len(PROMPTS) for m, g in zip(mean, grads, strict=True)]
    return torch.stack(values), torch.stack(stds), torch.stack(norms), dict(zip(params, mean, strict=True))


# ----------------------------------------------------------------------------- the exact engine


@pytest.mark.parametrize("arch", CONFIGS)
@pytest.mark.parametrize("answer_tokens,length", [(None, 1), (ANSWERS, 3)], ids=["full-vocab-L1", "subset-L3"])
def test_exact_equals_brute_force_enumeration_through_the_model(arch, answer_tokens, length):
    policy = HFCausalLM.from_config(CONFIGS[arch](), answer_tokens, max_length=length, seed=3, temperature=0.7)
    answers = list(range(VOCAB)) if answer_tokens is None else list(answer_tokens)
    env = table_env(tuple(answers), length)
    result = exact(policy, env)
    reference = copy.deepcopy(policy.model).requires_grad_(True)  # replica 0's weights, plain forward
    value, std, norm, mean_grad = brute_force(reference, answers, length, env.reward_table(), 0.7)
    tol = ATOL[torch.float64]
    assert torch.allclose(result.value[0], value, atol=tol, rtol=0)
    assert torch.allclose(result.std[0], std, atol=tol, rtol=0)
    assert torch.allclose(result.grad_norm[0], norm, atol=tol, rtol=0)
    assert float(norm.min()) > 1e-3  # a real gradient, not a vanishing one
    assert mean_grad.keys() == result.mean_grad.keys()
    for key, grad in mean_grad.items():
        assert torch.allclose(result.mean_grad[key][0], grad, atol=tol, rtol=0), key


def test_exact_equals_brute_force_through_the_callers_own_gpt2():
    """``HFCausalLM(model)`` acts with the weights of the caller's module and leaves it as it was (GPT-2: float64
    throughout in transformers; a float64 Llama runs its RMSNorm and RoPE in float32, see the float64-module test)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(gpt2_config()).double()
    model.train()  # dropout on: the policy's copy runs in eval mode
    policy = HFCausalLM(model, ANSWERS, max_length=2)
    assert model.training and all(p.requires_grad for p in model.parameters())
    env = table_env(ANSWERS, 2)
    result = exact(policy, env)
    value, _, norm, _ = brute_force(model.eval(), list(ANSWERS), 2, env.reward_table(), 1.0)
    assert torch.allclose(result.value[0], value, atol=ATOL[torch.float64], rtol=0)
    assert torch.allclose(result.grad_norm[0], norm, atol=ATOL[torch.float64], rtol=0)


@pytest.mark.parametrize("arch", CONFIGS)
def test_left_padded_prompts_give_the_unpadded_logits(arch):
    policy = HFCausalLM.from_config(CONFIGS[arch](), ANSWERS, max_length=3)
    params = first_replica(policy)
    padded = left_pad(PROMPTS)  # (3, 5)
    prefixes = torch.tensor([[0, 3], [2, 2], [1, 0]])[None].expand(3, -1, -1)  # (N, M=3, l=2)
    batch = policy.replica_prefix_logits(params, torch.arange(3), padded, prefixes)  # (3, 3, V)
    assert padded.lt(0).any()  # the batch is padded
    for n, prompt in enumerate(PROMPTS):
        alone = policy.replica_prefix_logits(params, torch.arange(1), torch.tensor([prompt]), prefixes[:1])
        assert torch.allclose(batch[n], alone[0], atol=HF_LAYOUT_ATOL, rtol=0)
        for m in range(3):  # and the plain model on the unpadded sequence
            tokens = torch.tensor([prompt + [ANSWERS[t] for t in prefixes[0, m].tolist()]])
            plain = policy.model(input_ids=tokens).logits[0, -1, list(ANSWERS)]
            assert torch.allclose(batch[n, m], plain, atol=HF_LAYOUT_ATOL, rtol=0)


@pytest.mark.parametrize("arch", CONFIGS)
def test_packed_tree_equals_the_per_level_reference(arch):
    policy = HFCausalLM.from_config(CONFIGS[arch](), ANSWERS, max_length=3, num_replicas=2)
    per_level = HFCausalLM.from_config(CONFIGS[arch](), ANSWERS, max_length=3, num_replicas=2, packed_tree_limit=0)
    env = table_env(ANSWERS, 3)
    x, ids = policy.inputs_from(env), torch.arange(env.num_inputs)
    params = first_replica(policy)
    packed = policy.replica_tree_logits(params, ids, x, 3)
    reference = SoftmaxPolicy.replica_tree_logits(policy, params, ids, x, 3)
    assert [tuple(t.shape) for t in packed] == [(3, 1, 4), (3, 4, 4), (3, 16, 4)]
    for ours, theirs in zip(packed, reference, strict=True):
        assert torch.allclose(ours, theirs, atol=HF_LAYOUT_ATOL, rtol=0)
    fast, slow, flat = (
        exact(policy, env, grads="full"),
        exact(per_level, env, grads="full"),
        exact(policy, env, method="flat"),
    )
    for field in ("value", "std", "grad_norm", "position_variance"):
        assert torch.allclose(getattr(fast, field), getattr(slow, field), atol=HF_LAYOUT_ATOL, rtol=0), field
        assert torch.allclose(getattr(fast, field), getattr(flat, field), atol=HF_LAYOUT_ATOL, rtol=0), field
    for key in fast.mean_grad:
        assert torch.allclose(fast.mean_grad[key], slow.mean_grad[key], atol=HF_LAYOUT_ATOL, rtol=0), key
        assert torch.allclose(fast.grads[key], slow.grads[key], atol=HF_LAYOUT_ATOL, rtol=0), key


@pytest.mark.parametrize("arch", CONFIGS)
def test_replicas_are_independent_and_equal_one_replica_policies(arch):
    both = HFCausalLM.from_config(CONFIGS[arch](), ANSWERS, max_length=2, seed=[4, 7])
    env = table_env(ANSWERS, 2)
    together = exact(both, env)
    for r, seed in enumerate((4, 7)):
        alone = HFCausalLM.from_config(CONFIGS[arch](), ANSWERS, max_length=2, seed=seed)
        assert all(torch.equal(both.params[key][r], alone.params[key][0]) for key in both.params)
        result = exact(alone, env)
        for field in ("value", "std", "grad_norm"):
            assert torch.allclose(getattr(together, field)[r], getattr(result, field)[0], atol=HF_LAYOUT_ATOL, rtol=0)
    assert not torch.equal(both.params[next(iter(both.params))][0], both.params[next(iter(both.params))][1])


def test_the_policys_module_holds_views_of_replica_0_and_keeps_tied_weights_tied():
    policy = HFCausalLM.from_config(gpt2_config(), ANSWERS, num_replicas=2)
    for key, param in policy.model.named_parameters():
        assert param.data_ptr() == policy.params[key][0].data_ptr() and not param.requires_grad
    assert policy.model.lm_head.weight is policy.model.transformer.wte.weight
    assert "lm_head.weight" not in policy.params and not policy.model.training


@pytest.mark.parametrize("arch", CONFIGS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_policy_on_the_auto_device_equals_the_cpu_float64_policy(arch, dtype):
    """``device="auto"`` is CUDA where there is one (else the CPU); float32 agrees to its own precision."""
    env = table_env(ANSWERS, 3)
    reference = exact(HFCausalLM.from_config(CONFIGS[arch](), ANSWERS, max_length=3), env)
    policy = HFCausalLM.from_config(CONFIGS[arch](), ANSWERS, max_length=3, device="auto", dtype=dtype)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert policy.device.type == expected and policy.answer_ids.device.type == expected
    assert all(p.device.type == expected for p in policy.model.parameters())
    result = exact(policy, env)
    tol = HF_LAYOUT_ATOL if dtype == "float64" else ATOL[torch.float32]
    for field in ("value", "std", "grad_norm"):  # float32: ATOL's O(1) bound scaled by |grad_norm| (up to 13)
        scale = 0 if dtype == "float64" else tol
        assert torch.allclose(getattr(result, field).cpu().double(), getattr(reference, field), atol=tol, rtol=scale)


def test_from_config_leaves_the_global_rng_dtype_and_config_as_they_were():
    config = gpt2_config()
    before_config = config.to_dict()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    HFCausalLM.from_config(config, ANSWERS, num_replicas=2)
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is where it was
    assert torch.get_default_dtype() == torch.float32
    assert config.to_dict() == before_config


@pytest.mark.parametrize("arch", CONFIGS)
@pytest.mark.parametrize("answer_tokens,length", [(None, 1), (ANSWERS, 2)], ids=["full-vocab-L1", "subset-L2"])
def test_gamma_lanczos_equals_the_full_jacobian(arch, answer_tokens, length):
    policy = HFCausalLM.from_config(CONFIGS[arch](), answer_tokens, max_length=length, num_replicas=2)
    env = table_env(tuple(range(VOCAB)) if answer_tokens is None else answer_tokens, length)
    full, lanczos = gamma(policy, env, method="jacobian"), gamma(policy, env, method="lanczos")
    assert full.shape == (2, 3) and float(full.min()) > 0.1
    assert torch.allclose(lanczos, full, rtol=LANCZOS_RTOL, atol=0)


@pytest.mark.parametrize("arch", CONFIGS)
def test_an_exact_rft_step_through_the_trainer_is_the_manual_gradient_step(arch):
    env = table_env(ANSWERS, 2)

    def make_policy(settings, device, dtype):
        return HFCausalLM.from_config(
            CONFIGS[arch](), ANSWERS, max_length=2, seed=list(settings.seeds), device=device, dtype=dtype
        )

    config = TrainConfig(arms=("rft:1",), optimizer="sgd", lr=(0.5,), seeds=1, eval_every=1, eval_grad_norm=False)
    result = train(make_policy, env, config, progress=False)
    start = HFCausalLM.from_config(CONFIGS[arch](), ANSWERS, max_length=2, seed=config.seed)  # the arm's start
    step = exact(start, env)
    for key, value in result.params["rft:1"].items():
        assert torch.allclose(value, start.params[key] + 0.5 * step.mean_grad[key], atol=HF_LAYOUT_ATOL, rtol=0), key
    records = result.records
    rewards = records[(records.metric == "reward_mean") & (records.group == "all") & (records.split == "train")]
    before, after = rewards.sort_values("step").value.tolist()
    assert after > before  # the expected reward went up


# ----------------------------------------------------------------------------- construction and refusals


def test_from_pretrained_loads_a_local_directory_and_refuses_a_missing_one(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(gpt2_config())
    model.save_pretrained(tmp_path / "tiny")
    loaded = HFCausalLM.from_pretrained(tmp_path / "tiny", ANSWERS, max_length=2, num_replicas=2)
    direct = HFCausalLM(model, ANSWERS, max_length=2)
    env = table_env(ANSWERS, 2)
    assert loaded.num_replicas == 2
    assert torch.allclose(exact(loaded, env).value, exact(direct, env).value.expand(2, -1), atol=HF_LAYOUT_ATOL, rtol=0)
    for missing, message in ((tmp_path / "nowhere", "does not exist"), (tmp_path, "has no config.json")):
        with pytest.raises(ConfigError, match=message) as info:
            HFCausalLM.from_pretrained(missing, ANSWERS)
        assert "\n" not in str(info.value)


def test_bad_policy_arguments_raise_one_line_errors():
    config = gpt2_config()
    cases = [
        (EnumerationLimitError, "full vocabulary", dict(answer_tokens=None, max_length=5)),
        (ConfigError, "outside the model's vocabulary", dict(answer_tokens=[1, VOCAB])),
        (ConfigError, "repeat an id", dict(answer_tokens=[1, 1, 2])),
        (ConfigError, "integer token ids", dict(answer_tokens=[1.5, 2.0])),
    ]
    for error, message, kwargs in cases:
        with pytest.raises(error, match=message) as info:
            HFCausalLM.from_config(config, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="causal LM"):
        HFCausalLM(torch.nn.Linear(2, 2))


def test_environments_the_policy_cannot_read_are_refused():
    policy = HFCausalLM.from_config(gpt2_config(), ANSWERS, max_length=2)
    rewards = torch.zeros(2, 16, dtype=torch.float64)
    other_answers = TextEnv(left_pad([[1, 2], [3]]), (5, 9, 14, 21), 2, rewards)
    too_long = TextEnv(torch.ones(2, 32, dtype=torch.long), ANSWERS, 2, rewards)  # 32 + L - 1 positions
    outside = TextEnv(torch.tensor([[VOCAB], [1]]), ANSWERS, 2, rewards)
    for env, message in ((other_answers, "answer_tokens=env.answer_tokens"), (too_long, "positions"),
                         (outside, "model's tokenizer")):  # fmt: skip
        with pytest.raises(ShapeMismatchError, match=message) as info:
            exact(policy, env)
        assert "\n" not in str(info.value)
    with pytest.raises(ShapeMismatchError, match="right-padded"):
        TextEnv(torch.tensor([[1, -1], [2, 3]]), ANSWERS, 2, rewards)


def test_llama_modules_run_in_float64_and_match_transformers_to_float32_accuracy():
    policy = HFCausalLM.from_config(llama_config(), ANSWERS, max_length=2)
    names = set(policy.float64_modules)
    assert "model.rotary_emb" in names and "model.norm" in names and "model.layers.0.input_layernorm" in names
    original = HFCausalLM.from_config(llama_config(), ANSWERS, max_length=2, dtype="float32").model
    tokens = torch.tensor([PROMPTS[0]])
    ours = policy.model(input_ids=tokens).logits
    theirs = original.double()(input_ids=tokens).logits  # transformers' own float32 norms and RoPE
    assert 0 < float((ours - theirs).abs().max()) < 1e-5  # different, by float32 rounding only


# ----------------------------------------------------------------------------- text environments


def test_text_env_scores_decoded_strings():
    tokenizer = word_tokenizer(["what", "is", "one", "two", "1", "2", "3"])
    prompts = ["what is one", "what is two two", "two"]

    def reward(prompt: str, output: str) -> float:
        return 1.0 if output.split()[0] == str(len(prompt.split())) else -0.5

    env = TextEnv.from_texts(prompts, tokenizer, answers=["1", "2", "3"], length=2, reward=reward)
    assert env.answer_tokens == tuple(tokenizer.convert_tokens_to_ids(["1", "2", "3"]))
    assert env.output_texts[:4] == ["1 1", "1 2", "1 3", "2 1"]
    expected = torch.tensor([[reward(p, o) for o in env.output_texts] for p in prompts], dtype=torch.float64)
    assert torch.equal(env.reward_table(), expected)
    assert env.targets.tolist() == [[2, 0], [0, 0], [0, 0]]  # the first best output of each prompt
    assert env.prompts.tolist()[2] == [-1, -1, -1, tokenizer.convert_tokens_to_ids("two")]
    assert env.features.shape == (3, 1)
    exact_env = TextEnv.from_texts(prompts, tokenizer, answers=["1", "2", "3"], length=1, references=["3", "1", "2"])
    assert exact_env.reward_table().tolist() == [[-1, -1, 1], [1, -1, -1], [-1, 1, -1]]
    swapped = exact_env.with_rewards(torch.zeros(3, 3))
    assert swapped.answer_tokens == exact_env.answer_tokens and torch.equal(swapped.targets, exact_env.targets)
    assert swapped.reward_table().abs().sum() == 0 and exact_env.reward_table().abs().sum() == 9


def test_text_env_refuses_bad_input_with_one_line_errors():
    tokenizer = word_tokenizer(["a", "b", "c"])
    cases = [
        (RewardRangeError, "outside \\[-1, 1\\]", dict(answers=["a", "b"], reward=lambda p, o: 2.0)),
        (ConfigError, "not one", dict(answers=["a b", "c"], reward=lambda p, o: 0.0)),
        (ConfigError, "not in the tokenizer's vocabulary", dict(answers=["a", "zzz"], reward=lambda p, o: 0.0)),
        (ShapeMismatchError, "1 references for 2 prompts", dict(answers=["a", "b"], references=["a"])),
        (ConfigError, "no output's text", dict(answers=["a", "b"], references=["a", "c"])),
        (ConfigError, "exactly one of", dict(answers=["a", "b"], answer_tokens=[2, 3], references=["a", "b"])),
    ]
    for error, message, kwargs in cases:
        with pytest.raises(error, match=message) as info:
            TextEnv.from_texts(["a b", "c"], tokenizer, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="non-empty list of strings"):
        TextEnv.from_texts("a b", tokenizer, answers=["a", "b"], references=["a"])
    with pytest.raises(ShapeMismatchError, match="2 prompt_texts for 1 prompts"):
        TextEnv(left_pad([[2]]), (2, 3), 1, torch.zeros(1, 2), prompt_texts=["a", "b"])
    for words in ([], ["a", "a"], ["a b"], ["[PAD]"]):
        with pytest.raises(ConfigError, match="word"):
            word_tokenizer(words)


def test_the_class_docstring_example_runs():
    source = HFCausalLM.__doc__.split("locally::\n", 1)[1].split("\n    Args:")[0]
    code = "\n".join(line[8:] for line in source.splitlines())
    namespace: dict = {}
    exec(compile(code, "HFCausalLM docstring", "exec"), namespace)  # noqa: S102
    assert namespace["result"].value.shape == (2, 2)


# ----------------------------------------------------------------------------- the optional dependency


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter on this checkout."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_import_rftgrad_does_not_import_transformers_and_a_missing_one_names_the_extra():
    done = run_python("import sys, rftgrad, rftgrad.models, rftgrad.envs; print('transformers' in sys.modules)")
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
    done = run_python(
        "import sys\nsys.modules['transformers'] = None\nimport rftgrad.models\n"
        "try:\n    rftgrad.models.HFCausalLM\nexcept Exception as err:\n    print(type(err).__name__, err)"
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("ConfigError") and 'pip install -e ".[trl]"' in line and "\n" not in line

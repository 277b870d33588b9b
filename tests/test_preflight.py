"""``rftgrad preflight``: per-prompt reward mean and STD under a model before RFT, exact or sampled.

The library core (:func:`rftgrad.diagnose.preflight`) on the built-in tiny transformer, then the command line on a
tiny random GPT-2 and a word-level tokenizer saved locally with ``save_pretrained`` (no download): its exact
numbers against :func:`rftgrad.theory.exact` on the same policy and environment, its sampled numbers against the
exact ones within their stated errors, the predicted ``frac_reward_zero_std`` against the closed form, the
``--export-stalled`` files in ``rftgrad diagnose``'s format, and every bad input as one line with exit code 2
and nothing left behind.

Sampled checks: an estimate may miss the exact value by ``MC_Z = 5`` of its stated standard errors. A sample mean
of ``S`` i.i.d. rewards in [-1, 1] is close to normal at the ``S`` used here (1,000 to 4,000; CLT), and so is the
population STD ``sqrt(m_2)`` by the delta method, so one check fails with probability about
``P(|N(0, 1)| > 5) = 6e-7``; over the few dozen checks of this file the union bound is below 1e-4, and the seeds
are fixed. The STD estimator's bias, ``E[m_2] = (S-1)/S · STD²``, moves it by about ``STD/(2S)``, at most 5e-4
here, while its standard error is about ``STD·sqrt(κ-1)/(2 sqrt(S))`` (``κ`` the reward's kurtosis), over ten
times larger, so the bias does not need its own allowance.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from rftgrad.cli import main
from rftgrad.diagnose import preflight, read_rollouts, sampled_reward_stats
from rftgrad.envs import random_sequence_env
from rftgrad.models import TabularPolicy, TinyTransformerPolicy
from rftgrad.theory import exact, frac_reward_zero_std, stalled
from tests.tolerances import ATOL, EXACT_ATOL, MC_Z

WORDS = ["what", "is", "the", "answer", "to", "question", "hard", "one", "two", "three", "four", "A", "B", "C", "D"]
ANSWERS = "A,B,C,D"
#: prompts of a single-token answer (L = 1), one per line of the prompts file.
PROMPTS = [
    {"prompt": "what is the answer to question one", "answer": "A", "id": "q1"},
    {"prompt": "what is the answer", "answer": "B"},
    {"prompt": "hard question two", "answer": "C"},
    {"prompt": "the answer to three", "answer": "D"},
    {"prompt": "question four", "answer": "A"},
]
#: the same prompts with two-token answers (L = 2; the word tokenizer decodes [A, B] as "A B").
PROMPTS_2 = [dict(p, answer=a) for p, a in zip(PROMPTS, ["A B", "B A", "C C", "D A", "A A"], strict=True)]
#: a reward module for --reward path.py:function: the "hard" prompts always fail, the others want "A".
REWARD_SOURCE = """
import math

def score(prompt, output):
    return -1.0 if "hard" in prompt or "four" in prompt else (1.0 if output.strip() == "A" else -0.5)

def too_big(prompt, output):
    return 2.0

def not_a_number(prompt, output):
    return math.nan

def text(prompt, output):
    return "x"

def broken(prompt, output):
    return 1 / 0

def interrupted(prompt, output):
    if "three" in prompt:
        raise KeyboardInterrupt
    return -1.0
"""


# ------------------------------------------------------------------------------- the core, on built-in policies


@pytest.fixture(scope="module")
def sequence_case():
    env = random_sequence_env(num_prompts=6, vocab_size=3, length=2, seed=1)
    policy = TinyTransformerPolicy.for_env(env, dtype="float64", seed=0, init_scale=3.0)
    return env, policy


def test_exact_statistics_reproduce_the_exact_engine(sequence_case):
    env, policy = sequence_case
    result = preflight(policy, env, group_size=8, chunk_size=4)  # two chunks: 4 + 2 prompts
    reference = exact(policy, env)
    table = result.table
    assert (table["method"] == "exact").all() and (table["n"] == 9).all()
    np.testing.assert_allclose(table["reward_mean"], reference.value[0].numpy(), rtol=0, atol=ATOL[torch.float64])
    np.testing.assert_allclose(table["reward_std"], reference.std[0].numpy(), rtol=0, atol=ATOL[torch.float64])
    whole = preflight(policy, env, group_size=8, chunk_size=100)  # chunks do not change the numbers
    np.testing.assert_allclose(table["reward_std"], whole.table["reward_std"], rtol=0, atol=EXACT_ATOL)
    # exact match rewards ±1: P(all G equal) = p^G + (1-p)^G with p = (V + 1) / 2, the closed form
    p = (reference.value[0].numpy() + 1) / 2
    np.testing.assert_allclose(table["p_all_equal_G8"], frac_reward_zero_std(p, 8), rtol=0, atol=EXACT_ATOL)
    summary = result.summary["predicted_frac_reward_zero_std"]
    assert summary["value"] == pytest.approx(frac_reward_zero_std(p, 8).mean(), abs=EXACT_ATOL)
    # the stalled flag is the theory's rule on [-1, 1]: STD < 0.1 · 2 and V below best − 0.5 · (best − worst)
    expected = stalled(reference.value[0], reference.std[0], 1.0, -1.0, 0.2).numpy()
    assert table["vanishing"].tolist() == expected.tolist() and expected.any() and not expected.all()


def test_a_policy_that_reads_input_indices_is_evaluated_whole():
    env = random_sequence_env(num_prompts=5, vocab_size=2, length=2, seed=2)
    policy = TabularPolicy.for_env(env, dtype="float64", seed=3)
    result = preflight(policy, env, chunk_size=2)  # a chunk would renumber the inputs a tabular policy reads
    np.testing.assert_allclose(result.table["reward_std"], exact(policy, env).std[0], rtol=0, atol=ATOL[torch.float64])


def test_sampled_statistics_lie_within_their_stated_errors(sequence_case):
    env, policy = sequence_case
    truth = exact(policy, env)
    result = preflight(policy, env, group_size=4, samples=2000, max_outputs=1, seed=5)
    table = result.table
    assert (table["method"] == "sampled").all() and (table["n"] == 2000).all()
    checked = 0
    for row, value, std in zip(table.itertuples(), truth.value[0].tolist(), truth.std[0].tolist(), strict=True):
        if math.isnan(row.reward_std_se):  # every sample agreed: the stated error is the 95% upper bound
            assert row.reward_std == 0 and std <= row.reward_std_upper95
            continue
        assert abs(row.reward_mean - value) <= MC_Z * row.reward_mean_se, row
        assert abs(row.reward_std - std) <= MC_Z * row.reward_std_se, row
        assert row.reward_std_upper95 > row.reward_std
        checked += 1
    assert checked >= 4
    # the same seed draws the same outputs; the summary states the estimator
    again = preflight(policy, env, group_size=4, samples=2000, max_outputs=1, seed=5)
    pd.testing.assert_frame_equal(table, again.table)
    assert "biased low" in result.summary["std_estimator"]


def test_sampled_reward_statistics_formulas():
    stats = sampled_reward_stats(np.array([[0.0, 0.0, 0.0, 1.0], [-1.0, -1.0, -1.0, -1.0]]))
    # first row: mean 1/4, m2 = 3/16, m4 = (3 · (1/4)^4 + (3/4)^4) / 4 = 0.08203125
    m2, m4 = 3 / 16, 0.08203125
    assert stats["reward_mean"].tolist() == [0.25, -1.0]
    assert stats["reward_mean_se"][0] == pytest.approx(math.sqrt(m2 / 3), abs=EXACT_ATOL)
    assert stats["reward_std"][0] == pytest.approx(math.sqrt(m2), abs=EXACT_ATOL)
    se = math.sqrt((m4 - m2**2) / 4) / (2 * math.sqrt(m2))
    assert stats["reward_std_se"][0] == pytest.approx(se, abs=EXACT_ATOL)
    z95 = 1.6448536269514722  # the one-sided 95% normal quantile
    assert stats["reward_std_upper95"][0] == pytest.approx(math.sqrt(m2) + z95 * se, abs=EXACT_ATOL)
    # second row: all equal at the bottom of [-1, 1]: no SE; the bound 2·sqrt(1 - 0.05^(1/4)) = 1.45 is capped at 1,
    # the largest STD in [-1, 1]; with 64 equal samples the bound D · sqrt(1 - 0.05^(1/S)), D = 2, is 0.43
    assert math.isnan(stats["reward_std_se"][1]) and stats["reward_std"][1] == 0
    assert stats["reward_std_upper95"][1] == 1.0
    bound = sampled_reward_stats(np.full((1, 64), -1.0))["reward_std_upper95"][0]
    assert bound == pytest.approx(2 * math.sqrt(1 - 0.05 ** (1 / 64)), abs=EXACT_ATOL) and 0.42 < bound < 0.43


# ------------------------------------------------------------------------------- the command, on a local GPT-2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random GPT-2 (2 layers of width 16, weights at scale 0.5: far from uniform) and its word-level
    tokenizer, saved with ``save_pretrained`` into one local folder."""
    transformers = pytest.importorskip("transformers")  # the optional extra: the core tests above run without it
    from rftgrad.models import word_tokenizer

    folder = tmp_path_factory.mktemp("gpt2")
    tokenizer = word_tokenizer(WORDS)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                     initializer_range=0.5, bos_token_id=0, eos_token_id=0)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_prompts(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def run(model_dir, prompts, out, *extra):
    return main(["preflight", "--model", str(model_dir), "--prompts", str(prompts), "--out", str(out),
                 "--dtype", "float64", "--device", "cpu", *extra])  # fmt: skip


def reference(model_dir, rows, length):
    """theory.exact on the same policy and environment, built from the library."""
    import transformers

    from rftgrad.envs import TextEnv
    from rftgrad.models import HFCausalLM

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    ids = [tokenizer.convert_tokens_to_ids(a) for a in ANSWERS.split(",")]
    policy = HFCausalLM.from_pretrained(model_dir, answer_tokens=ids, max_length=length, dtype="float64")
    env = TextEnv.from_texts([r["prompt"] for r in rows], tokenizer, answer_tokens=ids, length=length,
                             reward="exact_match", references=[r["answer"] for r in rows])  # fmt: skip
    return exact(policy, env)


def test_cli_exact_reproduces_the_exact_engine_on_a_local_model(model_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    assert run(model_dir, prompts, tmp_path / "out", "--answers", ANSWERS, "--group-size", "4") == 0
    captured = capsys.readouterr()
    assert "exact over all V^L = 4^1 = 4 outputs" in captured.out and "stalled" in captured.out
    assert re.search(r"preflight \(exact\).*5/5", captured.err)  # the progress bar over prompts
    table = pd.read_csv(tmp_path / "out" / "prompts.csv")
    truth = reference(model_dir, PROMPTS, 1)
    np.testing.assert_allclose(table["reward_mean"], truth.value[0].numpy(), rtol=0, atol=ATOL[torch.float64])
    np.testing.assert_allclose(table["reward_std"], truth.std[0].numpy(), rtol=0, atol=ATOL[torch.float64])
    p = (truth.value[0].numpy() + 1) / 2
    np.testing.assert_allclose(table["p_all_equal_G4"], frac_reward_zero_std(p, 4), rtol=0, atol=EXACT_ATOL)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["predicted_frac_reward_zero_std"]["value"] == pytest.approx(frac_reward_zero_std(p, 4).mean())
    assert summary["vanishing"]["count"] == int(table["vanishing"].sum())
    assert table["id"].tolist()[0] == "q1" and table["first_row"].tolist() == [f"line {n}" for n in range(1, 6)]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["answers"] == ANSWERS and config["group_size"] == 4
    assert json.loads((tmp_path / "out" / "environment.json").read_text())["device"] == "cpu"


def test_cli_sampled_estimates_lie_within_their_stated_errors(model_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS_2)
    args = ("--answers", ANSWERS, "--length", "2", "--samples", "1000", "--max-outputs", "1", "--no-progress",
            "--tokenizer", str(model_dir))  # fmt: skip
    assert run(model_dir, prompts, tmp_path / "out", *args) == 0
    assert "sampled, 1000 outputs per prompt" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "prompts.csv")
    truth = reference(model_dir, PROMPTS_2, 2)
    assert (table["method"] == "sampled").all()
    checked = 0
    for row, value, std in zip(table.itertuples(), truth.value[0].tolist(), truth.std[0].tolist(), strict=True):
        if math.isnan(row.reward_std_se):
            assert std <= row.reward_std_upper95
            continue
        assert abs(row.reward_mean - value) <= MC_Z * row.reward_mean_se, row
        assert abs(row.reward_std - std) <= MC_Z * row.reward_std_se, row
        checked += 1
    assert checked >= 3


def test_export_stalled_writes_diagnose_files(model_dir, tmp_path, capsys):
    (tmp_path / "rewards.py").write_text(REWARD_SOURCE, encoding="utf-8")
    rows = [dict(row) for row in PROMPTS]
    del rows[4]["answer"]  # "question four": stalled, without an answer, so it is to be labelled
    prompts = write_prompts(tmp_path / "prompts.jsonl", rows)
    export = tmp_path / "stalled.jsonl"
    args = ("--answers", ANSWERS, "--reward", f"{tmp_path / 'rewards.py'}:score", "--export-stalled", str(export))
    assert run(model_dir, prompts, tmp_path / "out", *args, "--no-progress") == 0
    out = capsys.readouterr().out
    assert "exported 1 stalled prompts with their reference" in out and "exported 1 stalled prompts without" in out
    sft = [json.loads(line) for line in export.read_text().splitlines()]
    assert sft == [{"prompt": "hard question two", "completion": "C"}]  # TRL's prompt-completion format
    to_label_file = tmp_path / "stalled.to_label.jsonl"
    to_label = [json.loads(line) for line in to_label_file.read_text().splitlines()]
    assert [row["prompt"] for row in to_label] == ["question four"]
    assert set(to_label[0]) == {"prompt", "reward_mean", "reward_std", "n", "first_row"}
    assert to_label[0]["reward_mean"] == -1 and to_label[0]["reward_std"] == 0 and to_label[0]["first_row"] == "line 5"
    log = read_rollouts(to_label_file, reward_col="reward_mean")  # diagnose's reader takes the file back
    assert log.samples["prompt"].tolist() == ["question four"] and log.samples["reward"].tolist() == [-1.0]
    table = pd.read_csv(tmp_path / "out" / "prompts.csv")
    assert table.loc[table["vanishing"], "prompt"].tolist() == ["hard question two", "question four"]


# ------------------------------------------------------------------------------- bad input: one line, exit 2


def bad_cases(tmp_path):
    """name -> (prompts rows or raw text or None for no file, arguments, message regex)."""
    rewards = tmp_path / "rewards.py"
    rewards.write_text(REWARD_SOURCE, encoding="utf-8")
    answers = ("--answers", ANSWERS)
    sampled = (*answers, "--length", "2", "--max-outputs", "1", "--samples", "8", "--group-size", "2")
    export = ("--export-stalled", str(tmp_path / "stalled.jsonl"))
    cases = {
        "missing file": (None, answers, r"no such file"),
        "bad json line": (
            '{"prompt": "what is", "answer": "A"}\n{"prompt": oops}\n',
            answers,
            r"line 2 is not valid JSON",
        ),
        "no prompt": ([{"question": "what", "answer": "A"}], answers, r'line 1 has no "prompt" field'),
        "no answer": ([{"prompt": "what is"}], answers, r'line 1 has no "answer"'),
        "unknown reward": (PROMPTS, (*answers, "--reward", "accuracy"), r"unknown --reward 'accuracy'"),
        "missing module": (
            PROMPTS,
            (*answers, "--reward", "no_such_module_xyz:score"),
            r"no module named 'no_such_module_xyz'",
        ),
        "missing function": (PROMPTS, (*answers, "--reward", f"{rewards}:nothing"), r"has no 'nothing'"),
        "reward above 1": (
            PROMPTS,
            (*answers, "--reward", f"{rewards}:too_big"),
            r"returned 2\.0 on the prompt of line 1 .*outside \[-1, 1\]",
        ),
        "reward nan": (
            PROMPTS,
            (*answers, "--reward", f"{rewards}:not_a_number"),
            r"returned nan on the prompt of line 1",
        ),
        "reward text": (PROMPTS, (*answers, "--reward", f"{rewards}:text"), r"returned 'x' \(str\)"),
        "reward raises": (
            PROMPTS,
            (*answers, "--reward", f"{rewards}:broken"),
            r"raised ZeroDivisionError: division by zero",
        ),
        "sampled reward above 1": (PROMPTS, (*sampled, "--reward", f"{rewards}:too_big"), r"returned 2\.0"),
        "answer not one token": (
            [{"prompt": "what is", "answer": "A B"}],
            answers,
            r"line 1: answer 'A B' is 2 tokens",
        ),
        "answer not an answer": (
            [{"prompt": "what is", "answer": "what"}],
            answers,
            r"answer 'what' is not made of the answer tokens",
        ),
        "answer not L tokens": (
            [{"prompt": "what is", "answer": "A"}],
            sampled,
            r"answer 'A' is 1 tokens, not --length 2",
        ),
        "answers of two tokens": (PROMPTS, ("--answers", "A B,C"), r"--answers 'A B' is 2 tokens"),
        "unknown answer": (PROMPTS, ("--answers", "A,Z"), r"--answers 'Z' is not in the tokenizer's vocabulary"),
        "no config": (PROMPTS, (*answers, "--model", str(tmp_path)), r"has no config\.json"),
        "no model folder": (PROMPTS, (*answers, "--model", str(tmp_path / "absent")), r"does not exist"),
        "samples below G": (
            PROMPTS_2,
            (*answers, "--length", "2", "--max-outputs", "1", "--samples", "4"),
            r"--samples must",
        ),
        "one sample": (PROMPTS, (*answers, "--samples", "1"), r"--samples: takes an integer >= 2"),
        "both vocabularies": (PROMPTS, (*answers, "--answer-tokens", "11,12"), r"not allowed with argument --answers"),
        "export suffix": (
            PROMPTS,
            (*answers, "--export-stalled", str(tmp_path / "stalled.txt")),
            r"name the file \*\.jsonl",
        ),
        "negative gap": (PROMPTS, (*answers, "--gap", "-1"), r"--gap must be >= 0"),
        "exact answer not L tokens": (
            [{"prompt": "what is", "answer": "A"}],
            (*answers, "--length", "2"),
            r"line 1: answer 'A' is 1 tokens, not --length 2",
        ),
        "reward outside the range": (
            PROMPTS,
            (*answers, "--reward-range=0,1"),
            r"reward -1 of the prompt of line 1 is outside the reward range \[0, 1\]",
        ),
        "cuda absent": (PROMPTS, (*answers, "--device", "cuda"), r"CUDA is not available"),
    }
    if torch.cuda.is_available():
        del cases["cuda absent"]
    # every case also asks for an export, which must not be written either
    return {name: (rows, args if "--export-stalled" in args else (*args, *export), message)
            for name, (rows, args, message) in cases.items()}  # fmt: skip


BAD_CASES = [
    "missing file", "bad json line", "no prompt", "no answer", "unknown reward", "missing module", "missing function",
    "reward above 1", "reward nan", "reward text", "reward raises", "sampled reward above 1", "answer not one token",
    "answer not an answer", "answer not L tokens", "answers of two tokens", "unknown answer", "no config",
    "no model folder", "samples below G", "one sample", "both vocabularies", "export suffix", "negative gap",
    "exact answer not L tokens", "reward outside the range", "cuda absent",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_with_exit_code_2_and_leaves_nothing(case, model_dir, tmp_path, capsys):
    cases = bad_cases(tmp_path)
    if case not in cases:
        pytest.skip("CUDA is present")
    rows, args, message = cases[case]
    prompts = tmp_path / "prompts.jsonl"
    if isinstance(rows, str):
        prompts.write_text(rows, encoding="utf-8")
    elif rows is not None:
        write_prompts(prompts, rows)
    code = run(model_dir, prompts, tmp_path / "out", "--no-progress", *args)  # a later --model replaces the first
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("rftgrad: error: ") and "\n" not in err, err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert not (tmp_path / "stalled.jsonl").exists() and not (tmp_path / "stalled.to_label.jsonl").exists()


def test_every_bad_case_is_run(tmp_path):
    assert set(bad_cases(tmp_path)) | {"cuda absent"} == set(BAD_CASES)


def test_an_interrupted_run_leaves_nothing(model_dir, tmp_path, capsys):
    """A reward that is interrupted on the fourth prompt of a sampled run (its rewards are computed prompt by
    prompt, after the first three are done): exit 130, no output folder, no export."""
    (tmp_path / "rewards.py").write_text(REWARD_SOURCE, encoding="utf-8")
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS_2)
    export = tmp_path / "stalled.jsonl"
    args = ("--answers", ANSWERS, "--reward", f"{tmp_path / 'rewards.py'}:interrupted", "--length", "2",
            "--max-outputs", "1", "--samples", "8", "--export-stalled", str(export), "--no-progress")  # fmt: skip
    assert run(model_dir, prompts, tmp_path / "out", *args) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not export.exists()


def test_an_existing_export_is_refused_before_any_work(model_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    export = tmp_path / "stalled.jsonl"
    export.write_text("keep me\n")
    assert run(model_dir, prompts, tmp_path / "out", "--answers", ANSWERS, "--export-stalled", str(export)) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert export.read_text() == "keep me\n" and not (tmp_path / "out").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_the_cpu_numbers(model_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    assert run(model_dir, prompts, tmp_path / "cpu", "--answers", ANSWERS, "--no-progress") == 0
    assert main(["preflight", "--model", str(model_dir), "--prompts", str(prompts), "--out", str(tmp_path / "cuda"),
                 "--dtype", "float64", "--device", "cuda", "--answers", ANSWERS, "--no-progress"]) == 0  # fmt: skip
    cpu, cuda = (pd.read_csv(tmp_path / name / "prompts.csv") for name in ("cpu", "cuda"))
    np.testing.assert_allclose(cpu["reward_std"], cuda["reward_std"], rtol=0, atol=ATOL[torch.float64])
    assert json.loads((tmp_path / "cuda" / "environment.json").read_text())["device"].startswith("cuda")

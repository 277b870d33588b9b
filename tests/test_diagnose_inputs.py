"""`rftgrad diagnose` on bad input: each case is one line on stderr, exit code 2, nothing written.

Every case builds its input in ``tmp_path``; the CLI cases check the stderr line (one line,
``rftgrad: error: `` then the problem and the fix) and that ``--out`` was not created, the API
cases the exact exception type of :func:`rftgrad.diagnose.diagnose`. Accepted inputs (a BOM,
``.gz`` logs, any group size) are checked against the plain file's numbers.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rftgrad.diagnose.readers as readers
from rftgrad.cli import main
from rftgrad.diagnose import (
    RolloutLogError,
    diagnose,
    diagnose_log,
    read_rollouts,
    unbiased_prob_all_equal,
    write_report,
)
from rftgrad.errors import ConfigError
from tests.tolerances import EXACT_RTOL

ROOT = Path(__file__).resolve().parents[1]
GOOD = "".join(f'{{"prompt": "{p}", "reward": {r}}}\n' for p, r in (("a", 1), ("a", 0), ("b", 1), ("b", 1)))
TWO_FUNCTIONS = (
    '{"prompt": "a", "accuracy_reward": 1, "format_reward": 0.5}\n'
    '{"prompt": "a", "accuracy_reward": 0, "format_reward": 1}\n'
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"

#: case: (file name, content (str: UTF-8 text, bytes: as is, None: make a directory), options, stderr pattern)
CLI_CASES: dict[str, tuple[str, str | bytes | None, list[str], str]] = {
    # 1. non-finite or negative regime options
    "std-threshold nan": ("log.jsonl", GOOD, ["--std-threshold", "nan"], r"--std-threshold must be finite.*got nan"),
    "std-threshold inf": ("log.jsonl", GOOD, ["--std-threshold", "inf"], r"--std-threshold must be finite.*got inf"),
    "std-threshold negative": ("log.jsonl", GOOD, ["--std-threshold=-0.1"], r"--std-threshold must be >= 0"),
    "gap nan": ("log.jsonl", GOOD, ["--gap", "nan"], r"--gap must be finite.*got nan; pass a finite number"),
    "gap negative": ("log.jsonl", GOOD, ["--gap=-1"], r"--gap must be >= 0, got -1; pass a non-negative value"),
    "max-reward nan": ("log.jsonl", GOOD, ["--max-reward", "nan"], r"--max-reward must be finite.*got nan"),
    "max-reward inf": ("log.jsonl", GOOD, ["--max-reward", "inf"], r"--max-reward must be finite.*got inf"),
    # 2. reward weights
    "reward weight nan": (
        "log.jsonl",
        TWO_FUNCTIONS,
        ["--reward-weights", "1,nan"],
        r"--reward-weights must be finite",
    ),
    "reward weight inf": (
        "log.jsonl",
        TWO_FUNCTIONS,
        ["--reward-weights", "1,inf"],
        r"--reward-weights must be finite",
    ),
    "too few weights": (
        "log.jsonl",
        TWO_FUNCTIONS,
        ["--reward-weights", "1"],
        r"1 --reward-weights for 2 reward column.*; pass one weight per column",
    ),
    # 3. group sizes
    "group sizes repeated": ("log.jsonl", GOOD, ["--group-sizes", "2,2"], r"--group-sizes lists 2 more than once"),
    # 4. reward range
    "reward range infinite": (
        "log.jsonl",
        GOOD,
        ["--reward-range=-inf,inf"],
        r"--reward-range must be finite.*got -inf; pass finite bounds, e.g. --reward-range 0,1",
    ),
    "reward range half infinite": ("log.jsonl", GOOD, ["--reward-range=0,inf"], r"--reward-range must be finite"),
    "reward range empty": ("log.jsonl", GOOD, ["--reward-range", "1,1"], r"--reward-range needs LO < HI.*e\.g\. 0,1"),
    # 5. files that are not text logs, directories, empty files
    "binary file": ("log.jsonl", PNG, [], r"log\.jsonl: is a binary file, not UTF-8 text.*export the log as JSONL"),
    "gzip without .gz": (
        "log.jsonl",
        gzip.compress(GOOD.encode()),
        [],
        r"log\.jsonl: is gzip-compressed, not UTF-8 text: gunzip it, or name it log\.jsonl\.gz",
    ),
    "gzip csv without .gz": (
        "log.csv",
        gzip.compress(b"prompt,reward\na,1\na,0\n"),
        [],
        r"gzip-compressed.*log\.csv\.gz",
    ),
    ".gz that is not gzip": ("log.jsonl.gz", GOOD, [], r"is named \.gz but is not gzip-compressed; rename it"),
    "truncated gzip": ("log.jsonl.gz", gzip.compress(GOOD.encode())[:30], [], r"truncated or corrupt gzip file"),
    "zip archive": ("log.csv", b"PK\x03\x04" + b"\x00" * 20, [], r"is a zip archive: unzip it"),
    "UTF-16 text": ("log.csv", "prompt,reward\na,1\na,0\n".encode("utf-16"), [], r"is UTF-16 text, not UTF-8; save"),
    "latin-1 line in JSONL": (
        "log.jsonl",
        GOOD.encode() + b'{"prompt": "caf\xe9", "reward": 1}\n',
        [],
        r"line 5 is not UTF-8 text \(byte 0xe9 at column 16\); save the file as UTF-8",
    ),
    "latin-1 line in CSV": ("log.csv", b"prompt,reward\na,1\ncaf\xe9,0\n", [], r"line 3 is not UTF-8 text"),
    "latin-1 line in JSON": ("log.json", b'[{"prompt": "caf\xe9", "reward": 1}]', [], r"line 1 is not UTF-8 text"),
    "parquet named .jsonl": (
        "log.jsonl",
        b"PAR1" + b"\x00" * 20,
        [],
        r"is a parquet file, not JSONL.*--format parquet",
    ),
    "not parquet": ("log.parquet", GOOD, [], r"is not a parquet file \(those start with PAR1\)"),
    "directory": (
        "x.jsonl",
        None,
        [],
        r"x\.jsonl: is a directory with no \.jsonl, .* file; pass a log file, a folder of per-step log files",
    ),
    "zero bytes": ("log.jsonl", "", [], r"the file is empty \(0 bytes\)"),
    "zero bytes JSON": ("log.json", "", [], r"log\.json: the file is empty \(0 bytes\)"),
    "blank lines only": ("log.jsonl", "\n \n", [], r"the file is empty \(only blank lines\)"),
    "header only": ("log.csv", "prompt,reward\n", [], r"the file is empty: a header \(prompt, reward\) but no rows"),
    "empty JSON list": ("log.json", "[]", [], r"the file is empty \(no records\)"),
    "empty gzip": ("log.jsonl.gz", gzip.compress(b""), [], r"the file is empty once decompressed"),
    # 7. rewards that are not finite numbers
    "reward is an object": (
        "log.jsonl",
        '{"prompt": "a", "reward": {"a": 1}}\n{"prompt": "a", "reward": {"a": 0}}\n',
        [],
        r"line 1: reward column 'reward' holds an object \(keys 'a'\), not a number; name the number with "
        r"--reward-col reward\.a",
    ),
    "reward object in a later row": (
        "log.jsonl",
        GOOD + '{"prompt": "a", "reward": {"a": 1}}\n',
        [],
        r"line 5: reward column 'reward' holds an object",
    ),
    "named reward column holds objects": (
        "log.jsonl",
        '{"prompt": "a", "score": {"a": 1}}\n{"prompt": "a", "score": {"a": 0}}\n',
        ["--reward-col", "score"],
        r"line 1: reward column 'score' holds an object",
    ),
    "reward functions in an object": (
        "log.jsonl",
        '{"prompt": "a", "rewards": {"accuracy": 1, "format": 0}}\n',
        [],
        r"column 'rewards' holds an object \(keys 'accuracy', 'format'\).*--reward-col rewards\.accuracy",
    ),
    "reward 10**400": (
        "log.jsonl",
        GOOD + '{"prompt": "a", "reward": 1' + "0" * 400 + "}\n",
        [],
        r"line 5: reward inf is not finite \(or past float64's range",
    ),
    "reward 1e400": ("log.jsonl", '{"prompt": "a", "reward": 1e400}\n' + GOOD, [], r"line 1: reward inf is not finite"),
    "reward -Infinity": (
        "log.jsonl",
        GOOD + '{"prompt": "a", "reward": -Infinity}\n',
        [],
        r"line 5: reward -inf is not",
    ),
    "reward 1e300": (
        "log.jsonl",
        GOOD + '{"prompt": "a", "reward": 1e300}\n',
        [],
        r"line 5: reward 1e\+300 is larger than 1e\+100 in magnitude",
    ),
    "reward a string": ("log.csv", "prompt,reward\na,1\na,yes\n", [], r"row 2: reward 'yes' is not a number"),
    # 8. what a new user runs into
    "JSONL read as CSV": ("log.jsonl", GOOD, ["--format", "csv"], r"looks like JSONL, not CSV; pass --format jsonl"),
    "CSV read as JSONL": (
        "log.csv",
        "prompt,reward\na,1\n",
        ["--format", "jsonl"],
        r"looks like CSV: pass --format csv",
    ),
    "CSV read as JSON": ("log.csv", "prompt,reward\na,1\n", ["--format", "json"], r"looks like CSV: pass --format csv"),
    "CSV read as TSV": ("log.csv", "prompt,reward\na,1\n", ["--format", "tsv"], r"looks like CSV, not TSV"),
    "tabs in a .csv": ("log.csv", "prompt\treward\na\t1\na\t0\n", [], r"looks like TSV, not CSV; pass --format tsv"),
    "semicolons in a .csv": (
        "log.csv",
        "prompt;reward\na;1\na;0\n",
        [],
        r"separated by ';'; save the file with commas",
    ),
    "JSON list in a .jsonl": ("log.jsonl", json.dumps([{"prompt": "a", "reward": 1}]), [], r"pass --format json"),
    "JSONL in a .json": ("log.json", GOOD, [], r"line 2 is not valid JSON \(Extra data\).*--format jsonl"),
    "W&B table with a short row": (
        "log.json",
        json.dumps({"columns": ["prompt", "reward"], "data": [["a", 1], ["a"]]}),
        [],
        r"record 2 has 1 values for 2 columns",
    ),
    "W&B table without rows": (
        "log.json",
        json.dumps({"columns": ["prompt", "reward"], "data": 5}),
        [],
        r'a W&B table needs "columns"',
    ),
    "one sample per prompt": (
        "log.jsonl",
        '{"prompt": "a", "reward": 1}\n{"prompt": "b", "reward": 0}\n',
        ["--skip-singletons"],
        r"every one of the 2 groups has 1 sample.*check that --prompt-col \('prompt'\) names the prompt",
    ),
    "one sample per prompt and step": (
        "log.jsonl",
        '{"step": 1, "prompt": "a", "reward": 1}\n{"step": 2, "prompt": "a", "reward": 0}\n',
        [],
        r"every one of the 2 groups has 1 sample.*pool the steps with --step-col none",
    ),
    "reward column twice": ("log.jsonl", GOOD, ["--reward-col", "reward,reward"], r"names reward more than once"),
    "empty reward column name": ("log.jsonl", GOOD, ["--reward-col", ","], r"--reward-col is empty; name a column"),
    "prompt column is the reward": (
        "log.jsonl",
        GOOD,
        ["--prompt-col", "reward"],
        r"--prompt-col and --reward-col both take column 'reward'; give each role its own column",
    ),
    "step column is the prompt": ("log.jsonl", GOOD, ["--step-col", "prompt"], r"--prompt-col and --step-col both"),
    "infinite step": ("log.csv", "step,prompt,reward\n1,a,1\ninf,a,0\n", [], r"row 2: step inf is not finite"),
    "unknown compressed suffix": ("log.txt.gz", gzip.compress(GOOD.encode()), [], r"unknown format '\.txt\.gz'"),
}


def make_input(tmp_path: Path, name: str, content: str | bytes | None) -> Path:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def assert_one_line_error(capsys: pytest.CaptureFixture[str], pattern: str) -> str:
    captured = capsys.readouterr()
    assert captured.err.startswith("rftgrad: error: "), captured.err
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    assert re.search(pattern, captured.err), captured.err
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, capsys):
    name, content, options, pattern = CLI_CASES[case]
    path = make_input(tmp_path, name, content)
    out = tmp_path / "report"
    assert main(["diagnose", str(path), "--out", str(out), *options]) == 2
    assert_one_line_error(capsys, pattern)
    assert not out.exists()


def test_a_directory_of_step_files_reads_as_one_log_in_step_order(tmp_path, capsys):
    folder = tmp_path / "rollouts"
    folder.mkdir()
    for step, rewards in ((10, (1, 1)), (9, (1, 0))):  # written out of order
        lines = "".join(f'{{"step": {step}, "prompt": "a", "reward": {r}}}\n' for r in rewards)
        (folder / f"{step}.jsonl").write_text(lines, encoding="utf-8")
    (folder / "notes.txt").write_text("x", encoding="utf-8")  # not a log: ignored
    (folder / ".hidden.jsonl").write_text("not json", encoding="utf-8")  # hidden: ignored
    log = read_rollouts(folder)
    assert [f.name for f in log.files] == ["9.jsonl", "10.jsonl"]  # 9 before 10: numbers compare as numbers
    assert log.samples["where"].tolist() == ["9.jsonl line 1", "9.jsonl line 2", "10.jsonl line 1", "10.jsonl line 2"]
    assert log.samples["step"].tolist() == [9, 9, 10, 10]
    assert main(["diagnose", str(folder), "--out", str(tmp_path / "report")]) == 0
    assert "in 2 files" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "report" / "steps.csv")["zero_std_groups_share"].tolist() == [0.0, 1.0]
    (folder / "11.csv").write_text("prompt,reward\na,1\n", encoding="utf-8")
    assert main(["diagnose", str(folder), "--out", str(tmp_path / "mixed")]) == 2
    assert_one_line_error(capsys, r"holds log files of 2 formats \(csv, jsonl\); pass --format")
    assert not (tmp_path / "mixed").exists()


def test_an_unreadable_file_says_so(tmp_path, capsys, monkeypatch):
    path = make_input(tmp_path, "log.jsonl", GOOD)
    real_access = os.access
    monkeypatch.setattr(readers.os, "access", lambda p, mode: False if Path(p) == path else real_access(p, mode))
    assert main(["diagnose", str(path), "--out", str(tmp_path / "report")]) == 2
    assert_one_line_error(capsys, r"cannot be read \(permission denied\); check the file's permissions")


# ----------------------------------------------------------------------------- the API's exception types

API_CASES = {
    "std_threshold nan": ({"std_threshold": math.nan}, ConfigError),
    "gap inf": ({"gap": math.inf}, ConfigError),
    "gap negative": ({"gap": -0.5}, ConfigError),
    "max_reward nan": ({"max_reward": math.nan}, ConfigError),
    "max_reward a string": ({"max_reward": "1"}, ConfigError),
    "reward_range infinite": ({"reward_range": (-math.inf, math.inf)}, ConfigError),
    "reward_range reversed": ({"reward_range": (1.0, 0.0)}, ConfigError),
    "reward_range of three": ({"reward_range": (0.0, 0.5, 1.0)}, ConfigError),
    "reward_weights nan": ({"reward_weights": [1.0, math.nan], "reward_col": "reward,score"}, ConfigError),
    "reward_weights a string": ({"reward_weights": "1,2"}, ConfigError),
    "group size inf": ({"group_sizes": (2, math.inf)}, ConfigError),
    "group size nan": ({"group_sizes": (math.nan,)}, ConfigError),
    "group size 2.5": ({"group_sizes": (2.5,)}, ConfigError),
    "group size 0": ({"group_sizes": (0,)}, ConfigError),
    "group size True": ({"group_sizes": (True,)}, ConfigError),
    "group sizes a string": ({"group_sizes": "2,4"}, ConfigError),
    "prompt_col empty": ({"prompt_col": ""}, ConfigError),
    "reward_col twice": ({"reward_col": ["reward", "reward"]}, ConfigError),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_refuses_bad_options_with_config_error_before_writing(case, tmp_path):
    options, error = API_CASES[case]
    path = make_input(tmp_path, "log.jsonl", GOOD.replace('"reward": 1}', '"reward": 1, "score": 0}'))
    out = tmp_path / "report"
    with pytest.raises(error) as raised:
        diagnose(path, out, **options)
    assert type(raised.value) is error and "\n" not in str(raised.value)
    assert not out.exists()


@pytest.mark.parametrize(
    "case", ["binary file", "gzip without .gz", "directory", "reward is an object", "reward 10**400"]
)
def test_api_refuses_bad_files_with_rollout_log_error(case, tmp_path):
    name, content, _, pattern = CLI_CASES[case]
    path = make_input(tmp_path, name, content)
    with pytest.raises(RolloutLogError, match=pattern) as raised:
        diagnose(path, tmp_path / "report")
    assert type(raised.value) is RolloutLogError
    assert not (tmp_path / "report").exists()


def test_options_are_checked_before_the_file_is_read(tmp_path):
    """A bad option fails at once (ConfigError), not after reading a possibly large log."""
    with pytest.raises(ConfigError, match="--gap"):
        diagnose(tmp_path / "absent.jsonl", tmp_path / "report", gap=math.nan)
    with pytest.raises(ConfigError, match="--group-sizes"):
        diagnose(tmp_path / "absent.jsonl", tmp_path / "report", group_sizes=(math.inf,))


# ----------------------------------------------------------------------------- accepted inputs


def numbers(path: Path, **options: object) -> pd.DataFrame:
    return diagnose_log(read_rollouts(path, **options)).table.drop(columns="first_row")


@pytest.mark.parametrize("name", ["log.jsonl", "log.json"])
def test_a_utf8_byte_order_mark_is_accepted_in_json_files_as_in_csv(name, tmp_path):
    records = [json.loads(line) for line in GOOD.splitlines()]
    text = GOOD if name.endswith(".jsonl") else json.dumps(records)
    plain = make_input(tmp_path, "plain_" + name, text)
    with_bom = make_input(tmp_path, name, b"\xef\xbb\xbf" + text.encode())
    pd.testing.assert_frame_equal(numbers(with_bom), numbers(plain))
    csv = make_input(tmp_path, "log.csv", b"\xef\xbb\xbfprompt,reward\na,1\na,0\nb,1\nb,1\n")
    pd.testing.assert_frame_equal(numbers(csv), numbers(plain))


@pytest.mark.parametrize("name", ["log.jsonl.gz", "log.csv.gz", "log.json.gz", "LOG.TSV.GZ"])
def test_gzip_compressed_text_logs_are_read_as_the_plain_file(name, tmp_path):
    texts = {
        "jsonl": GOOD,
        "csv": "prompt,reward\na,1\na,0\nb,1\nb,1\n",
        "json": json.dumps([json.loads(line) for line in GOOD.splitlines()]),
        "tsv": "prompt\treward\na\t1\na\t0\nb\t1\nb\t1\n",
    }
    fmt = name.lower().split(".")[1]
    plain = make_input(tmp_path, f"plain.{fmt}", texts[fmt])
    compressed = make_input(tmp_path, name, gzip.compress(texts[fmt].encode()))
    log = read_rollouts(compressed)
    assert log.fmt == fmt
    pd.testing.assert_frame_equal(numbers(compressed), numbers(plain))


def test_summary_json_is_strict_json_and_a_nan_slip_fails_before_writing(tmp_path):
    path = make_input(tmp_path, "log.jsonl", GOOD)
    diagnose(path, tmp_path / "report", group_sizes=(2, 8))  # G = 8 > n: the unbiased estimate is undefined
    text = (tmp_path / "report" / "summary.json").read_text(encoding="utf-8")
    json.loads(text, parse_constant=lambda name: pytest.fail(f"summary.json holds {name}"))
    assert json.loads(text)["predicted_frac_reward_zero_std"][1]["unbiased"] is None
    diagnosis = diagnose_log(read_rollouts(path))
    slipped = dataclasses.replace(diagnosis, summary={**diagnosis.summary, "reward_mean": math.nan})
    with pytest.raises(ValueError, match="not JSON compliant"):  # a bug of ours, visible, not a file with NaN
        write_report(slipped, tmp_path / "slipped")
    assert not (tmp_path / "slipped").exists()


def test_whole_float_group_sizes_are_accepted_as_ints(tmp_path):
    path = make_input(tmp_path, "log.jsonl", GOOD)
    diagnosis = diagnose_log(read_rollouts(path), group_sizes=(2.0, np.int64(4)))
    assert [row["group_size"] for row in diagnosis.summary["predicted_frac_reward_zero_std"]] == [2, 4]
    assert "p_all_equal_G2" in diagnosis.table and "p_all_equal_unbiased_G4" in diagnosis.table


def test_unbiased_estimator_skipping_values_below_g_is_the_hypergeometric_ratio():
    counts = np.array([[30, 20, 0], [49, 1, 0], [10, 10, 30], [50, 0, 0]])  # n = 50 each
    for g in range(1, 51):
        expected = [sum(math.comb(int(c), g) for c in row) / math.comb(50, g) for row in counts]
        np.testing.assert_allclose(unbiased_prob_all_equal(counts, g), expected, rtol=EXACT_RTOL, atol=0)
    assert np.isnan(unbiased_prob_all_equal(counts, 51)).all()  # G > n: undefined


def test_huge_group_sizes_are_fast_and_exact(tmp_path):
    """G = 10^8 ran for minutes (a Python loop over G); now the cost does not grow with G.

    Run in a subprocess with a deadline, so that a slow implementation fails instead of hanging.
    """
    path = make_input(tmp_path, "log.jsonl", GOOD)
    script = (
        "import json, sys\n"
        "from rftgrad.diagnose import diagnose_log, read_rollouts\n"
        "d = diagnose_log(read_rollouts(sys.argv[1]), group_sizes=(2, 10**8, 10**30))\n"
        "print(json.dumps(d.summary['predicted_frac_reward_zero_std']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120, env=env, check=True
        )
    except subprocess.TimeoutExpired:
        pytest.fail("diagnose_log with G = 10^8 took over 120 s")
    predicted = json.loads(done.stdout)
    # prompt a: rewards (1, 0), prompt b: (1, 1); for huge G only b's groups are all-equal: (0 + 1) / 2
    assert [row["plugin"] for row in predicted[1:]] == [0.5, 0.5]
    assert [row["unbiased"] for row in predicted[1:]] == [None, None]

"""The command line: help, list, exact with a run directory, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from rftgrad.cli import main


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0  # main returns the exit code; only the console script raises SystemExit
    assert "exact" in capsys.readouterr().out


def test_list_names_environments_and_policies(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("bandit", "orthonormal", "gaussian", "digits", "sequence", "tabular", "linear", "mlp", "transformer"):
        assert f"  {name} " in out


def test_exact_writes_a_reproducible_run_directory(tmp_path, capsys):
    args = ["exact", "--policy", "tabular", "--inputs", "3", "--vocab", "3", "--length", "2", "--p0", "0.01"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    records = pd.read_csv(tmp_path / "a" / "exact.csv")
    assert list(records.columns) == ["replica", "input", "metric", "value"]
    wide = records.pivot_table(index=["replica", "input"], columns="metric", values="value")
    # p(target) = 0.01 exactly, exact-match reward: V = 2p - 1, STD = 2 sqrt(p(1-p)); tabular γ = 1/T = 1
    assert wide["reward_mean"].to_numpy() == pytest.approx(-0.98, abs=1e-12)
    assert wide["reward_std"].to_numpy() == pytest.approx(2 * (0.01 * 0.99) ** 0.5, abs=1e-12)
    assert wide["gamma"].to_numpy() == pytest.approx(1.0)
    pd.testing.assert_frame_equal(records, pd.read_csv(tmp_path / "b" / "exact.csv"))  # same config, same numbers
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["policy"] == "tabular" and config["seed"] == 0
    environment = json.loads((tmp_path / "a" / "environment.json").read_text())
    assert environment["device"] == "cpu" and "torch" in environment["packages"]
    assert not list((tmp_path / "a").glob(".*.tmp"))  # no temporary files left behind


def test_threads_are_chosen_recorded_and_restored(tmp_path, monkeypatch):
    args = ["exact", "--policy", "tabular", "--inputs", "2", "--vocab", "2", "--length", "2"]
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    assert main([*args, "--threads", "2", "--out", str(tmp_path / "flag")]) == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert main([*args, "--out", str(tmp_path / "omp")]) == 0
    recorded = {
        run: (info["cpu_threads"], info["cpu_threads_source"])
        for run in ("default", "flag", "omp")
        for info in [json.loads((tmp_path / run / "environment.json").read_text())]
    }
    assert recorded == {"default": (1, "default"), "flag": (2, "--threads"), "omp": (3, "OMP_NUM_THREADS")}
    assert torch.get_num_threads() == before  # the command's choice does not outlive it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vocab", "1"], "V=1 is invalid"),
        (["--length", "0"], "L=0 is invalid"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--dtype", "float16"], "unknown dtype 'float16'"),
        (["--env", "bandit", "--policy", "tabular", "--rewards", "1,2"], r"outside \[-1, 1\]"),
        (["--vocab", "8", "--length", "8", "--policy", "tabular"], "past the enumeration limit"),
        (["--env", "digits", "--policy", "transformer"], "reads prompts"),
        (["--p0", "1.5"], r"strictly inside \(0, 1\)"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_input_gives_one_line_error_and_exit_code_2(args, message, capsys, tmp_path):
    assert main(["exact", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rftgrad: error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_cuda_absent_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert main(["exact", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def check_errors_are_reported_by_kind(run_main, monkeypatch, capsys):
    """Our own error -> one line and exit 2; any other exception (a bug of ours) -> its traceback, the report line
    and exit 1. ``run_main`` is the CLI entry point under test (a deliberately broken one in the test below)."""
    from rftgrad import cli
    from rftgrad.errors import ConfigError

    def bad_input(args):
        raise ConfigError("--examples must be >= 1, got 0")

    def bug(args):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(cli, "_cmd_list", bad_input)
    assert run_main(["list"]) == 2
    err = capsys.readouterr().err
    assert err == "rftgrad: error: --examples must be >= 1, got 0\n"
    monkeypatch.setattr(cli, "_cmd_list", bug)
    assert run_main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ValueError: operands could not be broadcast" in err
    assert err.rstrip().endswith(cli.BUG_REPORT) and "rftgrad: error:" not in err


def test_the_cli_reports_our_errors_in_one_line_and_bugs_with_a_traceback(monkeypatch, capsys):
    check_errors_are_reported_by_kind(main, monkeypatch, capsys)


def test_the_check_fails_on_a_cli_that_calls_every_value_error_a_user_error(monkeypatch, capsys):
    """The old CLI caught ``ValueError`` too, so a bug in torch or pandas code read as the user's mistake."""
    import sys

    from rftgrad.cli import build_parser
    from rftgrad.errors import RftgradError

    def broad_main(argv):
        args = build_parser().parse_args(argv)
        try:
            return args.handler(args)
        except (RftgradError, ValueError) as err:
            print(f"rftgrad: error: {err}", file=sys.stderr)
            return 2

    with pytest.raises(AssertionError):
        check_errors_are_reported_by_kind(broad_main, monkeypatch, capsys)


def test_check_runs_the_transformers_kinds(tmp_path, capsys):
    """``rftgrad check --policy gpt2,llama``: random GPT-2 and Llama instances, 0 violations."""
    pytest.importorskip("transformers")
    args = ["check", "--policy", "gpt2,llama", "--examples", "4", "--seed", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    assert "0 violation(s) in 4 examples" in capsys.readouterr().out
    summary = pd.read_csv(tmp_path / "run" / "check_summary.csv")
    assert list(summary["kind"]) == ["gpt2", "llama", "all"] and summary["violations"].sum() == 0
    rows = pd.read_csv(tmp_path / "run" / "check_rows.csv")
    assert rows["length"].max() <= 3 and (rows["length"][rows["full_vocab"]] == 1).all()


def test_check_needs_transformers_only_for_the_transformers_kinds():
    """Without transformers the default kinds run, and ``--policy gpt2`` ends in one line naming the extra."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys\nsys.modules['transformers'] = None  # as if it were not installed\n"
        "from rftgrad.cli import main\n"
        "assert main(['check', '--examples', '2', '--no-progress']) == 0\n"
        "sys.exit(main(['check', '--policy', 'gpt2', '--examples', '1', '--no-progress']))\n"
    )
    env = {"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert err.startswith("rftgrad: error: ") and "\n" not in err and 'pip install -e ".[trl]"' in err, err

"""Output locations: every filesystem problem is one line and exit 2, and no user file is ever clobbered.

One class per test group, each run through the real command line (``rftgrad.cli.main``):

* filesystem: ``--out`` empty, a file, under a file, somewhere that cannot be created or written;
* overwrite refusal: a finished run, another command's run, a folder of other files, the input itself,
  the gallery (a larger budget, a hand-edited image, a manifest that is not ours), unless ``--overwrite``;
* concurrent writers: a directory another rftgrad process holds is refused, never shared;
* checkpoint integrity: a truncated or corrupt checkpoint names the file and the fix;
* numeric options: NaN, inf and out-of-range numbers are refused at parse time.

Every refusal also checks that nothing was written or changed (:func:`snapshot` before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rftgrad.cli import main
from rftgrad.configs import as_sets
from rftgrad.experiments.compare import TESTING

ROOT = Path(__file__).resolve().parents[1]
ROLLOUTS = ROOT / "examples" / "rollouts.jsonl"
FIGURES_DIR = ROOT / "paper_figures"
COMPARE = ["run", "compare", "--no-progress", *(arg for item in as_sets(TESTING) for arg in ("--set", item))]


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` with the sha256 of its bytes (and its mode): what "nothing changed" compares."""
    files = {}
    for root in roots:
        if root.is_file():
            files[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest() + oct(root.stat().st_mode)
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() + oct(path.stat().st_mode)
    return files


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str) -> str:
    """Run ``argv``: exit code 2, and stderr one line ``rftgrad: error: ...`` matching ``pattern``."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("rftgrad: error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err), err
    return err


def commands(out: Path | str, runs: Path) -> dict[str, list[str]]:
    """One cheap invocation of every command that writes, into ``out``."""
    return {
        "run": [*COMPARE, "--out", str(out)],
        "exact": ["exact", "--env", "bandit", "--policy", "tabular", "--out", str(out)],
        "check": ["check", "--examples", "2", "--no-progress", "--out", str(out)],
        "diagnose": ["diagnose", str(ROLLOUTS), "--out", str(out)],
        "figures": ["figures", "--tiny", "--only", "dynamics", "--no-progress", "--runs", str(runs), "--out", str(out)],
    }


COMMANDS = ("run", "exact", "check", "diagnose", "figures")


# ----------------------------------------------------------------------------------------------- filesystem
@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_path_that_is_a_file_is_refused_before_any_work(command, tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("the user's notes\n")
    before = snapshot(tmp_path)
    refused(capsys, commands(target, tmp_path / "runs")[command], r"taken\.txt is a file, not a directory; choose")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_path_that_cannot_be_created_is_one_line(command, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    before = snapshot(tmp_path)
    runs = tmp_path / "runs"
    refused(capsys, commands(tmp_path / "file" / "sub", runs)[command], r"cannot write to .*choose a writable")
    refused(capsys, commands(Path("/proc/rftgrad-out"), runs)[command], r"cannot write to /proc/rftgrad-out")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    refused(capsys, ["exact", "--env", "bandit", "--policy", "tabular", "--out", str(locked)], "cannot write to")
    assert list(locked.iterdir()) == []


def test_a_refused_run_leaves_no_folder_behind_not_even_a_parent(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default out is runs/compare: both folders would be new
    refused(capsys, [*COMPARE, "--set", "policy=tabular", "--set", "env=sequence", "--set", "vocab_size=50",
                     "--set", "length=6"], "past the enumeration limit")  # fmt: skip
    refused(capsys, [*COMPARE, "--out", "a/b/c", "--set", "temperature=1e-300"], "temperature=1e-300 is outside")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ("run", "exact", "check", "diagnose"))
def test_an_empty_out_is_an_error_not_the_default(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(capsys, commands("", tmp_path / "runs")[command], "empty string; give a directory")  # not Path("")
    assert list(tmp_path.iterdir()) == []


def test_exact_refuses_a_bad_out_before_computing(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["exact", "--env", "sequence", "--policy", "tabular", "--out", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().out == ""  # nothing was computed (the table is printed before writing)


# ------------------------------------------------------------------------------------------ overwrite refusal
def test_a_finished_run_is_refused_and_overwrite_replaces_it_with_the_same_records(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*COMPARE, "--out", str(out)]) == 0
    first = snapshot(out)
    capsys.readouterr()
    refused(capsys, [*COMPARE, "--out", str(out)], r"already holds this finished run; pass --overwrite")
    assert snapshot(out) == first
    refused(capsys, [*COMPARE, "--set", "trainer.lr=0.5", "--out", str(out)], r"finished `rftgrad run compare` run "
            r"with another config; choose another --out, or pass --overwrite")  # fmt: skip
    assert snapshot(out) == first
    (out / "my_notes.txt").write_text("kept\n")
    assert main([*COMPARE, "--out", str(out), "--overwrite"]) == 0
    again = snapshot(out)
    records = [name for name in first if name.endswith(".csv")]
    assert records and all(again[name] == first[name] for name in records)  # same config and seed: same bytes
    assert (out / "my_notes.txt").read_text() == "kept\n"  # --overwrite removes only the old run's files


def test_another_commands_run_is_refused_and_overwrite_leaves_none_of_its_files(tmp_path, capsys):
    out = tmp_path / "exact"
    assert main(["exact", "--env", "bandit", "--policy", "tabular", "--out", str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    refused(capsys, [*COMPARE, "--out", str(out)], r"holds a finished `rftgrad exact` run; choose another --out")
    assert snapshot(out) == before
    assert main([*COMPARE, "--out", str(out), "--overwrite"]) == 0
    assert not (out / "exact.csv").exists()  # the exact run's table is gone, not left beside the new run's
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "run compare" and record["finished"] is True and "score.json" in record["files"]


def test_a_folder_of_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("\\section{}")
    before = snapshot(tmp_path)
    refused(capsys, ["check", "--examples", "2", "--no-progress", "--out", str(tmp_path)],
            r"is not empty \(thesis\.tex\) and holds no rftgrad run; choose a new or empty --out")  # fmt: skip
    assert snapshot(tmp_path) == before


def test_diagnose_never_writes_over_its_input(tmp_path, capsys, monkeypatch):
    log = tmp_path / "prompts.csv"
    log.write_text("prompt,reward\na,1\na,0\nb,1\nb,1\n")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    refused(capsys, ["diagnose", "prompts.csv", "--out", "."], r"holds the input prompts\.csv.*choose another --out")
    refused(capsys, ["diagnose", "prompts.csv", "--out", ".", "--overwrite"], r"holds the input")
    assert snapshot(tmp_path) == before


def test_default_run_directories_are_numbered_instead_of_replaced(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(COMPARE) == 0
    assert main([*COMPARE, "--set", "trainer.lr=0.5"]) == 0
    assert main(COMPARE) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["compare", "compare-2", "compare-3"]
    lrs = [json.loads((tmp_path / "runs" / name / "config.json").read_text())["trainer"]["lr"]
           for name in ("compare", "compare-2")]  # fmt: skip
    assert lrs[0] != lrs[1]


def test_rerunning_an_interrupted_default_run_resumes_it_rather_than_numbering(tmp_path, capsys, monkeypatch):
    from rftgrad.experiments import default_run_dir, experiment_config, run_record
    from rftgrad.results import claim_run_dir, config_fingerprint

    monkeypatch.chdir(tmp_path)
    sets = as_sets(TESTING)
    config = experiment_config("compare", sets=sets)
    claim = claim_run_dir("runs/compare", "run compare", config_fingerprint(run_record("compare", config)))
    claim.release()  # as a run killed after claiming leaves it: run.json unfinished
    assert default_run_dir("compare", sets=sets) == Path("runs/compare")
    assert default_run_dir("compare", sets=[*sets, "trainer.lr=0.5"]) == Path("runs/compare-2")


# ------------------------------------------------------------------------------------------------- gallery
def tiny_figure(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    return ["figures", "--tiny", "--only", "dynamics", "--no-progress", "--runs", str(tmp_path / "runs"),
            "--figures-dir", str(FIGURES_DIR), "--out", str(out), *extra]  # fmt: skip


def test_figures_without_gallery_never_touch_the_checkouts_gallery(tmp_path, capsys, monkeypatch):
    before = snapshot(FIGURES_DIR)
    monkeypatch.chdir(tmp_path)  # an unrelated directory: the scripts come from the checkout, the images stay here
    assert main(["figures", "--tiny", "--only", "dynamics", "--no-progress"]) == 0
    assert (tmp_path / "runs" / "figures" / "tiny" / "gallery" / "dynamics.png").exists()
    assert snapshot(FIGURES_DIR) == before


def test_a_smaller_budget_or_a_hand_edited_image_is_not_replaced(tmp_path, capsys):
    out = tmp_path / "gallery"
    assert main(tiny_figure(tmp_path, out)) == 0
    record_path = out / "dynamics.json"
    record = json.loads(record_path.read_text())
    record["budget"] = "quick"  # as if drawn at the quick budget
    record_path.write_text(json.dumps(record))
    before = snapshot(out)
    capsys.readouterr()
    refused(capsys, tiny_figure(tmp_path, out), r"dynamics\.png was drawn at the quick budget and a tiny run would "
            r"replace it; pass --overwrite")  # fmt: skip
    assert snapshot(out) == before
    record["budget"] = "tiny"
    record_path.write_text(json.dumps(record))
    with (out / "dynamics.png").open("ab") as image:
        image.write(b"\0")  # edited by hand
    before = snapshot(out)
    refused(capsys, tiny_figure(tmp_path, out), r"dynamics\.png changed since rftgrad drew it")
    assert snapshot(out) == before
    assert main(tiny_figure(tmp_path, out, "--overwrite")) == 0
    assert snapshot(out) != before


def test_images_and_a_readme_rftgrad_did_not_write_are_not_replaced(tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "README.md").write_text("# My project\n")
    before = snapshot(out)
    refused(capsys, tiny_figure(tmp_path, out), r"README\.md is not rftgrad's figure manifest; pass --overwrite")
    assert snapshot(out) == before
    (out / "README.md").unlink()
    (out / "dynamics.png").write_bytes(b"\x89PNG my own figure")
    before = snapshot(out)
    refused(capsys, tiny_figure(tmp_path, out), r"dynamics\.png was not drawn by rftgrad figures")
    assert snapshot(out) == before
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.csv"))  # refused before running


def test_gallery_and_out_together_are_ambiguous(tmp_path, capsys):
    refused(capsys, [*tiny_figure(tmp_path, tmp_path / "x"), "--gallery"], "--gallery and --out both say")


# -------------------------------------------------------------------------------------- concurrent writers
def test_a_directory_held_by_another_rftgrad_process_is_refused(tmp_path, capsys):
    out = tmp_path / "shared"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from rftgrad.results import claim_output_dir
            claim = claim_output_dir({str(out)!r})
            print("held", flush=True)
            sys.stdin.readline()
            claim.release()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        err = refused(capsys, [*COMPARE, "--out", str(out)], r"in use by another rftgrad process \(pid \d+\); wait")
        assert f"pid {holder.pid})" in err
        assert sorted(p.name for p in out.iterdir()) == [".rftgrad.lock"]  # nothing of ours beside the holder's lock
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0 and list(out.iterdir()) == []  # the holder removed its lock file on release
    assert main([*COMPARE, "--out", str(out)]) == 0  # once released, the directory is free


def test_two_claims_in_one_process_exclude_each_other_and_a_released_lock_is_reusable(tmp_path):
    from rftgrad.errors import OutputError
    from rftgrad.results import claim_output_dir

    with claim_output_dir(tmp_path / "d"):
        with pytest.raises(OutputError, match="in use by another rftgrad process"):
            claim_output_dir(tmp_path / "d")
    with claim_output_dir(tmp_path / "d"):
        pass


def test_written_files_get_the_usual_mode_not_0600(tmp_path, capsys):
    out = tmp_path / "exact"
    assert main(["exact", "--env", "bandit", "--policy", "tabular", "--out", str(out)]) == 0
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in out.iterdir()}
    assert modes and set(modes.values()) == {0o666 & ~umask}, modes


# ------------------------------------------------------------------------------------- checkpoint integrity
def interrupted_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A compare run stopped after its first checkpoint: its directory and that checkpoint."""
    import rftgrad.finetune.trainer as trainer

    out = tmp_path / "run"
    original = trainer.write_checksummed  # the one function that writes a checkpoint
    calls = []

    def stop_after_first_checkpoint(path, data):
        original(path, data)
        calls.append(path)
        raise KeyboardInterrupt

    trainer.write_checksummed = stop_after_first_checkpoint
    try:
        assert main([*COMPARE, "--set", "trainer.checkpoint_every=1", "--out", str(out)]) == 130
    finally:
        trainer.write_checksummed = original
    capsys.readouterr()
    return out, Path(calls[0])


@pytest.mark.parametrize("damage", ["truncate", "flip", "legacy"])
def test_a_damaged_checkpoint_names_the_file_and_the_fix(damage, tmp_path, capsys):
    out, checkpoint = interrupted_compare(tmp_path, capsys)
    data = checkpoint.read_bytes()
    if damage == "truncate":
        checkpoint.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        checkpoint.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    else:  # a checkpoint of an older rftgrad: torch.save's bytes without the checksum line
        checkpoint.write_bytes(data.partition(b"\n")[2])
    before = snapshot(out)
    damaged = rf"checkpoint {re.escape(str(checkpoint))} (is truncated or corrupt|has no checksum).*delete it \(rm "
    refused(capsys, [*COMPARE, "--set", "trainer.checkpoint_every=1", "--out", str(out)], damaged)
    assert snapshot(out) == before
    checkpoint.unlink()  # the fix the message gives
    assert main([*COMPARE, "--set", "trainer.checkpoint_every=1", "--out", str(out)]) == 0


def test_checksummed_files_round_trip_and_refuse_damage(tmp_path):
    from rftgrad.errors import CheckpointError
    from rftgrad.results import read_checksummed, write_checksummed

    path = write_checksummed(tmp_path / "c.pt", b"payload\nwith newlines\n")
    assert read_checksummed(path) == b"payload\nwith newlines\n"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checksummed(path)


# ------------------------------------------------------------------------------------------ numeric options
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["exact", "--inputs", "0"], r"argument --inputs: takes an integer >= 1, got 0"),
        (["exact", "--temperature", "nan"], r"argument --temperature: takes a finite number, got 'nan'"),
        (["exact", "--temperature", "0"], r"argument --temperature: takes a number > 0, got 0"),
        (["exact", "--p0", "inf"], r"argument --p0: takes a finite number"),
        (["exact", "--layers", "0"], r"argument --layers: takes an integer >= 1"),
        (["exact", "--seed", "-1"], r"argument --seed: takes an integer >= 0"),
        (["exact", "--hidden", "64,0"], r"argument --hidden: takes an integer >= 1"),
        (["exact", "--env", "bandit", "--rewards", "1,nan"], r"argument --rewards: takes a finite number"),
        (
            ["exact", "--env", "orthonormal", "--policy", "tabular", "--length", "5"],
            r"--length not used by --env "
            r"orthonormal with --policy tabular; drop it",
        ),  # fmt: skip
        (["exact", "--policy", "tabular", "--layers", "3"], r"--layers not used by .*--policy tabular"),
        (["check", "--examples", "0"], r"argument --examples: takes an integer >= 1, got 0"),
        (["diagnose", "x.jsonl", "--group-sizes", "2,x"], r"argument --group-sizes: takes comma-separated numbers"),
        (["run", "compare", "--seeds", "0"], r"argument --seeds: takes an integer >= 1, got 0"),
        (["run", "compare", "--bogus"], r"unrecognized arguments: --bogus \(see `rftgrad --help`\)"),
    ],
)
def test_numeric_options_are_checked_at_parse_time(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(capsys, argv, message)
    assert list(tmp_path.iterdir()) == []


def test_a_closed_pipe_ends_quietly():
    """``rftgrad ... | head``: no BrokenPipeError when the reader stops early (``true`` stops before reading)."""
    script = f"{sys.executable} -m rftgrad.cli list | true"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_scores_are_strict_json_with_non_finite_numbers_as_null():
    """A censored time (inf) or an undefined correlation (nan) in a score is written as null, not as the
    NaN / Infinity that strict JSON readers refuse; numpy scalars become plain numbers."""
    import math

    import numpy as np

    from rftgrad.results import strict_json

    text = strict_json({"time": math.inf, "r": float("nan"), "rows": [np.float64(0.5), -math.inf], "n": np.int64(3)})
    assert json.loads(text) == {"time": None, "r": None, "rows": [0.5, None], "n": 3}
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")

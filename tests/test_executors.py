"""The executors (:mod:`rftgrad.executors`): serial and Ray give the same records, errors name their unit, and
``rftgrad figures`` / ``rftgrad check`` run their units on Ray; an interrupted check resumes without redoing
finished chunks. Ray runs as the session's local instance of 2 CPUs (``local_ray`` in conftest.py).
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rftgrad.cli import main
from rftgrad.errors import ConfigError
from rftgrad.executors import RayExecutor, SerialExecutor, Unit, UnitError, make_executor
from rftgrad.results import read_checksummed, read_run_record
from rftgrad.runtime import check_seed

FIGURES_DIR = Path(__file__).resolve().parents[1] / "paper_figures"
#: figures whose tiny runs take about a second each and whose records hold no timings
FAST_FIGURES = ("tightness", "controlled")
#: columns that are wall-clock timings, not results: they differ between any two runs
TIMINGS = {"seconds", "examples_per_s"}


def collect(executor, units):
    """``executor.map`` with the results gathered by label."""
    results = {}
    executor.map(units, lambda unit, value: results.__setitem__(unit.label, value), progress=False)
    return results


@pytest.mark.parametrize("name", ["serial", "ray"])
def test_units_return_their_values_and_an_rftgrad_error_names_its_unit(name, request):
    if name == "ray":
        request.getfixturevalue("local_ray")
    executor = make_executor(name)
    units = [Unit("good 3", check_seed, (3,)), Unit("bad", check_seed, (-1,)), Unit("good 5", check_seed, (5,))]
    results = {}
    with pytest.raises(UnitError, match=r"^bad: seed") as error:
        executor.map(units, lambda unit, value: results.__setitem__(unit.label, value), progress=False)
    assert "\n" not in str(error.value)
    assert results == {"good 3": 3, "good 5": 5}  # the other units finished and were handed back


def test_a_bug_in_a_ray_unit_is_raised_with_its_type_after_the_others_finish(local_ray):
    results = {}
    units = [Unit("sqrt of -1", math.sqrt, (-1.0,)), Unit("sqrt of 4", math.sqrt, (4.0,))]
    with pytest.raises(ValueError, match="math domain error"):  # Ray's error is also of the cause's type
        RayExecutor().map(units, lambda unit, value: results.__setitem__(unit.label, value), progress=False)
    assert results == {"sqrt of 4": 2.0}


def test_ray_runs_the_largest_unit_first_and_serial_keeps_the_order(local_ray):
    units = [Unit(f"unit {cost}", check_seed, (cost,), cost=cost) for cost in (1, 3, 2)]
    assert list(collect(SerialExecutor(), units)) == ["unit 1", "unit 3", "unit 2"]
    assert collect(RayExecutor(), units) == {"unit 1": 1, "unit 3": 3, "unit 2": 2}


def test_executor_choices_are_checked(monkeypatch):
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--address names a Ray cluster: add --executor ray"):
        make_executor("serial", address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray sees: import fails
    with pytest.raises(
        ConfigError, match=r'needs Ray, which is not installed: install Ray with pip install -e "\.\[ray\]"'
    ):
        make_executor("ray")


def test_figures_without_ray_installed_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    args = ["figures", "--tiny", "--only", "tightness", "--figures-dir", str(FIGURES_DIR), "--executor", "ray"]
    assert main([*args, "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rftgrad: error: --executor ray needs Ray") and "\n" not in err
    assert not (tmp_path / "runs").exists()


def csv_bytes(folder: Path) -> dict[str, bytes]:
    """Every CSV below ``folder``, by path relative to it."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*.csv"))}


def test_figures_on_ray_write_the_same_runs_and_key_numbers_as_serial(tmp_path, local_ray, capsys):
    records = {}
    for executor in ("serial", "ray"):
        base = tmp_path / executor
        args = ["figures", "--tiny", "--only", *FAST_FIGURES, "--figures-dir", str(FIGURES_DIR), "--no-progress"]
        assert main([*args, "--out", str(base / "out"), "--runs", str(base / "runs"), "--executor", executor]) == 0
        assert "wall time" in capsys.readouterr().out
        records[executor] = csv_bytes(base / "runs")
        for name in FAST_FIGURES:
            record = pd.read_json(base / "out" / f"{name}.json", typ="series")
            assert record["executor"] == executor and (base / "out" / f"{name}.png").stat().st_size > 10_000
            records[executor][f"{name} key number"] = record["key_number"]
        runs = [path for path in (base / "runs" / "tiny").iterdir()]
        assert len(runs) == len(FAST_FIGURES) and all(read_run_record(run).finished for run in runs)
        assert not any(run.joinpath("checkpoints").exists() for run in runs)
    assert len(records["serial"]) > 2 * len(FAST_FIGURES)  # CSVs of both runs, and the key numbers
    assert records["ray"] == records["serial"]  # byte for byte: the same float64 records


def check_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """``check_rows`` and ``check_summary`` of a ``rftgrad check --out`` folder, timing columns dropped."""
    tables = {name: pd.read_csv(folder / f"{name}.csv") for name in ("check_rows", "check_summary")}
    return {name: frame.drop(columns=[c for c in frame.columns if c in TIMINGS]) for name, frame in tables.items()}


def test_check_on_ray_in_chunks_gives_the_rows_of_one_serial_pass(tmp_path, local_ray, capsys):
    common = ["check", "--examples", "60", "--seed", "3", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "serial")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray", "--chunk-size", "7"]) == 0
    serial, on_ray = check_tables(tmp_path / "serial"), check_tables(tmp_path / "ray")
    assert len(serial["check_rows"]) >= 60 and list(on_ray["check_rows"]["example"].unique()) == list(range(60))
    for name in serial:
        pd.testing.assert_frame_equal(on_ray[name], serial[name], check_exact=True)
    assert not (tmp_path / "ray" / "checkpoints").exists()  # the chunks are merged and removed at the end


def interruptible() -> None:
    """In a child before it starts: Ctrl-C's default action, as in a terminal. A test run started in the
    background by a non-interactive shell ignores SIGINT, and a Python started with it ignored keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_check_resumes_and_does_not_redo_finished_chunks(tmp_path):
    out = tmp_path / "check"
    command = [sys.executable, "-m", "rftgrad.cli", "check", "--examples", "240", "--seed", "1", "--out", str(out)]
    command += ["--chunk-size", "20", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    )
    deadline = time.monotonic() + 120
    while len(list((out / "checkpoints").glob("rows-*.pickle"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    kept = {path.name: pickle.loads(read_checksummed(path)) for path in (out / "checkpoints").glob("rows-*.pickle")}
    assert 2 <= len(kept) < 12  # interrupted after two chunks of twelve, before the last
    assert not (out / "check_rows.csv").exists() and not read_run_record(out).finished
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    rows = pd.read_csv(out / "check_rows.csv")  # pandas 3 parses floats exactly
    assert read_run_record(out).finished and not (out / "checkpoints").exists()
    for frame in kept.values():  # a redone chunk would have new timings: these are the first run's, bit for bit
        again = rows[rows["example"].isin(frame["example"])].reset_index(drop=True)
        assert again["seconds"].tolist() == frame["seconds"].tolist()
    assert sorted(rows["example"].unique()) == list(range(240))

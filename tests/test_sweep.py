"""`rftgrad sweep`: serial and Ray give the same bytes as plain runs; an interrupted driver and a killed worker
lose nothing and redo nothing finished; a bad --grid exits 2 before anything is written or started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from rftgrad.cli import main
from rftgrad.configs import as_sets
from rftgrad.experiments import claim_planned_run
from rftgrad.experiments.compare.config import TESTING
from rftgrad.results import claim_run_dir, read_run_record
from rftgrad.sweep import MAX_PANELS, flatten_score, plan_sweep, sweep_figure
from tests.experiments.cli_args import set_args
from tests.experiments.test_theorem1_experiments import assert_valid_png
from tests.test_executors import interruptible

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--grid", "lr=0.01,0.1", "--grid", "vocab_size=8,10"]
#: about a second a unit (they outlast the SIGINT), for the interruption tests; lr values unique to these labels
SLOW = {"trainer": {"arms": ("rft:600",), "seeds": 1, "eval_every": 300}}
SLOW_GRID = ["--grid", "lr=0.0123,0.0457", "--grid", "vocab_size=8,10"]
POINTS = ("000", "001", "002", "003")


def sweep_args(out: Path, budget: dict = TESTING, grid: list[str] = GRID, *extra: str) -> list[str]:
    return ["sweep", "compare", "--out", str(out), "--no-progress", *set_args(budget), *grid, *extra]


def record_files(out: Path) -> dict[str, bytes]:
    """Every CSV of a sweep directory (its points' records and sweep.csv), by relative path."""
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("*.csv"))}


@pytest.fixture(scope="module")
def ray_cluster(local_ray):
    """The session's local Ray (conftest.py): its address, for subprocess drivers to join."""
    return local_ray


@pytest.fixture(scope="module")
def tiny_serial(tmp_path_factory):
    """A serial sweep of the test budget over GRID."""
    out = tmp_path_factory.mktemp("tiny") / "serial"
    assert main(sweep_args(out)) == 0
    return out


@pytest.fixture(scope="module")
def slow_serial(tmp_path_factory):
    """The serial sweep of the slow budget: the reference of the interruption tests."""
    out = tmp_path_factory.mktemp("slow") / "serial"
    assert main(sweep_args(out, SLOW, SLOW_GRID)) == 0
    return record_files(out)


# ----------------------------------------------------------------------------- bad grids (before Ray starts)
BAD_GRIDS = [
    (["--grid", "nosuchkey=1,2"], "nosuchkey"),
    (["--grid", "trainer.lr=abc"], "trainer.lr=abc"),
    (["--grid", "trainer.lr=0.1,-1"], "trainer.lr=-1"),
    (["--grid", "lr"], "'lr'"),
    (["--grid", "lr="], "lr"),
    (["--grid", "lr=0.1,,0.2"], "lr"),
    (["--grid", "lr=0.1,0.1"], "lr"),
    (["--grid", "lr=0.1", "--grid", "trainer.lr=0.2"], "trainer.lr"),
    (["--grid", "lr=0.1,0.2", "--set", "trainer.lr=0.3"], "trainer.lr"),
    (["--grid", "seeds=1,2", "--seeds", "3"], "trainer.seeds"),
]


@pytest.mark.parametrize(("grid", "named"), BAD_GRIDS)
def test_bad_grid_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, grid, named):
    out = tmp_path / "sweep"
    code = main(["sweep", "compare", "--out", str(out), "--no-progress", "--executor", "ray", *grid])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("rftgrad: error: ") and named in lines[0], lines
    assert not out.exists()


def test_bad_grids_are_refused_before_ray_starts(tmp_path):
    """In a fresh interpreter (this one may hold the session's Ray): every bad grid with --executor ray exits 2
    and Ray is never initialised, so no task could have run."""
    script = (
        "import json, sys, ray\n"
        "from rftgrad.cli import main\n"
        "for index, grid in enumerate(json.loads(sys.argv[1])):\n"
        "    out = sys.argv[2] + f'/sweep{index}'\n"
        "    code = main(['sweep', 'compare', '--out', out, '--no-progress', '--executor', 'ray', *grid])\n"
        "    print(code, ray.is_initialized())\n"
    )
    grids = json.dumps([grid for grid, _ in BAD_GRIDS])
    done = subprocess.run([sys.executable, "-c", script, grids, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:-1] == ["2 False"] * len(BAD_GRIDS)
    assert list(tmp_path.iterdir()) == []


def test_variant_is_not_a_grid_key(tmp_path, capsys):
    code = main(["sweep", "controlled", "--out", str(tmp_path / "s"), "--grid", "variant=a,b"])
    assert code == 2 and "one sweep per variant" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_categorical_first_key_gets_one_tick_per_value_and_one_line_per_other_combination():
    table = pd.DataFrame({"point": ["000", "001", "002", "003"], "estimator": ["grpo", "grpo", "rloo", "rloo"],
                          "seed": ["0", "1", "0", "1"], "score": [1.0, 2.0, 3.0, 5.0], "same": [1.0] * 4})  # fmt: skip
    figure = sweep_figure(table, {"estimator": ("grpo", "rloo"), "seed": ("0", "1")}, ["score", "same"])
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert len(visible) == 1  # "same" does not vary: no panel
    assert [tick.get_text() for tick in visible[0].get_xticklabels()] == ["grpo", "rloo"]
    assert [line.get_label() for line in visible[0].get_lines()] == ["seed=0", "seed=1"]
    assert list(visible[0].get_lines()[1].get_ydata()) == [2.0, 5.0]


# ----------------------------------------------------------------------------- serial and Ray, same bytes
def test_serial_and_ray_sweeps_write_the_same_bytes_as_plain_runs(tmp_path, tiny_serial, ray_cluster, capsys):
    serial, on_ray = tiny_serial, tmp_path / "ray"
    assert main([*sweep_args(on_ray), "--executor", "ray"]) == 0
    files = record_files(serial)
    assert set(files) == {"sweep.csv"} | {f"points/{p}/{name}.csv" for p in POINTS for name in ("records", "replicas")}
    assert record_files(on_ray) == files
    # point 002 is lr=0.1, vocab_size=8: a plain `rftgrad run` of those settings writes the same records
    plain = tmp_path / "plain"
    assert main(["run", "compare", "--out", str(plain), "--no-progress", *set_args(TESTING),
                 "--set", "trainer.lr=0.1", "--set", "vocab_size=8"]) == 0  # fmt: skip
    for name in ("records.csv", "replicas.csv", "score.json", "config.json", "config.toml"):
        assert (serial / "points" / "002" / name).read_bytes() == (plain / name).read_bytes(), name
    assert not list((serial / "points").glob("*/*.png"))  # figures=False
    record = json.loads((on_ray / "sweep.json").read_text())
    assert record["executor"] == "ray" and record["config"]["grid"] == {"trainer.lr": ["0.01", "0.1"],
                                                                         "vocab_size": ["8", "10"]}  # fmt: skip
    assert record["points"]["001"] == {"trainer.lr": "0.01", "vocab_size": "10"}
    assert record["environment"]["packages"]["torch"] and "git_commit" in record
    assert read_run_record(on_ray).finished and read_run_record(on_ray).command == "sweep compare"
    # the same command again is refused, as `rftgrad run` refuses a finished run, and changes nothing
    capsys.readouterr()
    assert main(sweep_args(serial)) == 2
    assert "already holds this finished run" in capsys.readouterr().err
    assert record_files(serial) == files


def test_sweep_csv_columns_and_summary_figure(tiny_serial):
    out = tiny_serial
    table = pd.read_csv(out / "sweep.csv", dtype={"point": str})
    score = json.loads((out / "points" / "000" / "score.json").read_text())
    assert list(table.columns) == ["point", "trainer.lr", "vocab_size", *flatten_score(score)]
    assert list(table["point"]) == list(POINTS)
    assert list(zip(table["trainer.lr"], table["vocab_size"], strict=True)) == [(0.01, 8), (0.01, 10), (0.1, 8),
                                                                                (0.1, 10)]  # fmt: skip
    assert table.loc[3, "reward_mean.all.rft:20"] == score_of(out, "003")["reward_mean"]["all"]["rft:20"]
    assert_valid_png(out / "sweep.png")
    assert (out / "sweep.pdf").stat().st_size > 0
    varying = [c for c in table.columns[3:] if table[c].nunique() > 1]
    grid = {"trainer.lr": ("0.01", "0.1"), "vocab_size": ("8", "10")}
    figure = sweep_figure(table.astype(dict.fromkeys(grid, str)), grid, list(table.columns[3:]))
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in visible] == varying[:MAX_PANELS]
    for axis in visible:
        assert [line.get_label() for line in axis.get_lines()] == ["vocab_size=8", "vocab_size=10"]
        assert list(axis.get_lines()[0].get_xdata()) == [0.01, 0.1]


def score_of(out: Path, point: str) -> dict:
    return json.loads((out / "points" / point / "score.json").read_text())


def test_a_failing_point_leaves_the_others_finished_and_exits_2(tmp_path, capsys):
    """An interrupted sweep whose point 001 left a corrupt checkpoint: that point fails mid-run (CheckpointError),
    the other three finish, sweep.csv holds them, the sweep stays unfinished and the error names the point."""
    out = tmp_path / "sweep"
    plan = plan_sweep("compare", [GRID[1], GRID[3]], out, sets=as_sets(TESTING))
    claim_run_dir(out, "sweep compare", plan.fingerprint, resumable=True).release()
    claim_planned_run(plan.points[1].plan).release()  # an unfinished run of point 001 ...
    (out / "points" / "001" / "checkpoints").mkdir()
    (out / "points" / "001" / "checkpoints" / "arm0.pt").write_bytes(b"not a checkpoint")  # ... with a bad file
    assert main(sweep_args(out)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rftgrad: error: point 001 ") and "checkpoint" in lines[0], lines
    assert finished_points(out) == ["000", "002", "003"]
    assert list(pd.read_csv(out / "sweep.csv", dtype={"point": str})["point"]) == ["000", "002", "003"]
    assert (out / "sweep.png").is_file() and not read_run_record(out).finished


# ----------------------------------------------------------------------------- interruptions
def driver(out: Path, address: str, log: Path) -> subprocess.Popen:
    """A subprocess `rftgrad sweep` of the slow budget on the test's Ray cluster, its output into ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "rftgrad.cli", *sweep_args(out, SLOW, SLOW_GRID), "--executor", "ray",
               "--address", address]  # fmt: skip
    with log.open("w") as sink:
        return subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible
        )


def finished_points(out: Path) -> list[str]:
    found = []
    for point in POINTS:
        record = read_run_record(out / "points" / point) if (out / "points" / point).is_dir() else None
        if record is not None and record.finished:
            found.append(point)
    return found


def interrupt(process: subprocess.Popen, log: Path) -> str:
    """Ctrl-C as a user presses it: SIGINT, and again if after a second the driver neither said
    ``rftgrad: interrupted`` nor exited (at most 5 times): Ray 2.60's driver now and then loses a SIGINT (about
    one run in five here; it then finishes every point and exits 0). Returns the driver's output."""
    for _ in range(5):
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and process.poll() is None and "interrupted" not in log.read_text():
            time.sleep(0.02)
        if process.poll() is not None or "interrupted" in log.read_text():
            break
    process.wait(timeout=60)
    return log.read_text()


def test_interrupted_driver_keeps_finished_points_and_the_rerun_finishes_the_rest(
    tmp_path, ray_cluster, slow_serial, capsys
):
    out = tmp_path / "sweep"
    log = tmp_path / "driver.log"
    process = driver(out, ray_cluster, log)
    deadline = time.monotonic() + 60
    while not finished_points(out) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    done = finished_points(out)
    assert done and process.poll() is None, "no point finished while the driver ran"
    output = interrupt(process, log)
    assert process.returncode == 130, output
    done = finished_points(out)
    assert len(done) < len(POINTS), "every point finished before the interruption: make the units slower"
    kept = {
        path: (path.stat().st_mtime_ns, path.stat().st_ino) for p in done for path in (out / "points" / p).glob("*.csv")
    }
    capsys.readouterr()
    assert main([*sweep_args(out, SLOW, SLOW_GRID), "--executor", "ray"]) == 0  # the same command, in this process
    assert f"4 points: {len(done)} already finished, {4 - len(done)} computed" in capsys.readouterr().out
    assert {path: (path.stat().st_mtime_ns, path.stat().st_ino) for path in kept} == kept
    assert record_files(out) == slow_serial


def unit_processes(label_part: str) -> list[int]:
    """The pids of Ray workers whose process title (``ray::<task name>``) names a unit containing ``label_part``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if title.startswith("ray::point ") and label_part in title:
                found.append(int(entry.name))
    return found


def test_a_worker_killed_mid_unit_is_retried_and_the_records_match_serial(tmp_path, ray_cluster, slow_serial):
    out = tmp_path / "sweep"
    codes = []
    thread = threading.Thread(
        target=lambda: codes.append(main([*sweep_args(out, SLOW, SLOW_GRID), "--executor", "ray"]))
    )
    thread.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        pids = unit_processes("point 000 trainer.lr=0.0123 vocab_size=8")
        if pids and (out / "points" / "000" / "checkpoints").is_dir() and "000" not in finished_points(out):
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
            assert "000" not in finished_points(out)  # killed while its unit was unfinished
        time.sleep(0.02)
    thread.join(timeout=120)
    assert killed is not None, "no worker running point 000 was found"
    assert not Path(f"/proc/{killed}").exists() or "zombie" in Path(f"/proc/{killed}/status").read_text()
    assert codes == [0]
    assert record_files(out) == slow_serial

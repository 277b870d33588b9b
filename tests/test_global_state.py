"""Library code leaves global state alone: matplotlib backend, rcParams, seaborn style, torch threads and dtype.

:func:`unchanged_plot_state` is the checker: it snapshots the backend, a copy of ``matplotlib.rcParams``,
seaborn's current axes style and plotting context and the single-letter colour codes, and raises
:class:`PlotStateChanged` naming what differs after the block. Each library path is run through it, and a
deliberately broken function (a global seaborn theme) shows that it catches a change.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import pytest
import seaborn as sns
from matplotlib.colors import to_hex

from rftgrad.configs import as_sets

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("envs", "models", "theory", "finetune", "experiments", "diagnose", "plotting", "gallery", "cli")


class PlotStateChanged(AssertionError):
    """A block changed matplotlib's backend, rcParams or the seaborn style."""


def plot_state(backend: bool = True) -> dict[str, Any]:
    """The global plotting state: backend (if ``backend``), rcParams (without the backend, and without
    ``backend_fallback`` unless ``backend``: ``matplotlib.use`` clears it), style and colour codes."""
    backend_keys = {"backend"} if backend else {"backend", "backend_fallback"}
    state: dict[str, Any] = {
        "rcParams": {key: value for key, value in dict(matplotlib.rcParams).items() if key not in backend_keys},
        "seaborn axes_style": dict(sns.axes_style()),
        "seaborn plotting_context": dict(sns.plotting_context()),
        "colour codes": {code: to_hex(code) for code in "bgrcmyk"},
    }
    if backend:
        state["backend"] = matplotlib.get_backend()
    return state


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed between two :func:`plot_state` snapshots, one line per key."""
    lines = []
    for part, old in before.items():
        new = after[part]
        if isinstance(old, dict):
            lines += [f"{part}[{key!r}]: {old.get(key)!r} -> {new.get(key)!r}" for key in old.keys() | new.keys()
                      if old.get(key) != new.get(key)]  # fmt: skip
        elif old != new:
            lines.append(f"{part}: {old!r} -> {new!r}")
    return sorted(lines)


@contextmanager
def unchanged_plot_state(backend: bool = True) -> Iterator[None]:
    """Raise :class:`PlotStateChanged` if the block changes the global plotting state (the backend too unless
    ``backend=False``: the ``rftgrad`` command line may choose one); the state is restored either way."""
    matplotlib.get_backend()  # resolve a lazily chosen backend before the snapshot
    before = plot_state(backend)
    saved = matplotlib.rcParams.copy()
    try:
        yield
        changed = differences(before, plot_state(backend))
    finally:
        matplotlib.rcParams.update(saved)
    if changed:
        raise PlotStateChanged("global plotting state changed:\n" + "\n".join(changed[:20]))


def test_the_checker_catches_a_global_theme_an_rc_change_and_a_backend_switch():
    def careless() -> None:
        sns.set_theme(style="whitegrid", context="paper")

    with pytest.raises(PlotStateChanged, match="rcParams"), unchanged_plot_state():
        careless()
    with pytest.raises(PlotStateChanged, match="lines.linewidth"), unchanged_plot_state():
        matplotlib.rcParams["lines.linewidth"] = 7.0
    current = matplotlib.get_backend()
    other = "pdf" if current.lower() != "pdf" else "svg"
    try:
        with pytest.raises(PlotStateChanged, match="backend"), unchanged_plot_state():
            matplotlib.use(other)
    finally:
        matplotlib.use(current)
    with unchanged_plot_state():  # and a clean block passes
        pass


def test_importing_rftgrad_and_every_subpackage_changes_nothing():
    code = (
        "import importlib, json, matplotlib, seaborn as sns\n"
        "backend = matplotlib.get_backend()\n"
        "before = (dict(matplotlib.rcParams), dict(sns.axes_style()))\n"
        f"for name in ('rftgrad', *('rftgrad.' + n for n in {SUBPACKAGES!r})):\n"
        "    importlib.import_module(name)\n"
        "import rftgrad.experiments, pkgutil\n"
        "for info in pkgutil.iter_modules(rftgrad.experiments.__path__):\n"
        "    importlib.import_module('rftgrad.experiments.' + info.name)\n"
        "assert dict(matplotlib.rcParams) == before[0], 'rcParams changed on import'\n"
        "assert matplotlib.get_backend() == backend, 'backend changed on import'\n"
        "assert dict(sns.axes_style()) == before[1], 'seaborn style changed on import'\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "MPLBACKEND", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory) -> Path:
    """A finished ``compare`` run at its TESTING budget, without figures."""
    from rftgrad.experiments.base import run_experiment
    from rftgrad.experiments.compare import TESTING

    out = tmp_path_factory.mktemp("state") / "compare"
    run_experiment("compare", out, sets=as_sets(TESTING), progress=False, figures=False)
    return out


def test_make_figures_on_real_records_changes_nothing(compare_run, tmp_path):
    from rftgrad.experiments.base import analyse

    with unchanged_plot_state():
        _, _, paths = analyse("compare", compare_run)
    assert [path.name for path in paths] == ["compare.png"] and paths[0].with_suffix(".pdf").exists()


def test_a_paper_figure_through_the_api_and_the_cli_changes_nothing(tmp_path, monkeypatch):
    from rftgrad.cli import main
    from rftgrad.gallery import load_figures, make_figure

    monkeypatch.setenv("RFTGRAD_CACHE", str(tmp_path / "cache"))
    figure = load_figures(ROOT / "paper_figures")["controlled"]
    with unchanged_plot_state():  # the library path: the backend too
        result = make_figure(figure, "tiny", tmp_path / "api", tmp_path / "runs", progress=False)
    assert result.path.exists() and result.key_number
    args = ["figures", "--tiny", "--only", "controlled", "--figures-dir", str(ROOT / "paper_figures")]
    with unchanged_plot_state(backend=False):  # the command line may choose a file backend
        assert main([*args, "--out", str(tmp_path / "cli"), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    assert (tmp_path / "cli" / "controlled.png").exists()


def test_diagnose_changes_nothing(tmp_path):
    from rftgrad.diagnose import diagnose

    with unchanged_plot_state():
        _, written = diagnose(ROOT / "examples" / "rollouts.jsonl", tmp_path / "out")
    assert any(path.name == "mean_vs_std.png" for path in written)


def test_figures_save_without_a_display_on_the_default_backend(compare_run, tmp_path):
    """A fresh interpreter with no DISPLAY and no MPLBACKEND: whatever backend matplotlib picks, make_figures
    writes its files and leaves that backend as it was."""
    code = (
        "import sys, matplotlib\n"
        "from rftgrad.experiments.base import analyse\n"
        "before = matplotlib.get_backend()\n"
        "_, _, paths = analyse('compare', sys.argv[1])\n"
        "assert matplotlib.get_backend() == before, (before, matplotlib.get_backend())\n"
        "assert all(p.exists() and p.with_suffix('.pdf').exists() for p in paths), paths\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "MPLBACKEND", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", code, str(compare_run)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


# ----------------------------------------------------------------------------- torch's global state
class TorchStateChanged(AssertionError):
    """A block changed torch's intra-op thread count or its default dtype."""


@contextmanager
def unchanged_torch_state(threads: int = 2) -> Iterator[None]:
    """Run the block with ``threads`` torch threads; raise :class:`TorchStateChanged` if it leaves another
    count or another default dtype behind (both are restored either way)."""
    import torch

    previous = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(threads)
    try:
        yield
        after = torch.get_num_threads(), torch.get_default_dtype()
    finally:
        torch.set_num_threads(previous[0])
        torch.set_default_dtype(previous[1])
    if after != (threads, previous[1]):
        raise TorchStateChanged(f"torch state changed: threads {threads} -> {after[0]}, dtype -> {after[1]}")


def test_the_torch_checker_catches_a_thread_count_or_dtype_left_changed():
    import torch

    with pytest.raises(TorchStateChanged, match="threads 2 -> 1"), unchanged_torch_state(2):
        torch.set_num_threads(1)  # what pretraining did for the whole process, without restoring
    with pytest.raises(TorchStateChanged, match="dtype"), unchanged_torch_state(2):
        torch.set_default_dtype(torch.float64)
    with unchanged_torch_state(2):
        pass


def test_pretraining_and_experiments_leave_torch_threads_and_dtype_alone(tmp_path, monkeypatch):
    """The cached transformer pretrains on one thread (``torch_threads(1)``), then restores the caller's count;
    a whole experiment (here the prevalence experiment's pretraining path and a compare run) changes nothing."""
    import torch

    import rftgrad.finetune.pretraining as pretraining
    from rftgrad.envs import language_env, pretraining_mixture
    from rftgrad.experiments.base import run_experiment
    from rftgrad.experiments.compare import TESTING

    env = language_env(prompts_per_task=2, vocab_size=3, length=2, seed=0)
    mixture = pretraining_mixture(env, seed=0)
    seen = []
    real_pretrain = pretraining.pretrain

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())  # the count while the weights are fitted
        return real_pretrain(*args, **kwargs)

    monkeypatch.setattr(pretraining, "pretrain", spy)
    with unchanged_torch_state(2):
        pretraining.pretrained_transformer(env, mixture, steps=3, d_model=8, num_layers=1, cache_dir=tmp_path / "c")
    assert seen == [1]  # pretraining itself ran on one thread
    with unchanged_torch_state(2):
        run_experiment("compare", tmp_path / "run", sets=as_sets(TESTING), progress=False, figures=False)

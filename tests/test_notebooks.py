"""The course notebooks (notebooks/): built from notebooks/build.py, stored without outputs, and they run.

Every lesson is executed twice, headless, with nbclient and the ``python3`` kernel, in ``notebooks/``
and with ``RFTGRAD_NOTEBOOK_QUICK=1`` (small budgets):

* the **solutions** notebook runs every cell; any error fails the test;
* the **student** notebook runs every cell too; only the check cells (tag ``check``) may raise, and each
  of them must raise an ``AssertionError``: unsolved, its placeholder fails the check (so a check is never
  vacuous). An error anywhere else, exercise cells (tag ``exercise``) included, fails the test.

A missing ``nbclient``/``nbformat`` or ``python3`` kernel fails the tests with the install line (``.[dev]``
installs ``ipykernel``); it does not skip them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
INSTALL = 'pip install -c constraints.txt -e ".[dev]"'
#: seconds one cell may run before the kernel is interrupted and the test fails.
CELL_TIMEOUT = 120
#: top-level modules a notebook may import: rftgrad, the scientific stack it installs, the standard library.
ALLOWED_IMPORTS = {
    "rftgrad", "numpy", "torch", "matplotlib", "pandas", "scipy", "sympy", "IPython", "ipywidgets", "hypothesis",
    "dataclasses", "json", "math", "os", "pathlib", "tempfile",
}  # fmt: skip

try:
    import nbformat
    from nbclient import NotebookClient
except ImportError as error:  # pragma: no cover - only without the dev extra
    nbformat = None
    IMPORT_ERROR: str | None = f"{error}; install the notebook tools: {INSTALL}"
else:
    IMPORT_ERROR = None


def load_build() -> ModuleType:
    """notebooks/build.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("rftgrad_notebook_build", NOTEBOOKS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def require_tools() -> None:
    if IMPORT_ERROR is not None:
        pytest.fail(IMPORT_ERROR)


@pytest.fixture(scope="module")
def build() -> ModuleType:
    require_tools()
    return load_build()


def lesson_slugs() -> list[str]:
    return sorted(path.stem for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if not path.stem.endswith("_solutions"))


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in read(path).cells if cell.cell_type == "code"]


# ----------------------------------------------------------------------------- static checks


def test_committed_notebooks_are_what_build_py_writes(build):
    texts = build.notebook_texts()
    assert {path.name for path in texts} == {path.name for path in NOTEBOOKS.glob("*.ipynb")}, (
        "notebooks/ holds notebooks that build.py does not write, or misses some"
    )
    stale = [path.name for path, text in texts.items() if path.read_text(encoding="utf-8") != text]
    assert not stale, f"out of date, run `python notebooks/build.py`: {stale}"
    assert len(lesson_slugs()) == len(build.LESSONS) == 5


def test_notebooks_are_stored_without_outputs():
    require_tools()
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = read(path)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: a cell has outputs"
            assert "execution" not in cell.metadata, f"{path.name}: a cell keeps execution timings"


@pytest.mark.parametrize("slug", lesson_slugs())
def test_every_lesson_ends_with_2_to_4_exercises_each_followed_by_its_check(slug):
    require_tools()
    for name in (slug, f"{slug}_solutions"):
        cells = read(NOTEBOOKS / f"{name}.ipynb").cells
        exercise_at = [i for i, cell in enumerate(cells) if "exercise" in tags(cell)]
        assert 2 <= len(exercise_at) <= 4, f"{name}: {len(exercise_at)} exercises"
        for index in exercise_at:
            assert cells[index].cell_type == "code" and "check" in tags(cells[index + 1]), f"{name}: cell {index}"
            assert "assert" in cells[index + 1].source
        assert sum("check" in tags(cell) for cell in cells) == len(exercise_at)
        later = cells[exercise_at[0] :]
        assert all(cell.cell_type == "markdown" or tags(cell) for cell in later), "the exercises end the lesson"
    student = [c.source for c in code_cells(NOTEBOOKS / f"{slug}.ipynb") if "exercise" in tags(c)]
    solved = [c.source for c in code_cells(NOTEBOOKS / f"{slug}_solutions.ipynb") if "exercise" in tags(c)]
    assert all("# TODO" in source and "= None" in source for source in student)
    assert all("# TODO" not in source for source in solved)


def python_source(cell_source: str) -> str:
    """A code cell as plain Python (IPython turns magics such as ``%matplotlib inline`` into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def rftgrad_function_names() -> set[str]:
    """Names of the public functions and classes defined anywhere in rftgrad (imports every module)."""
    import rftgrad

    names = set()
    for info in pkgutil.walk_packages(rftgrad.__path__, "rftgrad."):
        for name, value in vars(importlib.import_module(info.name)).items():
            if inspect.isfunction(value) or inspect.isclass(value):
                if not name.startswith("_") and value.__module__.startswith("rftgrad"):
                    names.add(name)
    return names


@pytest.mark.parametrize("slug", lesson_slugs())
def test_lessons_use_rftgrads_api_and_standard_libraries_only(slug, build):
    """Each lesson imports rftgrad, reads QUICK in its first code cell, imports only allowed modules and
    defines no function or class under the name of one of rftgrad's (a copy of library code would)."""
    public = rftgrad_function_names()
    for name in (slug, f"{slug}_solutions"):
        cells = code_cells(NOTEBOOKS / f"{name}.ipynb")
        assert build.QUICK_LINE in cells[0].source, f"{name}: the first code cell must set QUICK"
        imported, defined = set(), set()
        for cell in cells:
            for node in ast.walk(ast.parse(python_source(cell.source))):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    imported.add((node.module or "").split(".")[0])
                elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                    defined.add(node.name)
        assert "rftgrad" in imported, f"{name} does not import rftgrad"
        assert imported <= ALLOWED_IMPORTS, f"{name} imports {sorted(imported - ALLOWED_IMPORTS)}"
        assert not defined & public, f"{name} redefines rftgrad's {sorted(defined & public)}"


def test_readme_gives_order_times_and_install_lines(build):
    readme = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    positions = [readme.find(f"{lesson.slug}.ipynb") for lesson in build.LESSONS]
    assert all(position >= 0 for position in positions) and positions == sorted(positions), "lessons in order"
    for lesson in build.LESSONS:
        assert re.search(rf"{lesson.slug}\.ipynb.*\|\s*{lesson.minutes} min", readme), f"time of {lesson.slug}"
    assert 'pip install -c constraints.txt -e ".[notebooks]"' in readme
    assert "RFTGRAD_NOTEBOOK_QUICK" in readme


# ----------------------------------------------------------------------------- execution


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """The environment the kernels inherit: small budgets, no display, one thread unless told otherwise,
    Hypothesis's cache (lesson 2) in a temporary folder rather than notebooks/.hypothesis."""
    require_tools()
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail(f"no `python3` Jupyter kernel; install ipykernel: {INSTALL}")
    saved = dict(os.environ)
    os.environ.update({"RFTGRAD_NOTEBOOK_QUICK": "1", "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(tmp_path_factory.mktemp("hypothesis"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny tensors: a second thread only adds contention
    yield
    os.environ.clear()
    os.environ.update(saved)


def execute(notebook: nbformat.NotebookNode, name: str) -> None:
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    try:
        client.execute()
    except RuntimeError as error:  # kernel did not start or died; CellExecutionError is not a RuntimeError
        pytest.fail(f"{name}: the python3 kernel did not start or died ({error}); to install it: {INSTALL}")


@pytest.mark.parametrize("slug", lesson_slugs())
def test_solutions_notebook_runs_without_errors(slug, kernel_env):
    notebook = read(NOTEBOOKS / f"{slug}_solutions.ipynb")
    execute(notebook, f"{slug}_solutions")  # raises CellExecutionError on the first failing cell
    checks = [cell for cell in notebook.cells if "check" in tags(cell)]
    assert checks and all(cell.execution_count is not None for cell in checks)


@pytest.mark.parametrize("slug", lesson_slugs())
def test_student_notebook_runs_and_every_check_fails_until_solved(slug, kernel_env):
    notebook = read(NOTEBOOKS / f"{slug}.ipynb")
    for cell in notebook.cells:
        if "check" in tags(cell):
            cell.metadata["tags"] = [*tags(cell), "raises-exception"]  # nbclient: this cell may raise
    execute(notebook, slug)
    for cell in notebook.cells:
        errors = [output for output in cell.get("outputs", []) if output.output_type == "error"]
        if "check" in tags(cell):
            assert [error.ename for error in errors] == ["AssertionError"], f"{slug}: check cell\n{cell.source}"
        else:
            assert not errors

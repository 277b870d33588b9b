"""The course notebooks (notebooks/): built by notebooks/build.py from the lesson scripts in notebooks/src/,
stored without outputs, and they run.

Every lesson is executed twice, headless, with the ``python3`` kernel, in ``notebooks/`` and with
``RFTGRAD_NOTEBOOK_QUICK=1`` (small budgets):

* the **solutions** notebook, here with nbclient: it runs every cell; any error fails the test;
* the **student** notebook, once, by the documentation build (``tests/test_docs_site.py`` reads the rendered
  outputs): only the check cells (tags ``check`` and ``raises-exception``) may raise, and each of them must
  raise an ``AssertionError``: unsolved, its placeholder fails the check (so a check is never vacuous). An
  error anywhere else, exercise cells (tag ``exercise``) included, fails the test.

The lesson scripts (jupytext percent scripts) are checked too: every solution block stays out of the student
notebooks, no marker line reaches a notebook, a Jupyter save writes a script back unchanged, and ruff lints them.

A missing ``nbclient``/``nbformat``/``jupytext`` or ``python3`` kernel fails the tests with the install line (``.[dev]``
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
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = NOTEBOOKS / "src"
INSTALL = 'pip install -c constraints.txt -e ".[dev]"'
#: the line every lesson's first code cell holds: small budgets when the test suite runs it.
QUICK_LINE = 'QUICK = os.environ.get("RFTGRAD_NOTEBOOK_QUICK") == "1"  # small budgets (the test suite sets it)'
#: the most lines the notebook generator may have (it is meant to stay a short script).
BUILD_MAX_LINES = 150
#: seconds one cell may run before the kernel is interrupted and the test fails.
CELL_TIMEOUT = 120
#: top-level modules a notebook may import: rftgrad, the scientific stack it installs, the standard library.
ALLOWED_IMPORTS = {
    "rftgrad", "numpy", "torch", "matplotlib", "pandas", "scipy", "sympy", "IPython", "ipywidgets", "hypothesis",
    "dataclasses", "json", "math", "os", "pathlib", "tempfile",
}  # fmt: skip

try:
    import jupytext
    import nbformat
    from nbclient import NotebookClient
except ImportError as error:  # pragma: no cover - only without the dev extra
    jupytext = nbformat = None
    IMPORT_ERROR: str | None = f"{error}; install the notebook tools: {INSTALL}"
else:
    IMPORT_ERROR = None


def load_build() -> ModuleType:
    """notebooks/build.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("rftgrad_notebook_build", NOTEBOOKS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
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


def code_lines(path: Path) -> set[str]:
    """Every line of every code cell of a notebook."""
    return {line for cell in code_cells(path) for line in cell.source.split("\n")}


def lesson_minutes(slug: str) -> int:
    """The reading time a lesson's title cell gives ("about N minutes")."""
    match = re.search(r"about (\d+) minutes", read(NOTEBOOKS / f"{slug}.ipynb").cells[0].source)
    assert match, f"{slug}: the title cell gives no reading time"
    return int(match.group(1))


def marked_blocks(source: str) -> dict[str, list[str]]:
    """The lines inside the ``### BEGIN STARTER``/``SOLUTION`` blocks of a lesson script's cell, by block."""
    blocks: dict[str, list[str]] = {"STARTER": [], "SOLUTION": []}
    inside = None
    for line in source.split("\n"):
        if line.startswith("### BEGIN "):
            inside = line.removeprefix("### BEGIN ")
        elif line.startswith("### END "):
            inside = None
        elif inside is not None:
            blocks[inside].append(line)
    return blocks


# ----------------------------------------------------------------------------- static checks


def test_committed_notebooks_are_what_build_py_writes(build):
    texts = build.notebook_texts()
    assert {path.name for path in texts} == {path.name for path in NOTEBOOKS.glob("*.ipynb")}, (
        "notebooks/ holds notebooks that build.py does not write, or misses some"
    )
    stale = [path.name for path, text in texts.items() if path.read_text(encoding="utf-8") != text]
    assert not stale, f"out of date, run `python notebooks/build.py`: {stale}"
    assert lesson_slugs() == [script.stem for script in build.lesson_scripts()] and len(lesson_slugs()) == 5


def test_build_check_names_the_drifted_notebooks(build, tmp_path, monkeypatch, capsys):
    """``build.py --check`` exits 1 and names a notebook that differs from its script; it writes nothing."""
    assert build.main(["--check"]) == 0
    drifted = tmp_path / "01_policy_gradient.ipynb"
    drifted.write_text("{}", encoding="utf-8")
    monkeypatch.setattr(build, "NOTEBOOK_DIR", tmp_path)
    assert build.main(["--check"]) == 1
    assert "01_policy_gradient.ipynb" in capsys.readouterr().err
    assert drifted.read_text(encoding="utf-8") == "{}" and list(tmp_path.iterdir()) == [drifted]


def test_generator_is_a_short_script():
    lines = (NOTEBOOKS / "build.py").read_text(encoding="utf-8").count("\n")
    assert lines < BUILD_MAX_LINES, f"notebooks/build.py has {lines} lines; keep it under {BUILD_MAX_LINES}"


def test_markers_must_pair_up(build):
    cell = "x = 1\n### BEGIN STARTER\ny = None\n### END STARTER\n### BEGIN SOLUTION\ny = x\n### END SOLUTION"
    assert build.rendering(cell, solutions=False) == "x = 1\ny = None"
    assert build.rendering(cell, solutions=True) == "x = 1\ny = x"
    for broken in ("### BEGIN SOLUTION\ny = x", "### END SOLUTION", "### BEGIN STARTER\n### END SOLUTION"):
        with pytest.raises(ValueError):
            build.rendering(broken, solutions=True)


@pytest.mark.parametrize("slug", lesson_slugs())
def test_student_notebooks_hold_no_solution_and_no_notebook_holds_a_marker(slug):
    """No solution line of the script is in the student notebook (lines that hold a name or a number: a lone
    ``]`` is everywhere), every one is in the solutions notebook, no starter line is there, and no ``### BEGIN``
    or ``### END`` marker line reaches either notebook."""
    require_tools()
    script = jupytext.read(SOURCES / f"{slug}.py", fmt="py:percent")
    exercises = [cell for cell in script.cells if "exercise" in tags(cell)]
    for cell in exercises:
        assert "### BEGIN SOLUTION" in cell.source and "### BEGIN STARTER" in cell.source, f"{slug}: {cell.source}"
    student = (NOTEBOOKS / f"{slug}.ipynb").read_text(encoding="utf-8")
    solutions = (NOTEBOOKS / f"{slug}_solutions.ipynb").read_text(encoding="utf-8")
    for text in (student, solutions):
        assert not re.search(r"### (BEGIN|END) (SOLUTION|STARTER)", text), f"{slug}: a marker line is left"
    student_lines = code_lines(NOTEBOOKS / f"{slug}.ipynb")
    solved_lines = code_lines(NOTEBOOKS / f"{slug}_solutions.ipynb")
    for cell in exercises:
        blocks = marked_blocks(cell.source)
        for line in filter(str.strip, blocks["SOLUTION"]):
            assert line not in student_lines or not re.search(r"\w", line), f"{slug}: the student notebook has {line!r}"
            assert line in solved_lines, f"{slug}: the solutions notebook lacks {line!r}"
        for line in filter(str.strip, blocks["STARTER"]):
            assert line not in solved_lines, f"{slug}: the solutions notebook has {line!r}"


@pytest.mark.parametrize("slug", lesson_slugs())
def test_lesson_script_opens_in_jupyter_and_saves_back_unchanged(slug):
    """The script is paired (``formats: py:percent``, the ``python3`` kernel), and writing the notebook
    jupytext reads from it, which is what saving it in Jupyter does, gives the script back."""
    require_tools()
    path = SOURCES / f"{slug}.py"
    text = path.read_text(encoding="utf-8")
    notebook = jupytext.read(path, fmt="py:percent")
    assert notebook.metadata["jupytext"]["formats"] == "py:percent"
    assert notebook.metadata["kernelspec"]["name"] == "python3"

    def versionless(script: str) -> str:  # the header records the jupytext that saved it last
        return re.sub(r"jupytext_version: .*", "jupytext_version: any", script)

    assert versionless(jupytext.writes(notebook, fmt="py:percent")) == versionless(text)


def test_ruff_lints_the_lesson_scripts():
    """``ruff check .`` covers notebooks/src (nothing excludes it) and finds nothing there."""
    run = [sys.executable, "-m", "ruff", "check"]
    try:
        listed = subprocess.run([*run, "--show-files", "."], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.fail(f"ruff did not run ({error}); install it: {INSTALL}")
    checked = {Path(line.strip()).resolve() for line in listed.stdout.splitlines() if line.strip().endswith(".py")}
    scripts = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    assert scripts and set(scripts) <= checked, "ruff check . skips notebooks/src"
    lint = subprocess.run([*run, str(SOURCES), str(NOTEBOOKS / "build.py")], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


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
        # unsolved, a student's check fails: executors run on past it; a solved one must pass
        expected = [] if name.endswith("_solutions") else ["raises-exception"]
        assert all(
            [tag for tag in tags(cell) if tag == "raises-exception"] == expected
            for cell in cells
            if "check" in tags(cell)
        ), f"{name}: check cells' raises-exception tag"
        assert not any("raises-exception" in tags(cell) for cell in cells if "check" not in tags(cell))
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
        if info.name == "rftgrad.integrations.trl" and importlib.util.find_spec("trl") is None:
            continue  # an optional integration: it needs trl, which rftgrad does not depend on
        for name, value in vars(importlib.import_module(info.name)).items():
            if inspect.isfunction(value) or inspect.isclass(value):
                if not name.startswith("_") and value.__module__.startswith("rftgrad"):
                    names.add(name)
    return names


@pytest.mark.parametrize("slug", lesson_slugs())
def test_lessons_use_rftgrads_api_and_standard_libraries_only(slug):
    """Each lesson imports rftgrad, reads QUICK in its first code cell, imports only allowed modules and
    defines no function or class under the name of one of rftgrad's (a copy of library code would)."""
    require_tools()
    public = rftgrad_function_names()
    for name in (slug, f"{slug}_solutions"):
        cells = code_cells(NOTEBOOKS / f"{name}.ipynb")
        assert QUICK_LINE in cells[0].source, f"{name}: the first code cell must set QUICK"
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
    slugs = [script.stem for script in build.lesson_scripts()]
    positions = [readme.find(f"{slug}.ipynb") for slug in slugs]
    assert all(position >= 0 for position in positions) and positions == sorted(positions), "lessons in order"
    for slug in slugs:
        assert re.search(rf"{slug}\.ipynb.*\|\s*{lesson_minutes(slug)} min", readme), f"time of {slug}"
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

"""Build the course notebooks from their source, the jupytext percent scripts in notebooks/src/.

    python notebooks/build.py            # (re)write notebooks/NN_<name>.ipynb and NN_<name>_solutions.ipynb
    python notebooks/build.py --check    # exit 1 and name the notebooks that differ from their source

Each lesson is one script, ``notebooks/src/NN_<name>.py``, that Jupyter opens as a notebook (with
jupytext installed) and that is plain Python to ruff. Its cells start at ``# %% [markdown]`` (text,
every line commented) or ``# %%`` (code); tags go in the cell line: ``# %% tags=["exercise"]``.

Every lesson renders twice, and the exercise cells hold both renderings between marker lines:

    ex_rewards = np.array([1.0, -1.0])    # outside the blocks: in both notebooks
    ### BEGIN STARTER
    # TODO: what the student computes     # student notebook only: the TODO and a placeholder
    answer = None                         # that makes the check cell after it fail
    ### END STARTER
    ### BEGIN SOLUTION
    answer = ex_rewards.mean()            # solutions notebook only
    ### END SOLUTION

The marker lines never reach a notebook. Put the starter before the solution, so that running the
script (or the notebook Jupyter opens from it) runs the solution. The generator also appends one
paragraph to the lesson's first cell (its title cell) saying which rendering it is and how to get
small budgets. A student's check cell is also tagged ``raises-exception`` (it fails until solved; nbclient
and the docs build run on past it). The notebooks are written without outputs, with fixed cell ids
(``cell-000``, ...), so that a rebuild gives the same bytes (``tests/test_notebooks.py`` checks it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import jupytext
import nbformat

#: where the notebooks live (this file's folder) and where their source scripts live.
NOTEBOOK_DIR = Path(__file__).resolve().parent
SOURCE_DIR = NOTEBOOK_DIR / "src"
#: the environment variable that selects small budgets (the test suite sets it to 1).
QUICK_VARIABLE = "RFTGRAD_NOTEBOOK_QUICK"
#: the marker lines of an exercise cell, and the block each one opens (or None: it closes it).
MARKERS = {
    "### BEGIN STARTER": "starter",
    "### END STARTER": None,
    "### BEGIN SOLUTION": "solution",
    "### END SOLUTION": None,
}


def lesson_scripts(source_dir: Path = SOURCE_DIR) -> list[Path]:
    """The lessons' source scripts, in lesson order (``NN_<name>.py``)."""
    return sorted(source_dir.glob("[0-9][0-9]_*.py"))


def rendering(source: str, solutions: bool) -> str:
    """A code cell for one rendering: the solution blocks (``solutions``) or the starter blocks, no markers."""
    keep, block, lines = "solution" if solutions else "starter", None, []
    for number, line in enumerate(source.split("\n"), start=1):
        marker = line.strip()
        if marker in MARKERS:
            opens = MARKERS[marker]
            # outside a block only a BEGIN line may come, inside one only its own END line
            allowed = opens is not None if block is None else marker == f"### END {block.upper()}"
            if not allowed:
                raise ValueError(f"line {number}: {marker!r} does not match the open block ({block})")
            block = opens
        elif block is None or block == keep:
            lines.append(line)
    if block is not None:
        raise ValueError(f"the {block} block is never closed")
    return "\n".join(lines)


def title_paragraph(slug: str, solutions: bool) -> str:
    """The paragraph the generator appends to a lesson's title cell: which rendering, and small budgets."""
    kind = (
        "**Solutions notebook**: the exercise cells at the end are filled in."
        if solutions
        else "The exercises at the end have a `# TODO` cell and a check cell that passes once you solve it "
        f"(solutions: `{slug}_solutions.ipynb`)."
    )
    return f"{kind} Set `{QUICK_VARIABLE}=1` before starting Jupyter for small budgets (what the test suite runs)."


def render(script: Path, solutions: bool) -> nbformat.NotebookNode:
    """The student (``solutions=False``) or solutions notebook of one lesson script: no outputs, fixed ids."""
    source = jupytext.read(script, fmt="py:percent")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = nbformat.from_dict(
        {"kernelspec": source.metadata["kernelspec"], "language_info": {"name": "python"}}
    )
    for index, cell in enumerate(source.cells):
        text = cell.source
        if index == 0:
            if cell.cell_type != "markdown":
                raise ValueError(f"{script.name}: the first cell must be the lesson's title (markdown)")
            text = f"{text}\n\n{title_paragraph(script.stem, solutions)}"
        if cell.cell_type == "code":
            node = nbformat.v4.new_code_cell(rendering(text, solutions), id=f"cell-{index:03d}")
        elif cell.cell_type == "markdown":
            node = nbformat.v4.new_markdown_cell(text, id=f"cell-{index:03d}")
        else:
            raise ValueError(f"{script.name}: cell {index} is a {cell.cell_type} cell (only markdown and code)")
        tags = list(cell.metadata.get("tags", []))
        if "check" in tags and not solutions:
            tags.append("raises-exception")  # unsolved, it fails: nbclient and the docs build run on past it
        if tags:
            node.metadata["tags"] = tags
        notebook.cells.append(node)
    nbformat.validate(notebook)
    return notebook


def notebook_texts(source_dir: Path = SOURCE_DIR) -> dict[Path, str]:
    """Path -> file content of every notebook the scripts in ``source_dir`` build (students' and solutions)."""
    texts = {}
    for script in lesson_scripts(source_dir):
        for solutions in (False, True):
            name = f"{script.stem}_solutions.ipynb" if solutions else f"{script.stem}.ipynb"
            texts[NOTEBOOK_DIR / name] = nbformat.writes(render(script, solutions)) + "\n"
    return texts


def main(argv: Sequence[str] | None = None) -> int:
    """Write the notebooks, or with ``--check`` name those that differ from their source (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in notebook_texts().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date (run python notebooks/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    print(("stale: " if args.check else "written: ") + (", ".join(stale) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

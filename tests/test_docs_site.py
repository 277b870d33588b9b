"""The documentation site: built by the README's docs command in strict mode, every public name rendered.

One build per test run (module fixture), with the command of README.md's ``<!-- docs-command -->`` block,
into a temporary folder instead of ``site/``. It executes the five lessons (their quick budget) once; the
lesson checks below read the rendered outputs of that run, so the student notebooks are not executed a
second time by ``tests/test_notebooks.py``.

* the strict build (``-W -n``: broken links, missing references, docstrings that docutils cannot render)
  exits 0 and leaves no file in the repository that git does not ignore;
* every name of every public module's ``__all__`` has an entry in the site's inventory (``objects.inv``)
  whose rendered text holds its docstring (or, for a constant, the comment above it);
* the CLI page lists every command and option of ``rftgrad.cli.build_parser``;
* math is rendered by the site's own MathJax in the docs pages and in docstrings;
* each lesson page shows its figures, and in it only the check cells fail, each with an ``AssertionError``.

A missing Sphinx (or extension) fails the tests with the install line; it does not skip them.
"""

from __future__ import annotations

import argparse
import functools
import html
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = 'pip install -c constraints.txt -e ".[dev]"'
#: the lessons (student notebooks) the site renders with their outputs.
LESSONS = sorted(path.stem for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if "_solutions" not in path.stem)


@functools.cache
def load_script(name: str):
    """``docs/<name>.py`` as a module, loaded once (the extension imports ``build_api``, so that one goes first)."""
    if name != "build_api":
        load_script("build_api")
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def docs_command() -> list[str]:
    """The README's docs command, as argv: ``sphinx-build ... . site``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- docs-command -->\s*```bash\n(.*?)\n```", text, re.S)
    assert match, "README.md has no docs command block after <!-- docs-command -->"
    build = match.group(1).split("&&")[-1].strip()
    return shlex.split(build)


def working_tree_status() -> str:
    """``git status`` of the repository, untracked files included ('' where it is not a git checkout)."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True, text=True
    )
    return status.stdout if status.returncode == 0 else ""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once by the README's command into a temporary folder (the command's ``site``)."""
    if importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("myst_nb") is None:
        pytest.fail(f"Sphinx or myst-nb is not installed; install the docs tools: {INSTALL}")
    argv = docs_command()
    assert argv[0] == "sphinx-build" and argv[-2:] == [".", "site"], argv
    out = tmp_path_factory.mktemp("docs") / "site"
    command = [sys.executable, "-m", "sphinx", *argv[1:-1], str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("MPLBACKEND", None)  # the lessons' figures come from the kernel's inline backend
    before = working_tree_status()
    started = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert run.returncode == 0, f"the strict docs build failed ({seconds:.0f} s):\n{run.stderr[-6000:]}"
    assert working_tree_status() == before, "the docs build left files in the repository outside the git-ignored ones"
    print(f"docs build: {seconds:.1f} s")
    return out


def test_readme_docs_command_is_strict_and_installs_the_docs_extra():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- docs-command -->\s*```bash\n(.*?)\n```", text, re.S).group(1)
    assert 'pip install -c constraints.txt -e ".[docs]"' in block
    argv = docs_command()
    assert {"-W", "--keep-going", "-n"} <= set(argv) and argv[argv.index("-c") + 1] == "docs"


def page_text(site: Path, uri: str) -> tuple[str, str]:
    """The HTML of the page an inventory URI points to, and the anchor ('' for none)."""
    page, _, anchor = uri.partition("#")
    return (site / page).read_text(encoding="utf-8"), anchor


def entry_text(page: str, anchor: str) -> str:
    """The plain text of an entry: its signature line and the first paragraph or block after it."""
    start = page.index(f'id="{anchor}"')
    end = page.find("</dd>", start)
    fragment = page[start : end if end > 0 else start + 4000]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def doc_words(text: str, count: int = 4) -> list[str]:
    """The first words of a docstring's first line, without reST markup and math (what renders as prose)."""
    first = text.strip().split("\n\n")[0]
    first = re.sub(r":math:`[^`]*`", " ", first)
    first = re.sub(r":\w+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", first)
    return re.findall(r"[A-Za-z]{3,}", first)[:count]


def documented_text(module_name: str, name: str) -> str:
    """What a name's entry shows as its description: its docstring, or for a constant the comment above it."""
    builder = load_script("sphinx_rftgrad")
    value = getattr(importlib.import_module(module_name), name)
    if builder.kind_of(value) == "data":
        return builder.constant_comment(module_name, name)
    return importlib.import_module("inspect").getdoc(value) or ""


def inventory_objects(site: Path) -> dict[str, str]:
    """``full name -> page URI`` of every Python object in the site's inventory (``objects.inv``)."""
    from sphinx.util.inventory import InventoryFile

    with open(site / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    by_kind = getattr(inventory, "data", inventory)  # Sphinx 9 returns the mapping itself
    return {name: item.uri for kind, items in by_kind.items() if kind.startswith("py:") for name, item in items.items()}


def missing_entries(site: Path, objects: dict[str, str], modules) -> list[str]:
    """Public names with no inventory entry, or whose entry does not show their docstring's first words."""
    problems = []
    for module_name in modules:
        for name in importlib.import_module(module_name).__all__:
            full = f"{module_name}.{name}"
            if full not in objects:
                problems.append(f"{full}: no entry")
                continue
            page, anchor = page_text(site, objects[full])
            shown = entry_text(page, anchor or full)
            description = documented_text(module_name, name)
            words = doc_words(description)
            if not description.strip():
                problems.append(f"{full}: no docstring (a constant: no comment above its assignment)")
            absent = [word for word in words if word not in shown]
            if absent:
                problems.append(f"{full}: its docstring's words {absent} are not rendered")
    return problems


def test_every_public_name_has_a_rendered_entry_with_its_docstring(site):
    builder = load_script("build_api")
    problems = missing_entries(site, inventory_objects(site), builder.MODULES)
    assert not problems, "\n".join(problems)


def test_the_entry_check_fails_on_a_missing_or_unrendered_entry(site):
    """Drop one name from the inventory, point another at the wrong entry: the check names both."""
    objects = inventory_objects(site)
    del objects["rftgrad.theory.exact"]
    objects["rftgrad.theory.evaluate"] = objects["rftgrad.theory.gamma"]
    problems = missing_entries(site, objects, ["rftgrad.theory"])
    assert problems[0] == "rftgrad.theory.exact: no entry" or "rftgrad.theory.exact: no entry" in problems
    assert any(problem.startswith("rftgrad.theory.evaluate: its docstring's words") for problem in problems)
    assert len(problems) == 2, problems


def test_cli_page_lists_every_command_and_option(site):
    from rftgrad.cli import build_parser

    page = (site / "docs" / "cli.html").read_text(encoding="utf-8")
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    assert set(commands.choices) >= {"list", "exact", "check", "run", "figures", "diagnose"}
    for name, sub in commands.choices.items():
        assert name in text
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, f"rftgrad {name} {option} is not on the CLI page"


def test_math_is_rendered_by_the_sites_own_mathjax(site):
    mathjax = re.compile(r'<script[^>]+src="[./]*_static/mathjax/[^"]+\.js(\?[^"]*)?"')
    for page in ("docs/theorem1.html", "docs/theorem2.html", "docs/api/rftgrad.theory.html"):
        text = (site / page).read_text(encoding="utf-8")
        assert mathjax.search(text), f"{page} does not load the local MathJax"
        assert len(re.findall(r'class="math', text)) >= 5, f"{page} has almost no rendered math"
    assert not re.search(r'src="https?://[^"]*mathjax', (site / "docs" / "theorem1.html").read_text(encoding="utf-8"))
    assert any((site / "_static" / "mathjax").rglob("tex-chtml*.js"))


@pytest.mark.parametrize("slug", LESSONS)
def test_lesson_pages_show_figures_and_only_the_checks_fail(site, slug):
    """The lesson ran once in the build, as a student meets it: its figures are on the page, every check cell
    (unsolved) shows exactly one error, an AssertionError, and no other cell shows an error."""
    page = (site / "notebooks" / f"{slug}.html").read_text(encoding="utf-8")
    cells = re.split(r'<div class="cell( [^"]*)? docutils container"', page)[1:]
    tags = cells[0::2]
    bodies = cells[1::2]
    assert len(bodies) >= 5, f"{slug}: the page has {len(bodies)} code cells"
    checks = [body for tag, body in zip(tags, bodies, strict=True) if tag and "tag_check" in tag]
    others = [body for tag, body in zip(tags, bodies, strict=True) if not (tag and "tag_check" in tag)]
    assert 2 <= len(checks) <= 4, f"{slug}: {len(checks)} check cells"
    for body in checks:
        tracebacks = re.findall(r'class="output traceback[^"]*"(.*?)</pre>', body, re.S)
        assert len(tracebacks) == 1 and "AssertionError" in html.unescape(re.sub(r"<[^>]+>", "", tracebacks[0]))
    assert not any('class="output traceback' in body for body in others), f"{slug}: a cell other than a check failed"
    assert re.search(r'<img[^>]+src="[^"]*\.png"', page), f"{slug}: no figure among the outputs"
    assert (site / "notebooks" / f"{slug}_solutions.html").exists()


def test_site_root_leads_to_the_home_page(site):
    assert "url=docs/index.html" in (site / "index.html").read_text(encoding="utf-8")
    assert (site / "docs" / "index.html").exists() and (site / "README.html").exists()

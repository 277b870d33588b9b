"""Who may import what: the public API others build on (lessons, README snippets, paper figures, subpackages).

The rules, checked on the import statements of every source file (parsed with ``ast``):

1. No file imports a private name (``_name``) from an rftgrad module, nor reaches a private
   module (``rftgrad.x._y``).
2. Lessons (``notebooks/src``), README snippets and ``paper_figures`` scripts import from a
   package's surface only: ``rftgrad.<subpackage>``, a top-level module (``rftgrad.plotting``,
   ``rftgrad.configs``, ...) or an experiment package ``rftgrad.experiments.<name>``, and only
   names in its ``__all__``.
3. Inside ``rftgrad``, a module importing from another subpackage (``rftgrad.theory.exact`` from
   ``rftgrad.finetune``) takes only names that subpackage's ``__init__`` lists in ``__all__``.
4. Nothing outside ``rftgrad/experiments/<name>/`` imports that experiment's modules
   (``rftgrad.experiments.<name>.run``, ``.analysis``, ``.config``): experiments never import each
   other, and everyone else goes through the package (or :func:`rftgrad.experiments.base.experiment_module`).

``test_the_checker_flags_each_broken_case`` shows each rule failing on a deliberately broken source.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("envs", "models", "theory", "finetune", "diagnose", "experiments")


@dataclass(frozen=True)
class Import:
    """One ``from module import name`` (``name`` is None for ``import module``)."""

    line: int
    module: str
    name: str | None


def imports_of(source: str) -> list[Import]:
    """The rftgrad imports of a Python source (relative imports are not used in this repository)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rftgrad":
            found += [Import(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [Import(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "rftgrad"]
    return found


def public_names(module: str) -> set[str] | None:
    """``__all__`` of ``module`` (None when it defines none)."""
    names = getattr(importlib.import_module(module), "__all__", None)
    return None if names is None else set(names)


def is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def surface(module: str) -> bool:
    """A module outside code may import from: a subpackage, a top-level module, or an experiment package."""
    parts = module.split(".")
    if len(parts) <= 2:
        return True
    return len(parts) == 3 and parts[1] == "experiments" and parts[2] not in ("base",)


def violations(source: str, where: str, outside: bool, owner: str | None = None) -> list[str]:
    """Broken rules in one source. ``outside``: a lesson, snippet or paper figure; ``owner``: the
    file's place in rftgrad (``"finetune"``, ``"experiments.controlled"``, ...) for files of the library."""
    found = []
    for item in imports_of(source):
        label = f"{where}:{item.line}: {item.module}" + (f" import {item.name}" if item.name else "")
        parts = item.module.split(".")
        if any(is_private(part) for part in parts) or (item.name is not None and is_private(item.name)):
            found.append(f"{label} (a private name)")
            continue
        if len(parts) >= 4 and parts[1] == "experiments" and owner != f"experiments.{parts[2]}":
            found.append(f"{label} (an experiment's internals: import from rftgrad.experiments.{parts[2]})")
            continue
        if outside and not surface(item.module):
            found.append(f"{label} (not a package surface: import from {'.'.join(parts[:2])})")
            continue
        if outside and item.name is not None:
            names = public_names(item.module)
            if names is not None and item.name not in names:
                found.append(f"{label} (not in {item.module}.__all__)")
            continue
        if not outside and owner is not None and len(parts) >= 3 and parts[1] in SUBPACKAGES:
            if owner.split(".")[0] != parts[1] and parts[1] != "experiments" and item.name is not None:
                names = public_names(f"rftgrad.{parts[1]}")
                if names is not None and item.name not in names:
                    found.append(f"{label} (not in rftgrad.{parts[1]}.__all__)")
    return found


def readme_snippets() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return [(f"README.md python block {i}", block) for i, block in enumerate(blocks)]


def outside_sources() -> list[tuple[str, str]]:
    files = sorted((ROOT / "notebooks" / "src").glob("*.py")) + sorted((ROOT / "paper_figures").glob("*.py"))
    return [(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")) for path in files] + readme_snippets()


def library_sources() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((ROOT / "rftgrad").rglob("*.py")):
        relative = path.relative_to(ROOT / "rftgrad").with_suffix("")
        parts = relative.parts[:-1] if relative.name != "__init__" else relative.parts[:-1]
        owner = ".".join(parts[:2]) if parts[:1] == ("experiments",) and len(parts) >= 2 else ".".join(parts[:1])
        found.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"), owner or relative.name))
    return found


def test_lessons_snippets_and_paper_figures_use_the_public_api():
    sources = outside_sources()
    assert len(sources) >= 5 + 8 + 2  # five lessons, eight figures, the README's snippets
    found = [line for where, source in sources for line in violations(source, where, outside=True)]
    assert not found, "\n".join(found)


def test_subpackages_use_each_others_public_api_and_no_experiment_imports_another():
    found = [line for where, source, owner in library_sources() for line in violations(source, where, False, owner)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "package", [f"rftgrad.{name}" for name in SUBPACKAGES] + ["rftgrad.plotting", "rftgrad.integrations.trl"]
)
def test_every_name_in_all_exists(package):
    module = importlib.import_module(package)
    assert module.__all__ and len(module.__all__) == len(set(module.__all__))
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing


def test_the_checker_flags_each_broken_case():
    broken_lesson = (
        "from rftgrad.models.base import _init_replica\n"  # rule 1
        "from rftgrad.experiments.controlled.run import make_task\n"  # rule 4
        "from rftgrad.finetune.trainer import group_means\n"  # rule 2: not a package surface
        "from rftgrad.theory import not_a_public_name\n"  # rule 2: not in __all__
        "from rftgrad.theory import exact\n"  # fine
    )
    found = violations(broken_lesson, "lesson.py", outside=True)
    assert [line.split(":")[1] for line in found] == ["1", "2", "3", "4"], found
    broken_module = (
        "from rftgrad.experiments.controlled.run import make_task\n"  # rule 4: one experiment importing another
        "from rftgrad.theory.exact import _flat_values\n"  # rule 1
        "from rftgrad.envs.tasks import _AT_LEAST_ONE\n"  # rule 1
        "from rftgrad.theory.exact import exact\n"  # fine: in rftgrad.theory.__all__
    )
    found = violations(broken_module, "rftgrad/experiments/heuristics/run.py", False, "experiments.heuristics")
    assert [line.split(":")[1] for line in found] == ["1", "2", "3"], found
    own = "from rftgrad.experiments.heuristics.config import Config\n"
    assert violations(own, "rftgrad/experiments/heuristics/run.py", False, "experiments.heuristics") == []

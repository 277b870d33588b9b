"""The public API of rftgrad.models, rftgrad.theory, rftgrad.envs and rftgrad.diagnose.

* every name in a package's ``__all__`` is importable from it, and every name another part of
  the repository imports from one of its modules is in that ``__all__``;
* ``import rftgrad.theory`` does not import sympy, while the symbolic module's and Theorem 2's
  names are in ``rftgrad.theory.__all__`` (the symbolic ones load on first access, PEP 562);
* no module of theory, envs or diagnose reaches into a private attribute of another object.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rftgrad.models", "rftgrad.theory", "rftgrad.envs", "rftgrad.diagnose")
THEORY_MODULES = ("exact", "gamma", "bounds", "instances", "montecarlo", "group_updates", "dynamics", "symbolic")


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)


def test_importing_theory_does_not_import_sympy():
    done = run_python(
        "import sys, rftgrad.theory as t, rftgrad.diagnose, rftgrad.envs, rftgrad.models\n"
        "assert 'sympy' not in sys.modules, sorted(m for m in sys.modules if m.startswith('sympy'))[:3]\n"
        "assert 'chebyshev_threshold_bound' in t.__all__ and 'closed_form_hitting_time' in t.__all__\n"
        "t.closed_form_hitting_time  # Theorem 2: imported eagerly, sympy only inside its functions\n"
        "assert 'sympy' not in sys.modules\n"
        "t.chebyshev_threshold_bound  # the symbolic module: loaded on first access\n"
        "assert 'sympy' in sys.modules and 'rftgrad.theory.symbolic' in sys.modules\n"
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_is_importable(package):
    module = importlib.import_module(package)
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None, (package, name)
    assert set(module.__all__) <= set(dir(module))


def test_theory_all_holds_each_module_all_with_the_same_objects():
    import rftgrad.theory as theory

    for name in THEORY_MODULES:
        module = importlib.import_module(f"rftgrad.theory.{name}")
        assert set(module.__all__) <= set(theory.__all__), (name, set(module.__all__) - set(theory.__all__))
        for item in module.__all__:
            assert getattr(theory, item) is getattr(module, item), (name, item)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        theory.nonexistent  # noqa: B018


LESSON_IMPORT = re.compile(r"from rftgrad\.[\w.]+ import (\([^)]*\)|[^\n(]*)")


def imported_names() -> set[tuple[str, str, str]]:
    """``(package, name, file)`` for each name imported from a module of PACKAGES outside that package."""
    found = set()
    folders = ("rftgrad", "tests", "paper_figures", "benchmarks", "examples")
    files = [p for d in folders for p in (ROOT / d).rglob("*.py")]
    for path in files + [ROOT / "notebooks" / "build.py"]:
        if not path.exists():
            continue
        text = path.read_text()
        sources = [text]
        if path.name == "build.py":  # lesson cells are code inside strings; take their import statements
            sources = [m.group(0) for m in LESSON_IMPORT.finditer(text)]
        for source in sources:
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, ast.ImportFrom) or not node.module:
                    continue
                for package in PACKAGES:
                    inside = path.is_relative_to(ROOT / Path(*package.split(".")))
                    if (node.module == package or node.module.startswith(package + ".")) and not inside:
                        found.update((package, alias.name, str(path.relative_to(ROOT))) for alias in node.names)
    return found


def test_names_other_code_imports_are_in_the_package_all():
    missing = []
    for package, name, where in sorted(imported_names()):
        if name not in importlib.import_module(package).__all__ and name != "*":
            missing.append(f"{package}.{name} ({where})")
    assert not missing, missing


def private_reach_ins(directory: Path) -> list[str]:
    """``obj._name`` attribute accesses where ``obj`` is not ``self``/``cls`` (dunders allowed)."""
    found = []
    for path in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    return found


@pytest.mark.parametrize("directory", ["rftgrad/theory", "rftgrad/envs", "rftgrad/diagnose"])
def test_no_private_attribute_reach_ins(directory):
    assert private_reach_ins(ROOT / directory) == []

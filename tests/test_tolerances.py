"""Tolerances are defined once, in ``tests/tolerances.py``, and nowhere else under ``tests/``.

A test module may import entries of the table and may keep a literal inline next to the one
assertion it belongs to, but it may not define a module-level tolerance constant of its own. A
module-level definition is flagged when its name

* matches ``[A-Z_]*(TOL|EXACT|ATOL|RTOL)[A-Z_0-9]*`` (``TOL``, ``EXACT``, ``ODE_ATOL``, ...), or
* is the name of an entry of the table (``MC_Z``, ``MC_FAILURE``, ...), or

when its value is a dict keyed by torch dtypes (``{torch.float64: ..., ...}``), whatever its name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from tests import tolerances

TESTS = Path(__file__).resolve().parent
TABLE = TESTS / "tolerances.py"
PATTERN = re.compile(r"[A-Z_]*(TOL|EXACT|ATOL|RTOL)[A-Z_0-9]*")
TABLE_NAMES = frozenset(name for name in vars(tolerances) if name.isupper())
DTYPE_NAMES = frozenset(name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype))


def _targets(node: ast.stmt) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return node.targets
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        return [node.target]
    return []


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _names(element)]
    return []


def _is_dtype(node: ast.expr | None) -> bool:
    """``torch.float64`` or ``float64`` (imported from torch)."""
    if isinstance(node, ast.Attribute):
        return node.attr in DTYPE_NAMES and isinstance(node.value, ast.Name) and node.value.id == "torch"
    return isinstance(node, ast.Name) and node.id in DTYPE_NAMES


def _module_statements(body: list[ast.stmt]):
    """Statements run at import time: the module body and the bodies of its if/try/with blocks."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.With, ast.For, ast.While)):
            yield from _module_statements(node.body + getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            yield from _module_statements(
                node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
            )


def tolerance_definitions(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of every module-level tolerance constant defined in ``source``."""
    found = []
    for node in _module_statements(ast.parse(source).body):
        value = getattr(node, "value", None)
        dtype_dict = isinstance(value, ast.Dict) and any(_is_dtype(key) for key in value.keys)
        for target in _targets(node):
            for name in _names(target):
                if PATTERN.fullmatch(name) or name in TABLE_NAMES or dtype_dict:
                    found.append((node.lineno, name))
    return found


def offenders(root: Path) -> list[str]:
    """``path:line: name`` of every local tolerance constant in the ``*.py`` files under ``root``."""
    return [
        f"{path.relative_to(root)}:{line}: {name}"
        for path in sorted(root.rglob("*.py"))
        if path != TABLE
        for line, name in tolerance_definitions(path.read_text(encoding="utf-8"))
    ]


def assert_no_local_tolerances(root: Path) -> None:
    found = offenders(root)
    assert not found, "define tolerances in tests/tolerances.py and import them:\n" + "\n".join(found)


def test_no_test_module_defines_its_own_tolerances():
    assert_no_local_tolerances(TESTS)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("ATOL = 1e-3\n", [(1, "ATOL")]),
        ("EXACT = 1e-12\nTOL = ATOL[torch.float64]\n", [(1, "EXACT"), (2, "TOL")]),
        ("ODE_ATOL: float = 1e-8\n", [(1, "ODE_ATOL")]),
        ("MAX_REL_TOL, OTHER = 0.1, 2\n", [(1, "MAX_REL_TOL")]),
        ("MC_Z = 5.0\n", [(1, "MC_Z")]),
        ("import torch\nPRECISION = {torch.float32: 1e-4, torch.float64: 1e-8}\n", [(2, "PRECISION")]),
        ("import os\nif os.environ.get('X'):\n    RTOL = 1e-6\n", [(3, "RTOL")]),
    ],
)
def test_checker_flags_local_tolerances(source, expected):
    assert tolerance_definitions(source) == expected


def test_checker_ignores_imports_locals_and_other_constants():
    source = (
        "from tests.tolerances import ATOL, EXACT_ATOL, MC_Z\n"
        "SEEDS = [5, 6, 7]\n"
        "LABELS = {0: 1.0}\n"
        "def test_f():\n"
        "    tol = ATOL[torch.float32]\n"
        "    EXACT = 1e-3\n"
    )
    assert tolerance_definitions(source) == []


def test_checker_fails_on_a_broken_test_module(tmp_path):
    """The scan that passes on ``tests/`` fails on a tree holding a module with ``ATOL = 1e-3``."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "test_clean.py").write_text("from tests.tolerances import ATOL\n", encoding="utf-8")
    (tmp_path / "sub" / "test_broken.py").write_text('"""Own tolerance."""\n\nATOL = 1e-3\n', encoding="utf-8")
    assert offenders(tmp_path) == ["sub/test_broken.py:3: ATOL"]
    with pytest.raises(AssertionError, match="test_broken.py:3: ATOL"):
        assert_no_local_tolerances(tmp_path)


def test_table_entries_are_documented():
    """Every entry of the table has a ``#:`` comment right above it."""
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    undocumented = [
        name
        for name in TABLE_NAMES
        for i, line in enumerate(lines)
        if re.match(rf"{name}\s*=", line) and not lines[i - 1].startswith("#:")
    ]
    assert TABLE_NAMES and not undocumented

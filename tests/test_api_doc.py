"""docs/api.md lists every public name (each module's ``__all__``), as docs/build_api.py writes it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_builder():
    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_api", module)
    spec.loader.exec_module(module)
    return module


def test_api_doc_is_current_and_lists_every_public_name():
    builder = load_builder()
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert text == builder.render(), "docs/api.md is out of date: run python docs/build_api.py"
    for name in builder.MODULES:
        module = importlib.import_module(name)
        section = text.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
        missing = [item for item in module.__all__ if f"| `{item}` |" not in section]
        assert not missing, (name, missing)


def test_the_check_fails_on_a_stale_doc(tmp_path, monkeypatch):
    builder = load_builder()
    stale = tmp_path / "api.md"
    stale.write_text(builder.render().replace("| `exact` |", "| `exactly` |"), encoding="utf-8")
    monkeypatch.setattr(builder, "OUT", stale)
    assert builder.main(["--check"]) == 1
    stale.write_text(builder.render(), encoding="utf-8")
    assert builder.main(["--check"]) == 0

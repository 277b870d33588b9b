"""The site's local Sphinx extension: one API page per public module, generated from its ``__all__``.

For each module in ``build_api.MODULES`` (the one list of public modules) it writes
``docs/api/<module>.rst`` at the start of a build: the module docstring, then one autodoc entry per
name of ``__all__`` (classes, then functions, then constants and type aliases). A constant has no
docstring of its own, so its entry takes the comment above its assignment in the module that
defines it (``#: ...`` or ``# ...`` lines) and shows its value.

It also resolves two kinds of reference that Sphinx alone cannot, because every public name is
documented under the module that exports it (``rftgrad.theory.exact``), not where it is defined
(``rftgrad.theory.exact.exact``):

* a type hint or ``:class:`` naming the defining module is sent to the public entry of the same
  object;
* a short reference (``:func:`train```) that names no object of the current module goes to the one
  public object of that name, preferring the current package when several share it.

Everything else that does not resolve stays a warning, which the strict build turns into an error.
Pages matching the ``rftgrad_orphans`` patterns (the solutions notebooks) are linked from other pages
but stay out of the navigation. On the site, ``docs/api.md`` (the overview that ``build_api.py``
writes for GitHub readers) gets its names linked to these entries and a table of contents of the
module pages.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

from build_api import MODULES
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

#: where the generated pages go, relative to the source directory (git ignores it).
API_DIR = "docs/api"


def kind_of(value: object) -> str:
    """The autodoc directive that documents ``value``: class, function or data."""
    if inspect.isclass(value):
        return "class"
    if inspect.isfunction(value) or inspect.isbuiltin(value) or hasattr(value, "__wrapped__"):
        return "function"
    return "data"


def assigned_names(node: ast.stmt) -> list[str]:
    """The names a top-level statement assigns (``A = ...``, ``A: T = ...``, ``A, B = ...``)."""
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    names = []
    for target in targets:
        elements = target.elts if isinstance(target, ast.Tuple) else [target]
        names += [element.id for element in elements if isinstance(element, ast.Name)]
    return names


def constant_comment(module_name: str, name: str) -> str:
    """The comment lines right above ``name = ...`` (``#:`` or ``#``) where it is assigned, else ''.

    A name a package re-exports (``from rftgrad.theory.exact import METHODS``) is followed to the module
    that assigns it; a name a package imports lazily is looked for in the package's own modules.
    """
    module = importlib.import_module(module_name)
    lines = Path(module.__file__).read_text(encoding="utf-8").splitlines()
    for node in ast.parse("\n".join(lines)).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return constant_comment(node.module, alias.name)
        if name in assigned_names(node):
            comment, row = [], node.lineno - 2
            while row >= 0 and lines[row].lstrip().startswith("#"):
                comment.insert(0, re.sub(r"^\s*#:?\s?", "", lines[row]))
                row -= 1
            return " ".join(comment).strip()
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        comment = constant_comment(f"{module_name}.{info.name}", name) if not info.ispkg else ""
        if comment:
            return comment
    return ""


def module_page(module_name: str) -> str:
    """The reST text of one module's API page."""
    module = importlib.import_module(module_name)
    names = list(module.__all__)
    by_kind: dict[str, list[str]] = {"class": [], "function": [], "data": []}
    for name in names:
        by_kind[kind_of(getattr(module, name))].append(name)
    lines = [module_name, "=" * len(module_name), "", f".. automodule:: {module_name}", "   :no-members:", ""]
    titles = {"class": "Classes", "function": "Functions", "data": "Constants and types"}
    for kind, members in by_kind.items():
        if not members:
            continue
        lines += [titles[kind], "-" * len(titles[kind]), ""]
        for name in members:
            full = f"{module_name}.{name}"
            if kind == "class":
                lines += [f".. autoclass:: {full}", "   :members:", "   :show-inheritance:", ""]
            elif kind == "function":
                lines += [f".. autofunction:: {full}", ""]
            else:
                value = getattr(module, name)
                shown = repr(tuple(value)) if isinstance(value, dict) else repr(value)
                shown = shown if len(shown) <= 200 else shown[:197] + "..."
                lines += [f".. py:data:: {name}", f"   :module: {module_name}", f"   :value: {shown}", ""]
                comment = constant_comment(module_name, name)
                if comment:
                    lines += [f"   {comment}", ""]
    return "\n".join(lines)


def write_api_pages(app: Sphinx) -> None:
    """``builder-inited``: (re)write ``docs/api/<module>.rst`` where its text changed."""
    out = Path(app.srcdir) / API_DIR
    out.mkdir(parents=True, exist_ok=True)
    wanted = {f"{name}.rst": module_page(name) for name in MODULES}
    for stale in set(path.name for path in out.glob("*.rst")) - set(wanted):
        (out / stale).unlink()
    for filename, text in wanted.items():
        path = out / filename
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


def public_names() -> dict[str, str]:
    """``where an object is defined -> its public name``, the first public module exporting it winning."""
    public: dict[str, str] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            defined = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
            if inspect.isclass(value) or inspect.isfunction(value):
                public.setdefault(defined, f"{module_name}.{name}")
    return public


def link_api_overview(app: Sphinx, docname: str, source: list[str]) -> None:
    """``source-read``: in ``docs/api.md``, link each module heading and each name to its entry."""
    if docname != "docs/api":
        return
    text, module = [], None
    for line in source[0].split("\n"):
        heading = re.match(r"^## `([\w.]+)`$", line)
        if heading:
            module = heading.group(1)
            line = f"## {{doc}}`{module} <api/{module}>`"
        elif module and (row := re.match(r"^\| `(\w+)` \|", line)):
            line = line.replace(row.group(0), f"| {{py:obj}}`{row.group(1)} <{module}.{row.group(1)}>` |", 1)
        text.append(line)
    toctree = ["", "```{toctree}", ":hidden:", "", *[f"api/{name}" for name in MODULES], "```", ""]
    source[0] = "\n".join(text + toctree)


def resolve_public(app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element) -> nodes.Element | None:
    """``missing-reference``: send a defining-module or short Python reference to the public entry."""
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    target = node["reftarget"]
    public = env.app.config._rftgrad_public  # type: ignore[attr-defined]
    full = public.get(target)
    if full is None and "." not in target.removeprefix("rftgrad."):
        current = node.get("py:module") or ""
        candidates = [name for name in domain.objects if name.rsplit(".", 1)[-1] == target]
        near = [name for name in candidates if name.startswith(current.rsplit(".", 1)[0] + ".")] if current else []
        chosen = near if len(near) == 1 else candidates
        full = chosen[0] if len(chosen) == 1 else None
    if full is None or full not in domain.objects:
        return None
    return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", full, node, contnode)


def mark_orphans(app: Sphinx, env: BuildEnvironment) -> None:
    """``env-updated``: pages matching ``rftgrad_orphans`` are reached by links, not by the navigation."""
    for docname in env.all_docs:
        if any(fnmatch.fnmatch(docname, pattern) for pattern in app.config.rftgrad_orphans):
            env.metadata[docname]["orphan"] = True


def factory_defaults(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    """``autodoc-process-signature``: a dataclass field's ``= <factory>`` shown as the call, ``= dict()``."""
    if signature and "<factory>" in signature and dataclasses.is_dataclass(obj):
        for item in dataclasses.fields(obj):
            if item.default_factory is not dataclasses.MISSING:
                factory = getattr(item.default_factory, "__name__", "factory")
                signature = re.sub(rf"(\b{item.name}: [^=]*= )<factory>", rf"\g<1>{factory}()", signature)
    return signature, return_annotation


def keep_notebook_files_in_the_build(app: Sphinx) -> None:
    """``builder-inited``, after myst-nb's own handler: the executed notebooks' files (their figures) go to
    ``<doctrees>/jupyter_execute`` (``site/.doctrees/...``) instead of ``jupyter_execute/`` next to ``site/``,
    which for a build into ``site`` is the repository root."""
    config = getattr(app.env, "mystnb_config", None)
    if config is not None:
        folder = Path(app.doctreedir) / "jupyter_execute"
        app.env.mystnb_config = config.copy(output_folder=str(folder.resolve()))


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", keep_notebook_files_in_the_build, priority=900)
    app.connect("autodoc-process-signature", factory_defaults)
    app.add_config_value("rftgrad_orphans", [], "env")
    app.connect("builder-inited", write_api_pages)
    app.connect("env-updated", mark_orphans)
    app.connect("source-read", link_api_overview)
    app.connect("missing-reference", resolve_public)
    app.config._rftgrad_public = public_names()  # type: ignore[attr-defined]
    return {"parallel_read_safe": True, "parallel_write_safe": True}

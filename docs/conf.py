"""Sphinx configuration of rftgrad's documentation site.

Build it from the repository root (the ``docs`` extra installs what it needs):

    sphinx-build -W --keep-going -n -c docs . site

The source directory is the repository root, so the Markdown files keep the relative links that
GitHub follows (``docs/paper.md`` -> ``../benchmarks/README.md``); ``include_patterns`` picks the
pages. ``-W -n`` is the strict mode: a broken link, a reference to a missing object or a docstring
that docutils cannot render is an error. The API pages are generated from each public module's
``__all__`` by ``docs/sphinx_rftgrad.py``; the lessons are executed once, at their quick budget, by
myst-nb.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # the local extension sphinx_rftgrad and build_api

import rftgrad  # noqa: E402

project = "rftgrad"
author = "the rftgrad developers"
copyright = "2026, the rftgrad developers"  # noqa: A001 - Sphinx's name
version = release = rftgrad.__version__

extensions = [
    "myst_nb",  # Markdown (MyST) pages and executed notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from the site itself: it renders offline
    "sphinxarg.ext",  # the CLI reference from rftgrad.cli.build_parser
    "sphinx_rftgrad",  # the API pages and docs/api.md's links
]

root_doc = "docs/index"
include_patterns = [
    "README.md",
    "docs/*.md",
    "docs/api/*.rst",
    "benchmarks/README.md",
    "paper_figures/README.md",
    "notebooks/README.md",
    "notebooks/0[0-9]_*.ipynb",
]
exclude_patterns = ["site", ".venv", "build", "runs"]
# the solutions notebooks are linked from notebooks/README.md, not in the navigation
rftgrad_orphans = ["notebooks/*_solutions"]

# --- MyST: Markdown with $math$, heading anchors GitHub-style (docs link to "#4-controlled-...")
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4
myst_dmath_double_inline = True

# --- notebooks: run each lesson once per build at its quick budget, as a student meets it (a check
# cell, tagged raises-exception, fails until solved); the solutions notebooks are shown unexecuted
nb_execution_mode = "force"
nb_execution_excludepatterns = ["notebooks/*_solutions.ipynb"]
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_output_stderr = "remove"  # warnings such as tqdm's "IProgress not found" are noise on a static page
os.environ.setdefault("RFTGRAD_NOTEBOOK_QUICK", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

# --- autodoc: docstrings as written (reST, with :func: cross-references), signatures with hints
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# numpy's ArrayLike is a long Union: show it by its name
autodoc_type_aliases = {"npt.ArrayLike": "numpy.typing.ArrayLike"}
napoleon_google_docstring = False
napoleon_numpy_docstring = False

# strict references for rftgrad's own names; the third-party types in signatures are not in this
# site (no network for intersphinx inventories), so they are not checked
# TypeVars (``T``) and plotting's decorator alias are annotations only, with no entry to link to
nitpick_ignore_regex = [
    ("py:class", r"rftgrad\.[\w.]*\.T|rftgrad\.plotting\.Function"),
    (
        "py:.*",
        r"(torch|np|numpy|pd|pandas|matplotlib|plt|scipy|sympy|hypothesis|argparse|collections|typing|"
        r"pathlib|datetime|types|os|io|contextlib|dataclasses|enum|abc|concurrent|sp|trl|transformers|datasets)\b.*",
    ),
]

highlight_language = "none"  # unlabelled literal blocks are formulas and CLI usage, not Python

html_theme = "furo"  # the navigation: the toctree captions of docs/index.md in the sidebar
html_title = f"rftgrad {release}"
html_show_sourcelink = False
html_extra_path = ["_root"]  # site/index.html: a redirect to the home page, docs/index.html

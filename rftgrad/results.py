"""Writing a run's directory: config, environment info and tidy records, atomically.

A run directory holds ``config.json`` (what was asked), ``environment.json`` (versions,
device, git commit: :func:`rftgrad.runtime.environment_info`) and one or more CSV tables.
Every file is written to a temporary name and renamed into place, so an interrupted
run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import torch

from rftgrad.runtime import environment_info

__all__ = ["atomic_write", "atomic_write_text", "write_run"]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` atomically: ``write(stream)`` fills a temporary file in the same folder, which is
    flushed to disk and renamed over ``path`` (``os.replace``); on any error the temporary file is removed
    and ``path`` is untouched. The one way rftgrad writes a file (text, checkpoints, figures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str | bytes) -> Path:
    """Write ``text`` (UTF-8) or raw ``bytes`` to ``path`` atomically (:func:`atomic_write`)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return atomic_write(path, lambda stream: stream.write(data))


def write_run(
    out_dir: str | Path, config: Mapping[str, Any], tables: Mapping[str, pd.DataFrame], device: torch.device | str
) -> Path:

    """Write ``config.json``, ``environment.json`` and ``<name>.csv`` for each table."""
    out = Path(out_dir)
    atomic_write_text(out / "config.json", json.dumps(dict(config), indent=2, sort_keys=True, default=str) + "\n")
    atomic_write_text(out / "environment.json", json.dumps(environment_info(device), indent=2, default=str) + "\n")
    for name, frame in tables.items():
        atomic_write_text(out / f"{name}.csv", frame.to_csv(index=False))
    return out

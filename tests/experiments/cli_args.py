"""Config values as ``--set key=value`` command-line arguments (tuples joined by commas)."""

from __future__ import annotations

from collections.abc import Mapping


def set_args(values: Mapping[str, object]) -> list[str]:
    """``{"lr": (0.1, 0.2), "seeds": 2}`` -> ``["--set", "lr=0.1,0.2", "--set", "seeds=2"]``; a nested section
    ``{"trainer": {"seeds": 2}}`` -> ``["--set", "trainer.seeds=2"]``."""
    args = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            args += set_args({f"{key}.{inner}": item for inner, item in value.items()})
            continue
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        args += ["--set", f"{key}={text}"]
    return args

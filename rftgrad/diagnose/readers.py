"""Reading rollout logs into one tidy table of samples: ``(step?, prompt, reward, where)``.

Accepted files (the format comes from the suffix, or ``fmt``):

* ``.jsonl`` / ``.ndjson``: one JSON object per line; blank lines are skipped; nested objects
  are flattened to dotted names (``{"sample": {"reward": 1}}`` gives column ``sample.reward``).
* ``.json``: a list of objects, or a W&B table export ``{"columns": [...], "data": [[...], ...]}``
  (what TRL's ``log_completions`` table becomes when downloaded from W&B).
* ``.csv`` / ``.tsv``: a header line, then one row per sample.
* ``.parquet``: needs ``pyarrow`` (TRL writes ``completions/<mode>/completions_<step>.parquet``).

Row shapes (``shape`` in :class:`RolloutLog`):

* ``per-sample``: one row per sampled output, e.g. TRL ``{"step", "prompt", "completion", "reward",
  "advantage"}`` (before v0.15), or verl ``trainer.rollout_data_dir`` dumps
  ``{"input", "output", "gts", "score", "step"}``;
* ``per-group``: one row per prompt whose reward cell is a list, one element per sample, e.g.
  ``{"prompt": "...", "completions": [...], "rewards": [1, 0, 0, 1]}``;
* ``per-function``: TRL >= 0.15 tables ``{"step", "prompt", "completion", <one column per reward
  function>, "advantage"}`` have no total column; the total is the (weighted) sum of the
  reward-function columns, with NaN entries skipped as TRL's ``nansum`` does.

Every sample keeps where it came from (``line 17``, ``row 17``, ``record 17``; ``, element 3``
inside a per-group list) so that an error names the row to fix.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rftgrad.errors import RftgradError

#: auto-detected column names, first match wins (compared case-insensitively, also to the last
#: component of a dotted nested name).
PROMPT_COLUMNS = ("prompt_id", "prompt", "query", "question", "input", "problem")
REWARD_COLUMNS = ("reward", "rewards", "score", "scores")
STEP_COLUMNS = ("step", "global_step", "iteration", "iter")
#: suffix -> format.
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
#: what a row is called in error messages, per format.
ROW_WORDS = {"jsonl": "line", "json": "record", "csv": "row", "tsv": "row", "parquet": "row"}
#: internal columns: the file line / row of each row, and the position inside a per-group list (-1: none).
LINE, ELEMENT = "_rftgrad_line", "_rftgrad_element"


class RolloutLogError(RftgradError, ValueError):
    """A rollout log cannot be read or analysed; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class RolloutLog:
    """A rollout log as one row per sample.

    Attributes:
        samples: ``(S, ...)`` frame with ``prompt`` (str key), ``reward`` (float64, finite),
            ``where`` (str, e.g. ``"line 17"``) and ``step`` when the log has a step column.
        path: the file read.
        fmt: ``jsonl``, ``json``, ``csv``, ``tsv`` or ``parquet``.
        shape: ``per-sample``, ``per-group`` or ``per-function`` (see the module docstring).
        prompt_col: the column the prompts came from.
        reward_cols: the column(s) the reward came from (summed with ``reward_weights``).
        reward_weights: one weight per reward column.
        step_col: the step column, or None.
        rows: rows (lines, records) read from the file.
    """

    samples: pd.DataFrame
    path: Path
    fmt: str
    shape: str
    prompt_col: str
    reward_cols: tuple[str, ...]
    reward_weights: tuple[float, ...]
    step_col: str | None
    rows: int


def _fail(path: Path, message: str) -> RolloutLogError:
    return RolloutLogError(f"{path}: {message}")


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    records, lines = [], []
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                raise _fail(
                    path, f"line {number} is not valid JSON ({err.msg}, column {err.colno}); fix or delete it"
                ) from err
            if not isinstance(record, dict):
                raise _fail(path, f"line {number} is a JSON {type(record).__name__}, not an object; one object a line")
            records.append(record)
            lines.append(number)
    return pd.json_normalize(records, sep=".") if records else pd.DataFrame(), lines


def _read_json(path: Path) -> tuple[pd.DataFrame, list[int]]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise _fail(
            path, f"line {err.lineno} is not valid JSON ({err.msg}); for one object a line name it .jsonl"
        ) from err
    if isinstance(content, dict) and {"columns", "data"} <= content.keys():  # W&B table export
        frame = pd.DataFrame(content["data"], columns=content["columns"])
    elif isinstance(content, list) and all(isinstance(item, dict) for item in content):
        frame = pd.json_normalize(content, sep=".") if content else pd.DataFrame()
    else:
        raise _fail(path, 'a .json log must be a list of objects or a W&B table {"columns": [...], "data": [...]}')
    return frame, list(range(1, len(frame) + 1))


def _read_table(path: Path, fmt: str) -> tuple[pd.DataFrame, list[int]]:
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except ImportError as err:
            raise _fail(
                path,
                "reading parquet needs pyarrow or fastparquet; pip install pyarrow, or export the log as JSONL/CSV",
            ) from err
    else:
        try:
            frame = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
        except pd.errors.ParserError as err:
            raise _fail(path, f"is not a valid {fmt.upper()} file: {str(err).strip().splitlines()[0]}") from err
    return frame, list(range(1, len(frame) + 1))


def _read_frame(path: Path, fmt: str) -> tuple[pd.DataFrame, list[int]]:
    """The file as a flat frame plus the line / row number of each of its rows."""
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt == "json":
        return _read_json(path)
    return _read_table(path, fmt)


def _name_matches(column: str, name: str) -> bool:
    lower = column.lower()
    return lower == name or lower.rsplit(".", 1)[-1] == name


def _columns_found(frame: pd.DataFrame) -> str:
    names = [str(c) for c in frame.columns if c not in (LINE, ELEMENT)]
    return ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")


def _find_column(
    frame: pd.DataFrame, path: Path, requested: str | None, candidates: Sequence[str], option: str
) -> str | None:
    """The column named ``requested`` (exact, then case-insensitive), or the first candidate present."""
    columns = [str(c) for c in frame.columns if c not in (LINE, ELEMENT)]
    if requested is not None:
        for exact in (True, False):
            for column in columns:
                if column == requested or (not exact and column.lower() == requested.lower()):
                    return column
        raise _fail(path, f"no column {requested!r} ({option}); columns found: {_columns_found(frame)}")
    for name in candidates:
        for nested in (False, True):  # a top-level column beats a nested one of the same name
            for column in columns:
                if ("." in column) == nested and _name_matches(column, name):
                    return column
    return None


def _reward_function_columns(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """TRL >= 0.15 style: numeric columns with ``reward`` as a word of their name (``accuracy_reward``)."""
    return [
        str(c)
        for c in frame.columns
        if str(c) not in exclude
        and "reward" in re.split(r"[^a-z0-9]+", str(c).lower())
        and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]


def _where(word: str, line: int, element: int) -> str:
    return f"{word} {line}" + (f", element {element + 1}" if element >= 0 else "")


def _explode_lists(frame: pd.DataFrame, path: Path, columns: list[str], word: str) -> tuple[pd.DataFrame, bool]:
    """Per-group rows (reward cells that are lists) to one row per sample; ``ELEMENT`` is the list position."""

    def size(cell: Any) -> int:  # noqa: ANN401 - a cell of any type
        return len(cell) if isinstance(cell, list | tuple | np.ndarray) else -1

    sizes = np.stack([frame[column].map(size).to_numpy(dtype=np.int64) for column in columns], axis=1)  # (rows, K)
    if (sizes < 0).all():
        return frame.assign(**{ELEMENT: -1}), False
    for index, row in enumerate(sizes):
        line = frame[LINE].iat[index]
        if (row == 0).any():
            raise _fail(
                path, f"{word} {line}: empty reward list in column {columns[int(np.argmin(row))]!r}; drop the row"
            )
        if (row != row[0]).any():
            counts = ", ".join(
                f"{c!r}: {'one value' if n < 0 else f'{n} values'}" for c, n in zip(columns, row, strict=True)
            )
            raise _fail(path, f"{word} {line}: reward columns disagree on the number of samples ({counts})")
    is_list = pd.Series(sizes[:, 0] > 0, index=frame.index)
    frame = frame.explode(columns)  # keeps the original index: one label per input row
    element = frame.groupby(level=0).cumcount().to_numpy()
    frame[ELEMENT] = np.where(is_list.loc[frame.index].to_numpy(), element, -1)
    return frame.reset_index(drop=True), True


def _to_float(value: Any) -> float | None:  # noqa: ANN401 - a cell of any type
    """A reward cell as a float (bools as 0/1, numeric strings parsed), or None if it is not a number."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _rewards(
    frame: pd.DataFrame, path: Path, columns: list[str], weights: Sequence[float], wheres: list[str]
) -> np.ndarray:
    """``(S,)`` total reward ``Σ_k w_k r_k`` (NaN terms skipped when there are several columns), all finite."""
    values = np.zeros((len(frame), len(columns)))  # (S, K)
    for k, column in enumerate(columns):
        cells = frame[column]
        if pd.api.types.is_numeric_dtype(cells) and not pd.api.types.is_bool_dtype(cells):
            values[:, k] = cells.to_numpy(dtype=np.float64)
            continue
        for index, cell in enumerate(cells):
            number = _to_float(cell)
            if number is None:
                missing = cell is None or (isinstance(cell, float) and math.isnan(cell))
                what = "is missing" if missing else f"{_short(cell)} is not a number"
                raise _fail(path, f"{wheres[index]}: reward {what} (column {column!r}); fix the value or drop the row")
            values[index, k] = number
    finite = np.isfinite(values) | (np.isnan(values) & (len(columns) > 1))
    if not finite.all():
        index, k = np.argwhere(~finite)[0]
        raise _fail(
            path,
            f"{wheres[index]}: reward "
            f"{'is missing or NaN' if np.isnan(values[index, k]) else f'{values[index, k]} is not finite'} "
            f"(column {columns[k]!r}); fix the value or drop the row",
        )
    if len(columns) > 1:
        empty = np.isnan(values).all(axis=1)
        if empty.any():
            index = int(np.flatnonzero(empty)[0])
            raise _fail(path, f"{wheres[index]}: every reward column ({', '.join(columns)}) is empty; drop the row")
    return np.nansum(values * np.asarray(weights, dtype=np.float64), axis=1)  # (S,)


def _short(value: Any, limit: int = 40) -> str:  # noqa: ANN401 - a cell of any type
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(value: Any) -> str | None:  # noqa: ANN401 - a prompt cell: text, id, chat messages
    """A hashable text key for a prompt cell; None when the cell is empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, list | tuple | dict | np.ndarray):
        return json.dumps(value.tolist() if isinstance(value, np.ndarray) else value, sort_keys=True, default=str)
    return str(value)


def _steps(cells: pd.Series, path: Path, column: str, wheres: list[str]) -> pd.Series:
    """Step values, numeric where every value is (TRL writes ``str(global_step)``), else text."""
    missing = cells.isna().to_numpy()
    if missing.any():
        where = wheres[int(np.flatnonzero(missing)[0])]
        raise _fail(path, f"{where}: no value in step column {column!r}; fill it or pass --step-col none")
    numeric = pd.to_numeric(cells, errors="coerce")
    if numeric.notna().all():
        return numeric.astype(np.int64) if (numeric == numeric.round()).all() else numeric.astype(np.float64)
    return cells.map(_key)


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format of ``path``'s suffix; :class:`RolloutLogError` for an unknown one."""
    path = Path(path)
    if fmt is not None and fmt != "auto":
        if fmt not in ROW_WORDS:
            raise _fail(path, f"unknown format {fmt!r}; choose one of {', '.join(ROW_WORDS)}")
        return fmt
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise _fail(
            path,
            f"unknown format {suffix or '(no suffix)'!r}; name the file .jsonl, .json, .csv, .tsv or .parquet, "
            "or pass --format",
        )
    return FORMATS[suffix]


def read_rollouts(
    path: str | Path,
    fmt: str | None = None,
    prompt_col: str | None = None,
    reward_col: str | Sequence[str] | None = None,
    reward_weights: Sequence[float] | None = None,
    step_col: str | None = None,
) -> RolloutLog:
    """Read a rollout log into one row per sample (see the module docstring for the shapes).

    Args:
        path: the log file.
        fmt: ``jsonl``, ``json``, ``csv``, ``tsv``, ``parquet``, or None / ``auto`` (from the suffix).
        prompt_col: the prompt column (default: the first of :data:`PROMPT_COLUMNS` present).
        reward_col: the reward column, or several to sum (default: the first of :data:`REWARD_COLUMNS`
            present, else every column with ``reward`` as a word of its name, TRL >= 0.15 style).
        reward_weights: one weight per reward column (default 1 each), as TRL's ``reward_weights``.
        step_col: the step column; ``"none"`` ignores steps (default: the first of :data:`STEP_COLUMNS`).

    Raises:
        RolloutLogError: missing or empty file, unknown format, malformed JSON line, missing
            columns (the message lists those found), a reward that is not a finite number, a row
            without prompt or step; the message names the line / row.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file; check the path")
    fmt = detect_format(path, fmt)
    word = ROW_WORDS[fmt]
    frame, lines = _read_frame(path, fmt)
    if frame.empty:
        raise _fail(path, "the file is empty (no rows to diagnose); point at a log with one row per sampled output")
    frame = frame.reset_index(drop=True).assign(**{LINE: lines})

    prompt = _find_column(frame, path, prompt_col, PROMPT_COLUMNS, "--prompt-col")
    if prompt is None:
        raise _fail(
            path,
            f"no prompt column (looked for {', '.join(PROMPT_COLUMNS)}); columns found: {_columns_found(frame)}; "
            "name it with --prompt-col",
        )
    step = None
    if step_col is None or step_col.lower() != "none":
        step = _find_column(frame, path, step_col, STEP_COLUMNS, "--step-col")
    if isinstance(reward_col, str):
        reward_col = [c.strip() for c in reward_col.split(",") if c.strip()]
    shape = "per-sample"
    if reward_col:
        rewards = [_find_column(frame, path, c, (), "--reward-col") for c in reward_col]
    else:
        found = _find_column(frame, path, None, REWARD_COLUMNS, "--reward-col")
        rewards = [found] if found else _reward_function_columns(frame, {prompt, step or ""})
        if not found and rewards:
            shape = "per-function"
    reward_names = [str(c) for c in rewards if c is not None]
    if not reward_names:
        raise _fail(
            path,
            f"no reward column (looked for {', '.join(REWARD_COLUMNS)} and *_reward); columns found: "
            f"{_columns_found(frame)}; name it with --reward-col",
        )
    weights = tuple(float(w) for w in reward_weights) if reward_weights is not None else (1.0,) * len(reward_names)
    if len(weights) != len(reward_names):
        raise _fail(path, f"{len(weights)} reward weight(s) for {len(reward_names)} reward column(s) {reward_names}")

    frame, grouped = _explode_lists(frame, path, reward_names, word)
    if grouped:
        shape = "per-group"
    wheres = [_where(word, line, element) for line, element in zip(frame[LINE], frame[ELEMENT], strict=True)]
    keys = frame[prompt].map(_key)
    if keys.isna().any():
        where = wheres[int(np.flatnonzero(keys.isna().to_numpy())[0])]
        raise _fail(path, f"{where}: no prompt in column {prompt!r}; every row needs one (or drop the row)")
    samples = pd.DataFrame({"prompt": keys.to_numpy(dtype=object)})
    if step is not None:
        samples.insert(0, "step", _steps(frame[step], path, step, wheres).to_numpy())
    samples["reward"] = _rewards(frame, path, reward_names, weights, wheres)
    samples["where"] = wheres
    return RolloutLog(
        samples=samples,
        path=path,
        fmt=fmt,
        shape=shape,
        prompt_col=prompt,
        reward_cols=tuple(reward_names),
        reward_weights=weights,
        step_col=step,
        rows=len(lines),
    )

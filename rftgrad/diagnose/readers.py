"""Reading rollout logs into one tidy table of samples: ``(step?, prompt, reward, where)``.

Accepted files (the format comes from the suffix, or ``fmt``):

* ``.jsonl`` / ``.ndjson``: one JSON object per line; blank lines are skipped; nested objects
  are flattened to dotted names (``{"sample": {"reward": 1}}`` gives column ``sample.reward``).
* ``.json``: a list of objects, or a W&B table export ``{"columns": [...], "data": [[...], ...]}``
  (what TRL's ``log_completions`` table becomes when downloaded from W&B).
* ``.csv`` / ``.tsv``: a header line, then one row per sample.
* ``.parquet``: needs ``pyarrow`` (TRL writes ``completions/<mode>/completions_<step>.parquet``).
* ``.jsonl.gz``, ``.json.gz``, ``.csv.gz``, ``.tsv.gz``: the same, gzip-compressed.

Text files are UTF-8, with or without a byte-order mark. A file that is not (binary, UTF-16,
compressed under a name without ``.gz``) is refused with a line saying what it looks like.

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

import gzip
import itertools
import json
import math
import numbers
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from rftgrad.errors import ConfigError, RftgradError

#: auto-detected column names, first match wins (compared case-insensitively, also to the last
#: component of a dotted nested name).
PROMPT_COLUMNS = ("prompt_id", "prompt", "query", "question", "input", "problem")
REWARD_COLUMNS = ("reward", "rewards", "score", "scores")
STEP_COLUMNS = ("step", "global_step", "iteration", "iter")
#: suffix -> format.
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
#: what a row is called in error messages, per format.
ROW_WORDS = {"jsonl": "line", "json": "record", "csv": "row", "tsv": "row", "parquet": "row"}
#: a compressed text log: ``.<format>.gz`` is read through gzip (parquet compresses inside itself).
GZIP_SUFFIX = ".gz"
#: the largest reward magnitude: squares and sums of larger float64 values overflow the statistics.
MAX_ABS_REWARD = 1e100
#: first bytes of files that are not text logs, and what to do about them.
MAGIC = {
    b"\x1f\x8b": "gzip-compressed",
    b"BZh": "bzip2-compressed: bunzip2 it first",
    b"\xfd7zXZ\x00": "xz-compressed: unxz it first",
    b"\x28\xb5\x2f\xfd": "zstd-compressed: unzstd it first",
    b"PK\x03\x04": "a zip archive: unzip it and pass the log inside",
    b"PAR1": "a parquet file",
}
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


def check_number(
    value: Any,  # noqa: ANN401 - any input
    option: str,
    minimum: float | None = None,
    fix: str = "pass a finite number such as 0.5",
) -> float:
    """``value`` as a float: a real number, finite, ``|value| <= MAX_ABS_REWARD``, and ``>= minimum`` if given.

    Raises:
        ConfigError: NaN, inf, a string or another non-number, a value past the bounds; the
            message names ``option`` and ends with ``fix``.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{option} takes a number, got {value!r}; {fix}")
    try:
        number = float(value)
    except OverflowError:  # an int past float64's range
        number = math.inf if value > 0 else -math.inf
    if not math.isfinite(number) or abs(number) > MAX_ABS_REWARD:
        raise ConfigError(f"{option} must be finite, of magnitude <= {MAX_ABS_REWARD:g}, got {number!r}; {fix}")
    if minimum is not None and number < minimum:
        raise ConfigError(f"{option} must be >= {minimum:g}, got {number:g}; pass a non-negative value")
    return number


def _check_name(value: Any, option: str) -> str | None:  # noqa: ANN401 - any input
    """A column option: None, or a name that is not empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{option} takes a column name, got {value!r}")
    if not value.strip():
        raise ConfigError(f"{option} is empty; name a column or leave the option out")
    return value


def _gzipped(path: Path) -> bool:
    return path.suffix.lower() == GZIP_SUFFIX


def _log_suffix(path: Path) -> str:
    """The suffix that names the format: ``.jsonl`` for ``x.jsonl`` and ``x.jsonl.gz``."""
    return (path.with_suffix("") if _gzipped(path) else path).suffix.lower()


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if _gzipped(path) else path.open("rb")  # type: ignore[return-value]


def _check_file(path: Path) -> None:
    """Refuse a path that is not a readable regular file, saying what it is."""
    if path.is_dir():
        logs = sorted(c.name for c in path.iterdir() if c.is_file() and _log_suffix(c) in FORMATS)
        hint = (
            f"pass one of its {len(logs)} log file(s), e.g. {path / logs[0]}"
            if logs
            else "it holds no .jsonl, .json, .csv, .tsv or .parquet file; pass the log file itself"
        )
        raise _fail(path, f"is a directory, not a log file; {hint}")
    if not path.exists():
        raise _fail(path, "no such file; check the path")
    if not path.is_file():
        raise _fail(path, "is not a regular file (a device, pipe or socket); pass a log file")
    if not os.access(path, os.R_OK):
        raise _fail(path, "cannot be read (permission denied); check the file's permissions")


def _corrupt_gzip(path: Path, err: Exception) -> RolloutLogError:
    return _fail(path, f"is a truncated or corrupt gzip file ({err}); compress the log again")


def _check_content(path: Path, fmt: str) -> None:
    """Refuse a file whose first bytes say it is not a ``fmt`` log: empty, compressed, parquet, binary, UTF-16."""
    with path.open("rb") as stream:
        head = stream.read(4096)
    if not head:
        raise _fail(path, "the file is empty (0 bytes); point at a log with one row per sampled output")
    kind = next((what for magic, what in MAGIC.items() if head.startswith(magic)), None)
    if _gzipped(path):
        if fmt == "parquet":
            raise _fail(path, "parquet compresses itself: gunzip the file and pass the .parquet")
        if kind != MAGIC[b"\x1f\x8b"]:
            raise _fail(path, f"is named {GZIP_SUFFIX} but is not gzip-compressed; rename it without {GZIP_SUFFIX}")
        try:
            with gzip.open(path, "rb") as stream:
                head = stream.read(4096)
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise _corrupt_gzip(path, err) from err
        if not head:
            raise _fail(path, "the file is empty once decompressed; point at a log with one row per sampled output")
        kind = next((what for magic, what in MAGIC.items() if head.startswith(magic)), None)
    elif kind == MAGIC[b"\x1f\x8b"]:
        raise _fail(path, f"is gzip-compressed, not UTF-8 text: gunzip it, or name it {path.name}{GZIP_SUFFIX}")
    if fmt == "parquet" or kind == MAGIC[b"PAR1"]:
        if fmt != "parquet":
            raise _fail(path, f"is a parquet file, not {fmt.upper()}: name it .parquet or pass --format parquet")
        if kind != MAGIC[b"PAR1"]:
            raise _fail(path, "is not a parquet file (those start with PAR1); check the file, --format or the suffix")
        return
    if kind is not None:
        raise _fail(path, f"is {kind}, not a UTF-8 text log")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _fail(path, "is UTF-16 text, not UTF-8; save it as UTF-8 (e.g. iconv -f utf-16 -t utf-8)")
    if b"\x00" in head:
        raise _fail(path, f"is a binary file, not UTF-8 text ({fmt.upper()}); export the log as JSONL or CSV")


def _not_utf8(path: Path, line: int, column: int, byte: int) -> RolloutLogError:
    return _fail(path, f"line {line} is not UTF-8 text (byte 0x{byte:02x} at column {column}); save the file as UTF-8")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 file (a byte-order mark at the start dropped)."""
    with _open(path) as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise _not_utf8(path, number, err.start + 1, raw[err.start]) from err


def _looks_like(text: str) -> str | None:
    """The format a line of text looks like (``jsonl``, ``json``, ``tsv``, ``csv``), or None."""
    text = text.lstrip()
    if text.startswith("{"):
        return "jsonl"
    if text.startswith("["):
        return "json"
    return "tsv" if "\t" in text else "csv" if "," in text else None


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    records, lines = [], []
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as err:
            guess = _looks_like(line) if not records else None
            hint = "fix or delete it"
            if guess in ("csv", "tsv"):
                hint = f"it looks like {guess.upper()}: pass --format {guess}"
            raise _fail(path, f"line {number} is not valid JSON ({err.msg}, column {err.colno}); {hint}") from err
        if not isinstance(record, dict):
            objects = isinstance(record, list) and record and all(isinstance(item, dict) for item in record)
            hint = (
                "a list of objects is a .json log: pass --format json or rename the file"
                if objects and not records
                else "one object a line"
            )
            raise _fail(path, f"line {number} is a JSON {type(record).__name__}, not an object; {hint}")
        records.append(record)
        lines.append(number)
    if not records:
        raise _fail(path, "the file is empty (only blank lines); point at a log with one row per sampled output")
    return pd.json_normalize(records, sep="."), lines


def _read_json(path: Path) -> tuple[pd.DataFrame, list[int]]:
    with _open(path) as stream:
        raw = stream.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        raise _not_utf8(path, raw.count(b"\n", 0, err.start) + 1, err.start - line_start + 1, raw[err.start]) from err
    try:
        content = json.loads(text)
    except json.JSONDecodeError as err:
        guess = _looks_like(text) if err.pos == len(text) - len(text.lstrip()) else None
        hint = (
            f"it looks like {guess.upper()}: pass --format {guess}"
            if guess in ("csv", "tsv")
            else "for one object a line pass --format jsonl or name it .jsonl"
        )
        raise _fail(path, f"line {err.lineno} is not valid JSON ({err.msg}); {hint}") from err
    if isinstance(content, dict) and {"columns", "data"} <= content.keys():  # W&B table export
        columns, data = content["columns"], content["data"]
        if not isinstance(columns, list) or not isinstance(data, list) or not all(isinstance(r, list) for r in data):
            raise _fail(path, 'a W&B table needs "columns": [names] and "data": [[row], ...]; export the table again')
        bad = next((i for i, row in enumerate(data) if len(row) != len(columns)), None)
        if bad is not None:
            raise _fail(
                path, f"record {bad + 1} has {len(data[bad])} values for {len(columns)} columns; fix or delete it"
            )
        frame = pd.DataFrame(data, columns=[str(c) for c in columns])
    elif isinstance(content, list) and all(isinstance(item, dict) for item in content):
        frame = pd.json_normalize(content, sep=".") if content else pd.DataFrame()
    else:
        raise _fail(path, 'a .json log must be a list of objects or a W&B table {"columns": [...], "data": [...]}')
    if frame.empty:
        raise _fail(path, "the file is empty (no records); point at a log with one row per sampled output")
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
            sep, compression = "\t" if fmt == "tsv" else ",", "gzip" if _gzipped(path) else None
            frame = pd.read_csv(path, sep=sep, encoding="utf-8", compression=compression)
        except pd.errors.EmptyDataError as err:
            raise _fail(
                path, "the file is empty (only blank lines); point at a log with a header line and rows"
            ) from err
        except pd.errors.ParserError as err:
            raise _fail(path, f"is not a valid {fmt.upper()} file: {str(err).strip().splitlines()[0]}") from err
        except UnicodeDecodeError:
            for _ in _lines(path):  # raises on the first line that is not UTF-8, naming it
                pass
            raise
        if frame.empty:
            header = ", ".join(map(str, frame.columns))
            raise _fail(path, f"the file is empty: a header ({header}) but no rows; log one row per sampled output")
        first = str(frame.columns[0])
        guess = _looks_like(first) if first.lstrip().startswith(("{", "[")) or len(frame.columns) == 1 else None
        if guess is not None and guess != fmt:
            raise _fail(
                path, f"its header {_short(first)} looks like {guess.upper()}, not {fmt.upper()}; pass --format {guess}"
            )
        if len(frame.columns) == 1 and ";" in first:
            raise _fail(path, f"its header {_short(first)} is separated by ';'; save the file with commas")
    return frame, list(range(1, len(frame) + 1))


def _read_frame(path: Path, fmt: str) -> tuple[pd.DataFrame, list[int]]:
    """The file as a flat frame (at least one row) plus the line / row number of each of its rows."""
    try:
        if fmt == "jsonl":
            return _read_jsonl(path)
        if fmt == "json":
            return _read_json(path)
        return _read_table(path, fmt)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        if not _gzipped(path):
            raise
        raise _corrupt_gzip(path, err) from err


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


def _object_base(frame: pd.DataFrame, names: Sequence[str]) -> str | None:
    """The first flattened object whose own name is one of ``names``: ``reward`` for a column ``reward.a``."""
    for column in map(str, frame.columns):
        parts = column.split(".")
        for k in range(1, len(parts)):
            if parts[k - 1].lower() in names:
                return ".".join(parts[:k])
    return None


def _check_not_object(frame: pd.DataFrame, path: Path, column: str, word: str) -> None:
    """Refuse a reward column that holds JSON objects (flattened to ``column.field``) in some rows."""
    fields = [str(c) for c in frame.columns if str(c).startswith(column + ".")]
    if not fields:
        return
    held = frame[fields].notna().any(axis=1).to_numpy()  # (rows,)
    if column in frame:
        held = held & frame[column].isna().to_numpy()
    if held.any():
        index = int(np.flatnonzero(held)[0])
        keys = ", ".join(repr(f[len(column) + 1 :]) for f in fields[:5]) + (", ..." if len(fields) > 5 else "")
        raise _fail(
            path,
            f"{word} {frame[LINE].iat[index]}: reward column {column!r} holds an object (keys {keys}), not a number; "
            f"name the number with --reward-col {fields[0]} (several, comma-separated, are summed)",
        )


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
    if isinstance(value, int | np.integer):
        try:
            return float(value)
        except OverflowError:  # an integer past float64's range (JSON allows 10**400)
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float | np.floating):
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
    with np.errstate(invalid="ignore"):
        ok = (np.abs(values) <= MAX_ABS_REWARD) | (np.isnan(values) & (len(columns) > 1))  # (S, K)
    if not ok.all():
        index, k = np.argwhere(~ok)[0]
        value = values[index, k]
        what = (
            "is missing or NaN"
            if np.isnan(value)
            else f"{value} is not finite (or past float64's range, 1.8e308)"
            if np.isinf(value)
            else f"{value:g} is larger than {MAX_ABS_REWARD:g} in magnitude, past what the statistics can hold"
        )
        raise _fail(path, f"{wheres[index]}: reward {what} (column {columns[k]!r}); fix the value or drop the row")
    if len(columns) > 1:
        empty = np.isnan(values).all(axis=1)
        if empty.any():
            index = int(np.flatnonzero(empty)[0])
            raise _fail(path, f"{wheres[index]}: every reward column ({', '.join(columns)}) is empty; drop the row")
    total = np.nansum(values * np.asarray(weights, dtype=np.float64), axis=1)  # (S,)
    large = ~(np.abs(total) <= MAX_ABS_REWARD)
    if large.any():
        index = int(np.flatnonzero(large)[0])
        raise _fail(
            path,
            f"{wheres[index]}: the weighted reward {total[index]:g} is larger than {MAX_ABS_REWARD:g} in magnitude; "
            "use smaller --reward-weights",
        )
    return total


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
        infinite = ~np.isfinite(numeric.to_numpy(dtype=np.float64))
        if infinite.any():
            index = int(np.flatnonzero(infinite)[0])
            raise _fail(
                path,
                f"{wheres[index]}: step {numeric.iat[index]} is not finite (column {column!r}); "
                "fix it or pass --step-col none",
            )
        return numeric.astype(np.int64) if (numeric == numeric.round()).all() else numeric.astype(np.float64)
    return cells.map(_key)


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format of ``path``'s suffix (before ``.gz``); :class:`RolloutLogError` if unknown."""
    path = Path(path)
    if fmt is not None and fmt != "auto":
        if fmt not in ROW_WORDS:
            raise _fail(path, f"unknown format {fmt!r}; choose one of {', '.join(ROW_WORDS)}")
        return fmt
    suffix = _log_suffix(path)
    if suffix not in FORMATS:
        shown = suffix + (GZIP_SUFFIX if _gzipped(path) else "") if suffix else path.suffix.lower() or "(no suffix)"
        raise _fail(
            path,
            f"unknown format {shown!r}; name the file .jsonl, .json, .csv, .tsv or .parquet (text ones may end "
            f"in {GZIP_SUFFIX}), or pass --format",
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
        RolloutLogError: a missing path, a directory, an empty file (or a header only), an unknown
            format, a file that is not UTF-8 text (binary, compressed without ``.gz``, UTF-16) or a
            line that is not, malformed JSON, missing columns (the message lists those found), a
            reward that is not a finite number of magnitude <= :data:`MAX_ABS_REWARD` (an object,
            a string, NaN, inf), a row without prompt or step; the message names the line / row.
        ConfigError: an empty column name, a column named twice or for two roles, reward weights
            that are not finite numbers or not one per reward column.
    """
    path = Path(path)
    prompt_col = _check_name(prompt_col, "--prompt-col")
    step_col = _check_name(step_col, "--step-col")
    if reward_col is not None:
        names = reward_col.split(",") if isinstance(reward_col, str) else reward_col
        if isinstance(names, bytes) or not isinstance(names, Sequence):
            raise ConfigError(f"--reward-col takes column names, got {reward_col!r}")
        reward_col = [_check_name(c, "--reward-col").strip() for c in names]  # type: ignore[union-attr]
        repeated = sorted({c for c in reward_col if reward_col.count(c) > 1})
        if repeated:
            raise ConfigError(f"--reward-col names {', '.join(repeated)} more than once; name each column once")
    if reward_weights is not None:
        if isinstance(reward_weights, str | bytes) or not isinstance(reward_weights, Sequence | np.ndarray):
            raise ConfigError(f"--reward-weights takes numbers, one per reward column, got {reward_weights!r}")
        reward_weights = [check_number(w, "--reward-weights") for w in reward_weights]
    _check_file(path)
    fmt = detect_format(path, fmt)
    word = ROW_WORDS[fmt]
    _check_content(path, fmt)
    frame, lines = _read_frame(path, fmt)
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
    shape = "per-sample"
    if reward_col:
        columns = {str(c).lower() for c in frame.columns}
        for name in reward_col:
            if name.lower() not in columns:
                _check_not_object(frame, path, name, word)
        rewards = [_find_column(frame, path, c, (), "--reward-col") for c in reward_col]
    else:
        found = _find_column(frame, path, None, REWARD_COLUMNS, "--reward-col")
        base = _object_base(frame, REWARD_COLUMNS) if found is None else None
        if base is not None:
            _check_not_object(frame, path, base, word)
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
    for name in reward_names:
        _check_not_object(frame, path, name, word)
    roles = [("--prompt-col", prompt), ("--step-col", step)] + [("--reward-col", c) for c in reward_names]
    for (option, column), (other, same) in itertools.combinations(roles, 2):
        if column is not None and column == same:
            raise ConfigError(f"{option} and {other} both take column {column!r}; give each role its own column")
    weights = tuple(reward_weights) if reward_weights is not None else (1.0,) * len(reward_names)
    if len(weights) != len(reward_names):
        raise ConfigError(
            f"{len(weights)} --reward-weights for {len(reward_names)} reward column(s) {reward_names}; "
            "pass one weight per column"
        )

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

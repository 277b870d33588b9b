"""Reading rollout logs into one tidy table of samples: ``(step?, group, prompt, reward, where)``.

A log is a file, or a directory of per-step files read as one log in step order (TRL's
``<output_dir>/completions/completions_00001.parquet``, ..., verl's ``trainer.rollout_data_dir``
``1.jsonl``, ...; :func:`log_files`). Accepted files (the format comes from the suffix, or ``fmt``):

* ``.jsonl`` / ``.ndjson``: one JSON object per line; blank lines are skipped; nested objects
  are flattened to dotted names (``{"sample": {"reward": 1}}`` gives column ``sample.reward``).
* ``.json``: a list of objects, or a W&B table export ``{"columns": [...], "data": [[...], ...]}``
  (what TRL's ``log_completions`` table becomes when downloaded from W&B).
* ``.csv`` / ``.tsv``: a header line, then one row per sample.
* ``.parquet``: needs ``pyarrow`` (TRL writes ``completions/<mode>/completions_<step>.parquet``).
* ``.jsonl.gz``, ``.json.gz``, ``.csv.gz``, ``.tsv.gz``: the same, gzip-compressed.

Text files are UTF-8, with or without a byte-order mark. A file that is not (binary, UTF-16,
compressed under a name without ``.gz``) is refused with a line saying what it looks like.

Layouts (``layout`` in :class:`RolloutLog`), recognised by their columns:

* ``trl``: TRL's completions table ``step, prompt, completion, <reward functions>, <log_extra>,
  advantage``. Every numeric column between ``completion`` and ``advantage`` is a reward function;
  the total is TRL's weighted nansum; groups are consecutive blocks of ``num_generations`` rows.
* ``verl``: a verl rollout dump ``input, output, gts, score, step`` (+ reward extras, or ``uid`` from
  the v1 trainer: then grouped by verl's uid); with DAPO's ``overlong_reward`` the reward is
  ``score + overlong_reward``, the one that trained (docs/verl.md).
* ``monitor``: the rollout log of :class:`rftgrad.integrations.trl.GroupMonitor`, grouped by its
  ``group`` column, a null total being unscorable.
* ``generic``: anything else, columns found by name, grouped by prompt text.

A sample every reward function gave ``None`` (NaN) is *unscorable*: left out and counted, as TRL
leaves it out of its means and stds.

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
from rftgrad.runtime import is_whole_number

#: auto-detected column names, first match wins (compared case-insensitively, also to the last
#: component of a dotted nested name).
PROMPT_COLUMNS = ("prompt_id", "prompt", "query", "question", "input", "problem")
#: auto-detected reward column names, first match wins (as for the prompt column).
REWARD_COLUMNS = ("reward", "rewards", "score", "scores")
#: auto-detected training-step column names, first match wins (as for the prompt column).
STEP_COLUMNS = ("step", "global_step", "iteration", "iter")
#: columns holding a reference answer (for ``--export-stalled``); verl dumps it as ``gts``.
REFERENCE_COLUMNS = ("solution", "answer", "reference", "ground_truth", "gts", "target")
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
#: internal columns: the file line / row of each row, its label in messages (``row 17``, ``3.jsonl line 17``),
#: and the position inside a per-group list (-1: none).
LINE, ROW, ELEMENT = "_rftgrad_line", "_rftgrad_row", "_rftgrad_element"
INTERNAL = (LINE, ROW, ELEMENT)
#: layouts recognised by their columns (lower-case): TRL's completions table (``log_completions``) and
#: verl's ``trainer.rollout_data_dir`` dump.
TRL_COLUMNS = ("prompt", "completion", "advantage")
VERL_COLUMNS = ("input", "output", "score")
#: the rollout log of :class:`rftgrad.integrations.trl.GroupMonitor`: these, plus ``rewards.<function>``.
MONITOR_COLUMNS = ("step", "group", "prompt", "completion", "reward")
#: the folder of TRL's ``output_dir`` that holds its per-step completions files.
TRL_SUBDIR = "completions"
#: verl's v1 trainer writes each sample's key ``{uid}_{session}_{index}`` here; the ``uid`` is its group.
VERL_UID_COLUMN = "uid"
#: verl's DAPO reward manager logs its overlong penalty here (``overlong_buffer.log=True``); the legacy
#: trainer's dumped ``score`` is then the raw score and the reward that trained is ``score + overlong_reward``.
VERL_OVERLONG_COLUMN = "overlong_reward"
#: how a log's samples form groups (``grouping`` in :class:`RolloutLog`).
GROUPINGS = ("blocks", "prompt", "rows", "uid", "column")


class RolloutLogError(RftgradError, ValueError):
    """A rollout log cannot be read or analysed; the message names the file, the row and the fix."""


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
        * :exc:`ConfigError`: NaN, inf, a string or another non-number, a value past the bounds; the
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
    """Refuse a path that is not a readable regular file, saying what it is (directories: :func:`log_files`)."""
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
    names = [str(c) for c in frame.columns if c not in INTERNAL]
    return ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")


def _find_column(
    frame: pd.DataFrame, path: Path, requested: str | None, candidates: Sequence[str], option: str
) -> str | None:
    """The column named ``requested`` (exact, then case-insensitive), or the first candidate present."""
    columns = [str(c) for c in frame.columns if c not in INTERNAL]
    if requested is not None:
        for exact in (True, False):
            for column in columns:
                if column == requested or (not exact and column.lower() == requested.lower()):
                    return column
        raise _fail(path, f"no column {requested!r} ({option}); columns found: {_columns_found(frame)}")
    for nested in (False, True):  # any top-level candidate beats a nested one (verl: input before gts.question)
        for name in candidates:
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


def _check_not_object(frame: pd.DataFrame, path: Path, column: str) -> None:
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
            f"{frame[ROW].iat[index]}: reward column {column!r} holds an object (keys {keys}), not a number; "
            f"name the number with --reward-col {fields[0]} (several, comma-separated, are summed)",
        )


def _where(row: str, element: int) -> str:
    return row + (f", element {element + 1}" if element >= 0 else "")


def _explode_lists(frame: pd.DataFrame, path: Path, columns: list[str]) -> tuple[pd.DataFrame, bool]:
    """Per-group rows (reward cells that are lists) to one row per sample; ``ELEMENT`` is the list position."""

    def size(cell: Any) -> int:  # noqa: ANN401 - a cell of any type
        return len(cell) if isinstance(cell, list | tuple | np.ndarray) else -1

    sizes = np.stack([frame[column].map(size).to_numpy(dtype=np.int64) for column in columns], axis=1)  # (rows, K)
    if (sizes < 0).all():
        return frame.assign(**{ELEMENT: -1}), False
    for index, row in enumerate(sizes):
        line = frame[ROW].iat[index]
        if (row == 0).any():
            raise _fail(path, f"{line}: empty reward list in column {columns[int(np.argmin(row))]!r}; drop the row")
        if (row != row[0]).any():
            counts = ", ".join(
                f"{c!r}: {'one value' if n < 0 else f'{n} values'}" for c, n in zip(columns, row, strict=True)
            )
            raise _fail(path, f"{line}: reward columns disagree on the number of samples ({counts})")
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


def _reward_terms(
    frame: pd.DataFrame, path: Path, columns: list[str], wheres: list[str], allow_missing: bool
) -> np.ndarray:
    """``(S, K)`` reward of each sample in each column; NaN for a missing one (``None``) if ``allow_missing``.

    Raises:
        * :exc:`RolloutLogError`: a cell that is not a number (or missing, unless ``allow_missing``), or one past
          ``MAX_ABS_REWARD``; the message names the row and the column.
    """
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
                if missing and allow_missing:
                    values[index, k] = np.nan
                    continue
                what = "is missing" if missing else f"{_short(cell)} is not a number"
                raise _fail(path, f"{wheres[index]}: reward {what} (column {column!r}); fix the value or drop the row")
            values[index, k] = number
    with np.errstate(invalid="ignore"):
        ok = (np.abs(values) <= MAX_ABS_REWARD) | (np.isnan(values) & allow_missing)  # (S, K)
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
    return values


def total_reward(terms: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """``(S,)`` total ``Σ_k w_k r_k`` of ``(S, K)`` reward terms, NaN terms left out; NaN where every term is.

    TRL's rule (``GRPOTrainer``: ``(rewards_per_func * reward_weights).nansum(dim=1)``, then NaN for a
    completion every reward function returned ``None`` for: "unscorable", left out of every mean and std).
    """
    terms = np.asarray(terms, dtype=np.float64)
    total = np.nansum(terms * np.asarray(weights, dtype=np.float64), axis=1)  # (S,)
    return np.where(np.isnan(terms).all(axis=1), np.nan, total)


def _check_total(path: Path, total: np.ndarray, wheres: list[str]) -> None:
    large = np.abs(total) > MAX_ABS_REWARD  # NaN (unscorable) compares False
    if (where := _first_where(large, wheres)) is not None:
        raise _fail(
            path,
            f"{where}: the weighted reward {total[np.argmax(large)]:g} is larger than {MAX_ABS_REWARD:g} in magnitude; "
            "use smaller --reward-weights",
        )


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


def _first_where(flagged: pd.Series | np.ndarray, wheres: list[str]) -> str | None:
    """Where the first flagged sample is (``line 17``), None when no sample is flagged."""
    flagged = np.asarray(flagged, dtype=bool)  # (S,)
    return wheres[int(np.argmax(flagged))] if flagged.any() else None


def _steps(cells: pd.Series, path: Path, column: str, wheres: list[str]) -> pd.Series:
    """Step values, numeric where every value is (TRL writes ``str(global_step)``), else text."""
    if (where := _first_where(cells.isna(), wheres)) is not None:
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


def _name_order(path: Path) -> tuple[tuple[int, str], ...]:
    """Sort key of a file name, its numbers compared as numbers (``9.jsonl`` before ``10.jsonl``)."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", path.name) if part)


def log_files(path: str | Path, fmt: str | None = None) -> list[Path]:
    """The files of a rollout log: ``[path]`` for a file, a directory's per-step files in step order.

    A directory holds one file per logged step, as the trainers write them:

    * TRL ``log_completions``: ``<output_dir>/completions/completions_00001.parquet``, ... (TRL's
      ``output_dir`` itself is accepted: its ``completions/`` folder is read, whatever else it holds);
    * verl ``trainer.rollout_data_dir``: ``1.jsonl``, ``2.jsonl``, ...

    Files are ordered by the numbers in their names; hidden files and files of other suffixes are
    ignored; the log files must share one format (``fmt`` picks one when they do not).

    Raises:
        * :exc:`RolloutLogError`: a missing path, a directory without log files, log files of several formats.
    """
    path = Path(path)
    if not path.is_dir():
        _check_file(path)
        return [path]
    if not os.access(path, os.R_OK | os.X_OK):
        raise _fail(path, "cannot be read (permission denied); check the folder's permissions")

    def logs_in(folder: Path) -> list[Path]:
        return [c for c in folder.iterdir() if not c.name.startswith(".") and c.is_file() and _log_suffix(c) in FORMATS]

    folder = path
    if (path / TRL_SUBDIR).is_dir() and logs_in(path / TRL_SUBDIR):  # TRL's output_dir: its completions/ folder
        folder = path / TRL_SUBDIR  # (beside it may lie other logs, e.g. the monitor's rftgrad_rollouts.jsonl)
    logs = logs_in(folder)
    if fmt is not None and fmt != "auto":
        detect_format(folder, fmt)  # an unknown --format is named as such
        logs = [c for c in logs if FORMATS[_log_suffix(c)] == fmt]
    if not logs:
        what = f"no .{fmt} file" if fmt not in (None, "auto") else "no .jsonl, .json, .csv, .tsv or .parquet file"
        raise _fail(
            path,
            f"is a directory with {what}; pass a log file, a folder of per-step log files (TRL's "
            f"{TRL_SUBDIR}/, verl's rollout_data_dir) or TRL's output_dir",
        )
    formats = sorted({FORMATS[_log_suffix(c)] for c in logs})
    if len(formats) > 1:
        raise _fail(
            folder,
            f"holds log files of {len(formats)} formats ({', '.join(formats)}); pass --format to read one of them",
        )
    return sorted(logs, key=_name_order)


def _read_files(files: list[Path], fmt: str | None) -> tuple[pd.DataFrame, str]:
    """The files as one frame, ``LINE`` and ``ROW`` filled in (``ROW`` names the file when there are several)."""
    frames, formats = [], [detect_format(file, fmt) for file in files]  # one format: log_files checked it
    for file, file_fmt in zip(files, formats, strict=True):
        _check_content(file, file_fmt)
        frame, lines = _read_frame(file, file_fmt)
        word = ROW_WORDS[file_fmt]
        prefix = f"{file.name} " if len(files) > 1 else ""
        rows = [f"{prefix}{word} {line}" for line in lines]
        frames.append(frame.reset_index(drop=True).assign(**{LINE: lines, ROW: rows}))
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True, sort=False)
    return frame, formats[0]


def _layout(frame: pd.DataFrame) -> str:
    """``monitor`` (rftgrad's TRL monitor), ``trl`` (TRL's completions table), ``verl`` (a verl rollout dump)
    or ``generic``, from the column names."""
    names = {str(c).lower() for c in frame.columns}
    if set(MONITOR_COLUMNS) <= names and any(name.startswith("rewards.") for name in names):
        return "monitor"
    if set(TRL_COLUMNS) <= names:
        return "trl"
    if set(VERL_COLUMNS) <= names:
        return "verl"
    return "generic"


def _trl_reward_columns(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """TRL's reward-function columns: the numeric ones between ``completion`` and ``advantage``.

    TRL (``GRPOTrainer.log``, ``RLOOTrainer.log``) writes ``step, prompt, completion``, one column per
    reward function (named after it), the ``log_extra`` columns, then ``advantage``. A numeric
    ``log_extra`` column cannot be told from a reward function: name the columns with ``--reward-col``.
    """
    columns = [str(c) for c in frame.columns if c not in INTERNAL]
    lower = [c.lower() for c in columns]
    start, end = lower.index("completion") + 1, lower.index("advantage")
    return [
        c
        for c in columns[start:end]
        if c not in exclude and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]


def _runs(keys: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal consecutive values of ``keys`` ``(n,)``."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return np.diff(np.r_[starts, len(keys)])


def _blocks(
    keys: pd.Series, steps: pd.Series | None, group_size: int | None, path: Path, wheres: list[str]
) -> tuple[np.ndarray, int, str]:
    """Group index of each row: consecutive blocks of ``G`` rows within each step (TRL's groups).

    TRL's sampler repeats each prompt ``num_generations`` times in a row, so a step's rows are
    consecutive blocks of ``G``; two groups of the same prompt text in one step stay two groups.
    Without ``group_size``, ``G`` is the greatest common divisor of the lengths of the runs of
    equal prompts within the steps (two adjacent groups of one prompt make a run of ``2G``).

    Returns:
        ``(S,)`` block index within its step, ``G``, and where ``G`` came from.
    """
    step_of = np.zeros(len(keys), dtype=np.int64) if steps is None else pd.factorize(steps)[0]  # (S,)
    rows_by_step = pd.Series(np.arange(len(keys))).groupby(step_of)
    position = rows_by_step.cumcount().to_numpy()  # (S,) row within its step
    key_codes = pd.factorize(keys)[0]  # (S,)
    by_step = list(rows_by_step.indices.values())  # each step's rows, in file order (one pass, not one per step)
    if group_size is None:
        lengths = np.concatenate([_runs(key_codes[rows]) for rows in by_step])
        group_size, source = math.gcd(*lengths.tolist()), "inferred"
        if group_size < 2:
            raise _fail(
                path,
                "cannot tell the groups apart: TRL writes each group as num_generations consecutive rows of one "
                "prompt, but here runs of one prompt have lengths with no common divisor > 1; "
                "pass --group-size (TRL's num_generations)",
            )
    else:
        source = "--group-size"
        for rows in by_step:
            if len(rows) % group_size:
                step = "" if steps is None else f" of step {steps.iat[rows[0]]}"
                raise _fail(
                    path,
                    f"{wheres[rows[0]]}: the {len(rows)} rows{step} are not blocks of --group-size {group_size}; "
                    "pass TRL's num_generations",
                )
    block = position // group_size  # (S,)
    codes = pd.DataFrame({"step": step_of, "block": block, "key": key_codes})
    mixed = codes.groupby(["step", "block"])["key"].transform("nunique").to_numpy() > 1
    if (where := _first_where(mixed, wheres)) is not None:
        raise _fail(
            path,
            f"{where}: a block of {group_size} consecutive rows holds several prompts, so the rows are not "
            f"groups of {group_size} ({source}); pass TRL's num_generations as --group-size, or "
            "--group-size 0 to group by prompt text",
        )
    return block, group_size, source


def _reward_columns(
    frame: pd.DataFrame, path: Path, layout: str, requested: list[str] | None, exclude: set[str]
) -> tuple[list[str], str]:
    """The reward column(s) and the row shape: those requested, else by layout (see :func:`read_rollouts`)."""
    shape = "per-sample"
    if requested:
        columns = {str(c).lower() for c in frame.columns}
        for name in requested:
            if name.lower() not in columns:
                _check_not_object(frame, path, name)
        rewards = [_find_column(frame, path, c, (), "--reward-col") for c in requested]
    elif layout == "trl":
        rewards = _trl_reward_columns(frame, exclude)
        shape = "per-function"
    elif layout == "verl" and (penalty := _find_column(frame, path, None, (VERL_OVERLONG_COLUMN,), "")) is not None:
        # verl's DAPO: the dump's score is the raw one, the penalty beside it (docs/verl.md)
        rewards = [_find_column(frame, path, None, ("score",), ""), penalty]
    else:
        found = _find_column(frame, path, None, REWARD_COLUMNS, "--reward-col")
        base = _object_base(frame, REWARD_COLUMNS) if found is None else None
        if base is not None:
            _check_not_object(frame, path, base)
        rewards = [found] if found else _reward_function_columns(frame, exclude)
        if not found and rewards:
            shape = "per-function"
    reward_names = [str(c) for c in rewards if c is not None]
    if not reward_names:
        looked = (
            "numeric reward-function columns between 'completion' and 'advantage'"
            if layout == "trl"
            else f"{', '.join(REWARD_COLUMNS)} and *_reward"
        )
        raise _fail(
            path,
            f"no reward column (looked for {looked}); columns found: {_columns_found(frame)}; "
            "name it with --reward-col",
        )
    return reward_names, shape


def _groups(
    frame: pd.DataFrame,
    path: Path,
    layout: str,
    grouped: bool,
    group_by: str | None,
    group_size: int | None,
    keys: pd.Series,
    steps: pd.Series | None,
    wheres: list[str],
) -> tuple[str, pd.Series, int | None, str | None]:
    """How the samples form groups within their steps (``grouping`` of :class:`RolloutLog`), first rule that applies:

    a per-group row (``rows``); a group column (``column``); blocks of ``G`` rows, given or, in a TRL
    table, inferred (``blocks``); verl's ``uid`` in a v1 dump (``uid``); the prompt text (``prompt``).

    Returns:
        the grouping, ``(S,)`` each sample's group key, ``G`` and its source (blocks only, else None).
    """
    block_size, size_source = None, None
    if grouped:
        grouping = "rows"
        groups = pd.Series(frame[ROW].to_numpy(dtype=object))  # one list row, one group
    elif group_by is not None:
        grouping = "column"
        groups = frame[group_by].map(_key)
        if (where := _first_where(groups.isna(), wheres)) is not None:
            raise _fail(path, f"{where}: no value in group column {group_by!r}; fill it or leave --group-col out")
    elif group_size or (group_size is None and layout == "trl"):
        grouping = "blocks"
        blocks, block_size, size_source = _blocks(keys, steps, group_size, path, wheres)
        groups = pd.Series(blocks)
    elif group_size is None and layout == "verl" and VERL_UID_COLUMN in frame:
        grouping = "uid"  # verl's v1 dump: {uid}_{session}_{index}, grouped by uid as verl's advantages are
        uids = frame[VERL_UID_COLUMN].map(_key)
        if (where := _first_where(uids.isna(), wheres)) is not None:
            raise _fail(
                path, f"{where}: no value in verl's {VERL_UID_COLUMN!r} column; fix the row or pass --group-size 0"
            )
        groups = uids.map(lambda key: key.rsplit("_", 2)[0])
    else:
        grouping = "prompt"
        groups = keys
    return grouping, groups, block_size, size_source


def check_group_size(group_size: Any) -> int | None:  # noqa: ANN401 - any input
    """``--group-size`` as an int: None (the layout decides), 0 (group by prompt) or ``G >= 2``.

    Raises:
        * :exc:`ConfigError`: anything else (a bool, 1, a negative or fractional number, a string).
    """
    if group_size is None:
        return None
    if not is_whole_number(group_size) or int(group_size) == 1 or group_size < 0:
        raise ConfigError(
            f"--group-size takes a whole number >= 2 (TRL's num_generations), or 0 to group by prompt text; "
            f"got {group_size!r}"
        )
    return int(group_size)


@dataclass(frozen=True)
class RolloutLog:
    """A rollout log as one row per sample.

    Attributes:
        * ``samples``: ``(S, ...)`` frame of the scorable samples with ``[step]``, ``group`` (the group's key
          within its step: a block index or the prompt), ``prompt`` (str key), ``reward`` (float64,
          finite) and ``where`` (str, e.g. ``"line 17"``, ``"3.jsonl line 17"``).
        * ``terms``: ``(S + unscorable, ...)`` every sample read, scorable or not: ``[step]``, ``group`` and one
          float64 column per reward column (NaN where a reward function returned ``None``), in file
          order: what TRL's own metrics are computed from (:func:`rftgrad.diagnose.stats.trl_metrics`).
        * ``path``: the file or directory given.
        * ``files``: the files read (one, or a directory's per-step files in step order).
        * ``fmt``: ``jsonl``, ``json``, ``csv``, ``tsv`` or ``parquet``.
        * ``layout``: ``trl`` (TRL's completions table), ``verl`` (a verl rollout dump) or ``generic``.
        * ``shape``: ``per-sample``, ``per-group`` or ``per-function`` (see the module docstring).
        * ``grouping``: ``blocks`` (consecutive blocks of ``group_size`` rows per step, TRL), ``column`` (a
          group column's values per step: ``--group-col``, the TRL monitor's ``group``), ``uid`` (verl's v1
          dump: the ``uid`` part of its ``{uid}_{session}_{index}`` key), ``prompt`` (the samples of one
          prompt text per step) or ``rows`` (a per-group row is one group).
        * ``group_size``: ``G`` of the blocks (None unless ``grouping == "blocks"``).
        * ``group_size_source``: ``"--group-size"`` or ``"inferred"`` (None unless blocks).
        * ``prompt_col``: the column the prompts came from.
        * ``reward_cols``: the column(s) the reward came from (summed with ``reward_weights``).
        * ``reward_weights``: one weight per reward column.
        * ``step_col``: the step column, or None.
        * ``rows``: rows (lines, records) read from the files.
        * ``reference_col``: the column of reference answers (``samples["reference"]``), or None.
        * ``chat_prompts``: the prompts are chat messages (lists of ``{"role", "content"}``); ``prompt``
          then holds their JSON text.
        * ``unscorable``: samples left out because every reward column is empty (TRL: every reward
          function returned ``None``; TRL leaves them out of its means and stds too).
    """

    samples: pd.DataFrame
    terms: pd.DataFrame
    path: Path
    files: tuple[Path, ...]
    fmt: str
    layout: str
    shape: str
    grouping: str
    group_size: int | None
    group_size_source: str | None
    prompt_col: str
    reward_cols: tuple[str, ...]
    reward_weights: tuple[float, ...]
    step_col: str | None
    rows: int
    reference_col: str | None
    chat_prompts: bool
    unscorable: int


def read_rollouts(
    path: str | Path,
    fmt: str | None = None,
    prompt_col: str | None = None,
    reward_col: str | Sequence[str] | None = None,
    reward_weights: Sequence[float] | None = None,
    step_col: str | None = None,
    group_size: int | None = None,
    reference_col: str | None = None,
    group_col: str | None = None,
) -> RolloutLog:
    """Read a rollout log (a file, or a directory of per-step files) into one row per sample.

    See the module docstring for the formats, layouts and shapes.

    Args:
        * ``path``: the log file, or a directory of per-step log files (:func:`log_files`).
        * ``fmt``: ``jsonl``, ``json``, ``csv``, ``tsv``, ``parquet``, or None / ``auto`` (from the suffix).
        * ``prompt_col``: the prompt column (default: the first of :data:`PROMPT_COLUMNS` present, a
          top-level column before a nested one).
        * ``reward_col``: the reward column, or several to sum (default: a TRL table's reward-function
          columns; else the first of :data:`REWARD_COLUMNS` present; else every column with
          ``reward`` as a word of its name).
        * ``reward_weights``: one weight per reward column (default 1 each), as TRL's ``reward_weights``.
        * ``step_col``: the step column; ``"none"`` ignores steps (default: the first of :data:`STEP_COLUMNS`).
        * ``group_size``: ``G``: the rows of a step are consecutive groups of ``G`` (TRL's ``num_generations``);
          0 groups by prompt text; None: blocks for a TRL table (``G`` inferred), prompt text otherwise.
        * ``reference_col``: the column of reference answers (default: the first of :data:`REFERENCE_COLUMNS`
          present); ``"none"`` for no references.
        * ``group_col``: a column naming each sample's group within its step (default: ``group`` in the
          rollout log of :class:`rftgrad.integrations.trl.GroupMonitor`, none otherwise).

    Raises:
        * :exc:`RolloutLogError`: a missing path, a directory without logs, an empty file (or a header only),
          an unknown format, a file that is not UTF-8 text (binary, compressed without ``.gz``,
          UTF-16) or a line that is not, malformed JSON, missing columns (the message lists those
          found), a reward that is not a finite number of magnitude <= ``MAX_ABS_REWARD`` (an
          object, a string, NaN, inf; a missing one is allowed where several reward columns are
          summed, or in a TRL table), a row without prompt or step, rows that are not blocks of
          ``group_size``; the message names the file and the row.
        * :exc:`ConfigError`: an empty column name, a column named twice or for two roles, reward weights
          that are not finite numbers or not one per reward column, a bad ``group_size``.
    """
    path = Path(path)
    prompt_col = _check_name(prompt_col, "--prompt-col")
    step_col = _check_name(step_col, "--step-col")
    reference_col = _check_name(reference_col, "--reference-col")
    group_col = _check_name(group_col, "--group-col")
    group_size = check_group_size(group_size)
    if group_col is not None and group_size is not None:
        raise ConfigError("--group-col and --group-size both say how to form groups; pass one of them")
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
    files = log_files(path, fmt)
    frame, fmt = _read_files(files, fmt)
    layout = _layout(frame)

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
    reward_names, shape = _reward_columns(frame, path, layout, reward_col, {prompt, step or ""})
    for name in reward_names:
        _check_not_object(frame, path, name)
    reference = None
    if reference_col is None or reference_col.lower() != "none":
        reference = _find_column(frame, path, reference_col, REFERENCE_COLUMNS, "--reference-col")
        if reference_col is None and reference in {prompt, step, *reward_names}:  # a found column in another role
            reference = None
    group_by = _find_column(frame, path, group_col, ("group",) if layout == "monitor" else (), "--group-col")
    roles = [("--prompt-col", prompt), ("--step-col", step), ("--reference-col", reference), ("--group-col", group_by)]
    roles += [("--reward-col", c) for c in reward_names]
    for (option, column), (other, same) in itertools.combinations(roles, 2):
        if column is not None and column == same:
            raise ConfigError(f"{option} and {other} both take column {column!r}; give each role its own column")
    weights = tuple(reward_weights) if reward_weights is not None else (1.0,) * len(reward_names)
    if len(weights) != len(reward_names):
        raise ConfigError(
            f"{len(weights)} --reward-weights for {len(reward_names)} reward column(s) {reward_names}; "
            "pass one weight per column"
        )

    frame, grouped = _explode_lists(frame, path, reward_names)
    if grouped:
        shape = "per-group"
    wheres = [_where(row, element) for row, element in zip(frame[ROW], frame[ELEMENT], strict=True)]
    keys = frame[prompt].map(_key)
    if (where := _first_where(keys.isna(), wheres)) is not None:
        raise _fail(path, f"{where}: no prompt in column {prompt!r}; every row needs one (or drop the row)")
    steps = None if step is None else _steps(frame[step], path, step, wheres)
    allow_missing = layout in ("trl", "monitor") or len(reward_names) > 1  # a missing reward: TRL's None
    terms = _reward_terms(frame, path, reward_names, wheres, allow_missing)
    total = total_reward(terms, weights)  # (S,) NaN: unscorable
    _check_total(path, total, wheres)

    grouping, groups, block_size, size_source = _groups(
        frame, path, layout, grouped, group_by, group_size, keys, steps, wheres
    )
    head = {} if steps is None else {"step": steps.to_numpy()}
    all_rows = pd.DataFrame({**head, "group": groups.to_numpy(dtype=object)})
    scorable = ~np.isnan(total)  # (S,)
    samples = all_rows[scorable].reset_index(drop=True)
    samples["prompt"] = keys.to_numpy(dtype=object)[scorable]
    samples["reward"] = total[scorable]
    samples["where"] = np.asarray(wheres, dtype=object)[scorable]
    if reference is not None:
        samples["reference"] = frame[reference].map(_key).to_numpy(dtype=object)[scorable]
    chat = bool(frame[prompt].map(lambda cell: isinstance(cell, list | tuple | dict | np.ndarray)).any())
    if samples.empty:
        raise _fail(path, f"every one of the {len(total)} samples is unscorable (no reward in any reward column)")
    return RolloutLog(
        samples=samples,
        terms=all_rows.join(pd.DataFrame(terms, columns=reward_names)),
        path=path,
        files=tuple(files),
        fmt=fmt,
        layout=layout,
        shape=shape,
        grouping=grouping,
        group_size=block_size,
        group_size_source=size_source,
        prompt_col=prompt,
        reward_cols=tuple(reward_names),
        reward_weights=weights,
        step_col=step,
        rows=int((frame[ELEMENT] < 1).sum()),
        reference_col=reference,
        chat_prompts=chat,
        unscorable=int((~scorable).sum()),
    )

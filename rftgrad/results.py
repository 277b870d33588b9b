"""Output directories: claimed before any work, written atomically, never clobbering what is not ours.

A run directory holds ``run.json`` (the command that wrote it, a fingerprint of its config,
whether it finished, the files it wrote: :class:`RunRecord`), ``config.json`` (what was
asked), ``environment.json`` (versions, device, git commit:
:func:`rftgrad.runtime.environment_info`) and one or more CSV tables.

:func:`claim_run_dir` is the one place that decides whether a command may write into a
directory, before it computes anything:

* the path is not empty, is a directory (or can be created), and can be written;
* no other rftgrad process holds it (a lock file, released when the process ends, even by
  ``kill -9``);
* it holds no input of the command;
* it is new, empty, or the unfinished run of the very same command and config (which then
  resumes); a finished run, another command's run or files rftgrad did not write are refused
  unless ``overwrite=True`` (``--overwrite``), which removes only the files the old run wrote.

Every file is written to a unique temporary name and renamed into place (:func:`atomic_write`),
so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import pandas as pd
import torch

from rftgrad.errors import CheckpointError, OutputError, RftgradError
from rftgrad.runtime import environment_info

try:  # POSIX advisory locks; elsewhere an exclusively created lock file stands in
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "check_out_path",
    "RUN_RECORD",
    "LOCK_FILE",
    "RunRecord",
    "RunDirectory",
    "atomic_write",
    "atomic_write_text",
    "write_checksummed",
    "read_checksummed",
    "config_fingerprint",
    "read_run_record",
    "claim_output_dir",
    "claim_run_dir",
    "free_run_dir",
    "write_run",
    "strict_json",
]

#: the file in a run directory that says which command wrote it and whether it finished.
RUN_RECORD = "run.json"
#: the lock file of a claimed directory (removed when the claim is released).
LOCK_FILE = ".rftgrad.lock"
#: files of a run directory written before ``run.json`` existed (an older rftgrad); ``--overwrite`` removes them.
LEGACY_RUN_FILES = ("config.json", "config.toml", "environment.json", "score.json", "*.csv")


def _file_mode() -> int:
    """The mode a newly created file gets under this process's umask (0o666 & ~umask), read without changing it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o644  # no /proc: the common default umask 022


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` atomically: ``write(stream)`` fills a uniquely named temporary file in the same folder,
    which is flushed to disk (fsync), given the usual file mode (an existing file keeps its own) and renamed
    over ``path`` (``os.replace``; then the folder is fsynced too). On any error the temporary file is
    removed and ``path`` is untouched. The one way rftgrad writes a file (text, checkpoints, figures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else _file_mode()
        os.fchmod(handle, mode)  # mkstemp creates 0600
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)  # the rename itself survives a crash only once its folder is on disk
    return path


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system can open a folder for fsync
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def strict_json(value: Any) -> str:  # noqa: ANN401 - a score: dicts, lists, numbers, strings
    """``value`` as strict JSON text (indented, newline-terminated): a non-finite float (a censored time, an
    undefined correlation) is written as ``null``, never as the non-standard ``NaN`` / ``Infinity`` that
    other JSON readers refuse; numpy scalars are written as numbers."""

    def finite(item: Any) -> Any:  # noqa: ANN401
        if isinstance(item, Mapping):
            return {key: finite(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [finite(inner) for inner in item]
        if hasattr(item, "item") and not isinstance(item, str | bytes):  # a numpy or torch scalar
            item = item.item()
        if isinstance(item, float) and not math.isfinite(item):
            return None
        return item

    return json.dumps(finite(value), indent=2, default=float, allow_nan=False) + "\n"


def atomic_write_text(path: str | Path, text: str | bytes) -> Path:
    """Write ``text`` (UTF-8) or raw ``bytes`` to ``path`` atomically (:func:`atomic_write`)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return atomic_write(path, lambda stream: stream.write(data))


#: the first bytes of a checksummed file (:func:`write_checksummed`): this prefix, 64 hex digits, a newline.
CHECKSUM_PREFIX = b"rftgrad-sha256 "


def write_checksummed(path: str | Path, data: bytes) -> Path:
    """Write ``data`` atomically behind a header line holding its sha256, so that :func:`read_checksummed`
    can tell a complete file from a truncated or corrupted one (training checkpoints)."""
    header = CHECKSUM_PREFIX + hashlib.sha256(data).hexdigest().encode("ascii") + b"\n"
    return atomic_write_text(path, header + data)


def read_checksummed(path: str | Path) -> bytes:
    """The data of a file written by :func:`write_checksummed`, verified against its checksum.

    Raises :class:`~rftgrad.errors.CheckpointError`, naming the file to delete, when the file is
    unreadable, has no checksum header (written by an older rftgrad, or not a checkpoint) or its
    content does not match (truncated or corrupted).
    """
    path = Path(path)
    fix = f"delete it (rm {path}) and run the same command again to redo that part from its start"
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror}); {fix}") from None
    header, newline, data = raw.partition(b"\n")
    if not newline or not header.startswith(CHECKSUM_PREFIX):
        raise CheckpointError(f"checkpoint {path} has no checksum (damaged, or from an older rftgrad); {fix}")
    if hashlib.sha256(data).hexdigest().encode("ascii") != header[len(CHECKSUM_PREFIX) :]:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt (checksum mismatch); {fix}")
    return data


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """sha256 of the config as sorted JSON: two runs match when their fingerprints are equal."""
    return hashlib.sha256(json.dumps(dict(config), sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` says about a directory."""

    command: str  # e.g. "run compare", "exact", "diagnose"
    fingerprint: str  # config_fingerprint of its config ("" when unknown: a run of an older rftgrad)
    finished: bool
    files: tuple[str, ...]  # names, relative to the directory, of the files the run wrote


def read_run_record(directory: str | Path) -> RunRecord | None:
    """The :class:`RunRecord` of ``directory``, or None when rftgrad never wrote there.

    A directory written before ``run.json`` existed (``config.json`` naming an ``experiment`` or a
    ``command``) reads as a finished run of that command with an unknown fingerprint.
    """
    directory = Path(directory)
    record_path = directory / RUN_RECORD
    if record_path.is_file():
        try:
            data = json.loads(record_path.read_text(encoding="utf-8"))
            return RunRecord(str(data["command"]), str(data["fingerprint"]), bool(data["finished"]),
                             tuple(str(name) for name in data["files"]))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise OutputError(
                f"{record_path} is unreadable ({type(err).__name__}); delete it or choose another --out"
            ) from None
    legacy = directory / "config.json"
    if not legacy.is_file():
        return None
    try:
        config = json.loads(legacy.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # someone else's config.json
    if not isinstance(config, dict):
        return None
    if "experiment" in config:
        command = f"run {config['experiment']}"
    elif isinstance(config.get("command"), str):
        command = config["command"]
    else:
        return None
    files = sorted({path.name for pattern in LEGACY_RUN_FILES for path in directory.glob(pattern)})
    return RunRecord(command, "", True, tuple(files))


def _write_record(directory: Path, record: RunRecord) -> None:
    data = {"command": record.command, "fingerprint": record.fingerprint, "finished": record.finished,
            "files": list(record.files)}  # fmt: skip
    atomic_write_text(directory / RUN_RECORD, json.dumps(data, indent=2) + "\n")


def _contents(directory: Path) -> list[str]:
    """The names in ``directory`` other than its lock file."""
    return sorted(name for name in os.listdir(directory) if name != LOCK_FILE)


def _acquire_lock(directory: Path) -> int:
    """An open descriptor holding the exclusive lock on ``directory``'s lock file.

    The holder removes the lock file before it lets go (:meth:`RunDirectory.release`), so a
    process that locked a file just removed checks that its descriptor is still the file at
    the path, and retries otherwise.
    """
    path = directory / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, _file_mode())
        if fcntl is None:  # pragma: no cover - Windows: the lock file itself is the lock
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(
                f"{directory} is in use by another rftgrad process (pid {holder}); "
                "wait for it to finish or choose another --out"
            ) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


class RunDirectory:
    """A claimed output directory (:func:`claim_run_dir`), locked against other rftgrad processes until released.

    Use it as a context manager: leaving the block releases the lock; leaving it with an
    error removes a directory the claim created unless it holds checkpoints to resume from
    (an :class:`~rftgrad.errors.RftgradError`, bad input found mid-run, removes it anyway).
    """

    def __init__(self, path: Path, made: list[Path], lock: int) -> None:
        self.path = path
        self.made = made  # the folders the claim created, deepest (the directory itself) first
        self.command = ""  # what claim_run_dir claimed it for (empty for a plain claim_output_dir)
        self.fingerprint = ""
        self.resumed = False  # it holds an unfinished run of this command and config, which continues
        self.preexisting: frozenset[str] = frozenset()  # names there before the run (kept by --overwrite into them)
        self._lock: int | None = lock

    @property
    def created(self) -> bool:
        """Whether the claim created the directory."""
        return bool(self.made)

    def finish(self) -> None:
        """Record the run as finished, with the files it wrote: every name in the directory that was not
        there when it was claimed (so ``--overwrite`` later removes these and nothing else)."""
        names = [name for name in _contents(self.path) if name not in self.preexisting and name != RUN_RECORD]
        _write_record(self.path, RunRecord(self.command, self.fingerprint, True, tuple(names)))

    def release(self) -> None:
        """Remove the lock file and let go of the lock (idempotent)."""
        if self._lock is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.path / LOCK_FILE).unlink()
        os.close(self._lock)
        self._lock = None

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
        if error is None or not self.created or not self.path.is_dir():
            return
        unfinished_work = (self.path / "checkpoints").exists() and not isinstance(error, RftgradError)
        if not unfinished_work:
            shutil.rmtree(self.path, ignore_errors=True)
            _remove_empty(self.made[1:])  # and the parents the claim created, e.g. runs/ of runs/compare


def check_out_path(path: str | Path) -> None:
    """Refuse an output path that is an empty string (``Path("")`` would be the working directory)."""
    if str(path).strip() == "":
        raise OutputError("the output directory is an empty string; give a directory, e.g. --out runs/mine")


def claim_output_dir(path: str | Path, *, inputs: Sequence[str | Path] = ()) -> RunDirectory:
    """Claim ``path`` as an output folder: check it and lock it, nothing more (no run record).

    Refuses with :class:`~rftgrad.errors.OutputError` (one line naming the fix) when ``path`` is an
    empty string or a file, cannot be created or written, is held by another rftgrad process, or
    contains one of ``inputs``. Commands whose outputs are whole runs use :func:`claim_run_dir`;
    ``rftgrad figures`` uses this and checks each file it would replace itself.
    """
    check_out_path(path)
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory} is a file, not a directory; choose another --out")
    for item in inputs:
        source = Path(item).resolve()
        if source == directory.resolve() or directory.resolve() in source.parents:
            raise OutputError(f"{directory} holds the input {item}, which writing there could replace; "
                              "choose another --out")  # fmt: skip
    made = _missing_folders(directory)  # the folders mkdir will create, deepest first
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = _acquire_lock(directory)
    except (OSError, OutputError) as err:
        _remove_empty(made)
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"cannot write to {directory}: {err.strerror}; choose a writable --out") from None
    return RunDirectory(directory, made, lock)


def _missing_folders(directory: Path) -> list[Path]:
    """``directory`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where they are empty: what a refused or failed claim created."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def claim_run_dir(
    path: str | Path,
    command: str,
    fingerprint: str,
    *,
    overwrite: bool = False,
    resumable: bool = False,
    inputs: Sequence[str | Path] = (),
) -> RunDirectory:
    """Claim ``path`` for a run of ``command`` with config ``fingerprint``, before any work is done.

    Refuses with :class:`~rftgrad.errors.OutputError` (one line naming the fix) where
    :func:`claim_output_dir` does, and when ``path`` holds anything but nothing or an unfinished run
    of this very command and config. With ``overwrite`` a previous rftgrad run there is replaced
    (only the files it recorded are removed) and a folder of other files is written into. An
    unfinished matching run is resumed when ``resumable`` (``RunDirectory.resumed``), else started
    again.
    """
    claim = claim_output_dir(path, inputs=inputs)
    claim.command, claim.fingerprint = command, fingerprint
    directory = claim.path
    try:
        record = read_run_record(directory)
        contents = _contents(directory)
        if record is None:
            if contents and not overwrite:
                shown = ", ".join(contents[:3]) + (", ..." if len(contents) > 3 else "")
                raise OutputError(f"{directory} is not empty ({shown}) and holds no rftgrad run; choose a new or "
                                  "empty --out, or pass --overwrite to write into it")  # fmt: skip
        elif record.command == command and record.fingerprint == fingerprint and not record.finished:
            claim.resumed = resumable
        elif overwrite:
            for name in (*record.files, "checkpoints", RUN_RECORD):
                target = directory / name
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
        else:
            raise OutputError(_occupied(directory, record, command, fingerprint))
        if not claim.resumed:
            _write_record(directory, RunRecord(command, fingerprint, False, ()))
        claim.preexisting = frozenset(_contents(directory)) - {RUN_RECORD, "checkpoints"}
    except BaseException:
        claim.release()
        raise
    return claim


def _occupied(directory: Path, record: RunRecord, command: str, fingerprint: str) -> str:
    """The refusal of a directory that holds another run."""
    if record.command == command and record.fingerprint == fingerprint:
        return f"{directory} already holds this finished run; pass --overwrite to run it again, or choose another --out"
    state = "finished" if record.finished else "unfinished"
    if record.command == command:
        what = f"an {state} `rftgrad {command}` run with another config"
    else:
        what = f"a{'n' if state == 'unfinished' else ''} {state} `rftgrad {record.command}` run"
    return f"{directory} holds {what}; choose another --out, or pass --overwrite to replace it"


def free_run_dir(base: str | Path, command: str, fingerprint: str) -> Path:
    """The default output directory: ``base``, else ``base-2``, ``base-3``, ...: the unfinished run of this
    command and config if one of them holds it (to resume), else the first that is absent or empty."""
    base = Path(base)
    first_free: Path | None = None
    for index in range(1, 10_000):
        candidate = base if index == 1 else base.with_name(f"{base.name}-{index}")
        if not candidate.exists():
            return first_free or candidate
        if not candidate.is_dir():
            continue
        with contextlib.suppress(OutputError, OSError):
            record = read_run_record(candidate)
            if record and (record.command, record.fingerprint, record.finished) == (command, fingerprint, False):
                return candidate
            if first_free is None and not _contents(candidate):
                first_free = candidate
    raise OutputError(f"{base} and 9999 numbered siblings are taken; pass --out")


def write_run(
    out_dir: str | Path,
    config: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    device: torch.device | str,
    environment: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``config.json``, ``environment.json`` and ``<name>.csv`` for each table.

    ``environment`` is the :func:`~rftgrad.runtime.environment_info` of the process that computed the
    tables when that was another one (a worker of :mod:`rftgrad.executors`); default: this process's."""
    out = Path(out_dir)
    info = environment_info(device) if environment is None else dict(environment)
    atomic_write_text(out / "config.json", json.dumps(dict(config), indent=2, sort_keys=True, default=str) + "\n")
    atomic_write_text(out / "environment.json", json.dumps(info, indent=2, default=str) + "\n")
    for name, frame in tables.items():
        atomic_write_text(out / f"{name}.csv", frame.to_csv(index=False))
    return out

"""A local, append-only spool of records on their way to the warehouse: every record with
the default (writer process) warehouse sink, the records the database could not take with
the in-process one.

Layout, under ``<root>/spool/``::

    warehouse-<pid>-<hex>.jsonl            one file per warehouse sink instance (appended)
    warehouse-<pid>-<hex>.jsonl.replaying  a file a replayer claimed (left by a crash: the
                                           next replay takes it again)
    rejected.jsonl                         records the warehouse refused on replay
    .lock                                  held briefly by appenders and by claims
    .replay.lock                           held by the one replayer at work

Each line is ``{"type": "run"|"component", "record": <to_dict()>}``, or a component in
its compact form (a JSON array, :mod:`mlobs.core.compact`: what the default warehouse sink
writes for most components). A batch is written
with one ``write`` and fsynced before :meth:`Spool.append` returns, so a record the sink
reports as spooled survives a crash. A crash in the middle of a write leaves a torn last
line: it is skipped on read and reported (its records are still in the manifest).

Replaying them into the warehouse: :mod:`mlobs.sinks.spool_replay`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from mlobs.core.atomic_file import FILE_MODE, fsync_directory
from mlobs.core.compact import is_compact, record_from_compact
from mlobs.core.records import ComponentRecord, RunRecord, SinkItem, materialize, record_json

log = logging.getLogger("mlobs.sinks.spool")

SPOOL_SUFFIX = ".jsonl"
CLAIMED_SUFFIX = ".jsonl.replaying"
REJECTED_NAME = "rejected.jsonl"
LOCK_NAME = ".lock"
REPLAY_LOCK_NAME = ".replay.lock"

Record = RunRecord | ComponentRecord


class SpoolBusyError(Exception):
    """Another replayer holds the spool (only raised when not waiting for it)."""


def encode(record: Record) -> str:
    kind = "run" if isinstance(record, RunRecord) else "component"
    return json.dumps({"type": kind, "record": record.to_dict()}, ensure_ascii=False,
                      separators=(",", ":"), default=str)


_RUN_HEAD, _COMPONENT_HEAD = b'{"type":"run","record":', b'{"type":"component","record":'


def encode_line(record: Record) -> bytes:
    """The spool line of ``record`` (with its newline), as :func:`encode` writes it. The
    record's manifest JSON is reused when the manifest sink encoded it already
    (``record_json``); a record JSON cannot hold strictly (NaN) is written leniently, as
    before, for the warehouse to judge."""
    try:
        body = record_json(record)
    except (TypeError, ValueError):
        return encode(record).encode() + b"\n"
    head = _RUN_HEAD if isinstance(record, RunRecord) else _COMPONENT_HEAD
    return b"".join((head, body, b"}\n"))


def line_of(item: SinkItem) -> bytes:
    """The spool line of a queued item: a finished invocation's compact line when it
    has one (``spool_line``), else its record's (:func:`encode_line`).

    Raises:
        Exception: what building the item's record raises.
    """
    spool_line = getattr(item, "spool_line", None)
    line = None if spool_line is None else spool_line()
    return encode_line(materialize(item)) if line is None else line


def decode(line: str | bytes) -> Record:
    """One spool line as a record. Raises ValueError (incl. JSON errors), KeyError,
    TypeError, IndexError or AttributeError (JSON of the wrong shape)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:  # NaN or infinity, which lenient lines may hold
        data = json.loads(line)
    if is_compact(line):
        return record_from_compact(data)
    kind, payload = data["type"], data["record"]
    if kind == "run":
        return RunRecord.from_dict(payload)
    if kind == "component":
        return ComponentRecord.from_dict(payload)
    raise ValueError(f"unknown record type {kind!r}")


#: Descriptors of the locks this process holds now: a forked child closes its copies, as
#: an flock belongs to the open file, which the child shares (it would hold the parent's
#: lock until it exits).
_held: set[int] = set()


def _close_held_in_child() -> None:
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


@contextmanager
def flock(path: Path, *, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created when missing).

    Raises:
        SpoolBusyError: ``blocking`` is False and another holder has it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    _held.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise SpoolBusyError(f"another process or thread is replaying {path.parent}") \
                from None
        yield
    finally:
        _held.discard(fd)
        os.close(fd)  # releases the lock


class Spool:
    """The spool file of one warehouse sink instance in ``directory``.

    The file is created at the first :meth:`append`; after a replay claimed it, the next
    append creates it again under the same name (a new file; a later claim merges it into
    the claimed one if that is still there). Appends from one instance must not run
    concurrently (a sink only appends from its worker thread).

    Between appends the instance keeps the file and the append lock open: a batch costs
    a lock, a ``stat`` (has a replay claimed the file?), one ``write``, one fsync and an
    unlock. Each of those lets go of the GIL, and a sink thread waits up to CPython's
    switch interval (5 ms) to get it back from a CPU-bound pipeline.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._fd: int | None = None  # the file, while it is ours (not claimed)
        self._ino = self._size = -1  # its inode, and its size after our last write
        self._lock_fd: int | None = None
        self._clean_end = False  # our last write ended a line
        self._new_path()

    def _new_path(self) -> None:
        self._pid = os.getpid()
        self.path = self.directory / f"warehouse-{self._pid}-{uuid.uuid4().hex[:12]}" \
                                     f"{SPOOL_SUFFIX}"
        # A forked child's copies of the parent's descriptors are left alone (closing
        # them is harmless, using them is not: an flock is shared with the parent's).
        self._fd = self._lock_fd = None

    def append(self, records: Sequence[Record]) -> int:
        """Append ``records`` as one batch and fsync it.

        Returns:
            The number of records written.

        Raises:
            OSError: the spool cannot be written (disk full, read-only, ...).
        """
        if not records:
            return 0
        self.append_lines(b"".join([encode_line(record) for record in records]))
        return len(records)

    def append_lines(self, data: bytes) -> None:
        """Append encoded spool lines (each ending with a newline) as one batch, with one
        ``write`` and one fsync.

        Raises:
            OSError: the spool cannot be written (disk full, read-only, ...).
        """
        if not data:
            return
        if os.getpid() != self._pid:  # a forked child writes a file of its own
            self._new_path()
        if self._lock_fd is None:
            self._open_lock()
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # type: ignore[arg-type]
        try:
            fd = self._file()
            if not self._clean_end and not ends_a_line(fd):
                # A write was cut short (ours, or another writer's): start on a line of
                # our own.
                data = b"\n" + data
            self._clean_end = False
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            self._size += len(data)
            self._clean_end = True
        except OSError:
            self._close_file()  # opened again (and checked) by the next batch
            raise
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)  # type: ignore[arg-type]

    def _open_lock(self) -> None:
        created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        if created:
            fsync_directory(self.directory.parent)
        self._lock_fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, FILE_MODE)

    def _file(self) -> int:
        """The spool file's descriptor (under the lock): the one kept open unless a replay
        claimed (renamed) that file since, else a new file under the same name."""
        fd = self._fd
        if fd is not None:
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == self._ino:
                # Grown by someone else since our last write: its end is checked.
                self._clean_end = self._clean_end and current.st_size == self._size
                self._size = current.st_size
                return fd
            self._close_file()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL,
                         FILE_MODE)
            fsync_directory(self.directory)  # the new file's name survives a crash
        except FileExistsError:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND, FILE_MODE)
        except FileNotFoundError:  # the directory went away: made again
            self.close()
            self._open_lock()
            return self._file()
        status = os.fstat(fd)
        self._fd, self._ino, self._size, self._clean_end = fd, status.st_ino, \
            status.st_size, False
        return fd

    def _close_file(self) -> None:
        fd, self._fd = self._fd, None
        _close_quietly(fd)

    def close(self) -> None:
        """Release the file and the lock (the next append opens them again)."""
        self._close_file()
        lock_fd, self._lock_fd = self._lock_fd, None
        _close_quietly(lock_fd)


def _close_quietly(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def ends_a_line(fd: int) -> bool:
    """Whether the file open at ``fd`` (readable) is empty or ends with a newline."""
    size = os.fstat(fd).st_size
    return not size or os.pread(fd, 1, size - 1) == b"\n"


def spool_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Spool files (appended and claimed) in ``directory``, oldest first."""
    directory = Path(directory)
    try:
        entries = [p for p in directory.iterdir()
                   if p.name != REJECTED_NAME and not p.name.startswith(".")
                   and (p.name.endswith(SPOOL_SUFFIX) or p.name.endswith(CLAIMED_SUFFIX))]
    except OSError:
        return []

    def key(path: Path) -> tuple[float, str]:
        try:
            return (path.stat().st_mtime, path.name)
        except OSError:
            return (0.0, path.name)

    return sorted(entries, key=key)


def has_spooled(directory: str | os.PathLike[str]) -> bool:
    """True when some spool file in ``directory`` holds records."""
    for path in spool_files(directory):
        try:
            if path.stat().st_size > 0:
                return True
        except OSError:
            continue
    return False


@dataclass(frozen=True)
class SpoolContents:
    """What a spool directory holds (records counted by their lines; a torn line counts).

    Attributes:
        files: spool files holding records (appended or claimed).
        waiting: records in them, not yet in the warehouse.
        rejected: records the warehouse refused on replay, kept in ``rejected.jsonl``.
    """

    files: int = 0
    waiting: int = 0
    rejected: int = 0


def spool_contents(directory: str | os.PathLike[str]) -> SpoolContents:
    """Count what ``directory`` holds; an unreadable file counts as empty (a replay in
    another process may remove it while this reads)."""
    directory = Path(directory)
    files = waiting = 0
    for path in spool_files(directory):
        lines = count_lines(path)
        files += lines > 0
        waiting += lines
    return SpoolContents(files, waiting, count_lines(directory / REJECTED_NAME))


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as source:
            return sum(1 for line in source if line.strip())
    except OSError:
        return 0

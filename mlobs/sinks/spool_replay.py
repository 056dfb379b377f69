"""Replaying the spool (:mod:`mlobs.sinks.spool`) into the warehouse.

Replaying (:func:`replay`) claims every spool file by renaming it (under ``.lock``, so no
appender writes into a claimed file: the appender's next batch starts a new file), then
reads the claimed files as streams, twice: the first pass writes the run records of every
file, the second each file's component records (so components always find their run),
through ``WarehouseStore.write`` in chunks, deleting each file once everything in it was
written. Only one chunk of records is held in memory, however large the spool grew during
an outage. When the database goes away in the middle, the file being written is cut down
(atomically) to the records not written yet and later files stay as they are, for the
next replay. The store's writes are idempotent (runs upserted, components and events
insert-or-ignore by id), so a replay interrupted anywhere — even killed between a write
and the rewrite — can simply be repeated: nothing is lost and nothing is duplicated in
the warehouse, and a refused record met again is not added to ``rejected.jsonl`` twice.
``.replay.lock`` makes sure two replayers (warehouse writers, a sink's worker thread,
``mlobs ingest --spool``) never work at once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mlobs.core.atomic_file import fsync_directory, write_atomically
from mlobs.core.classify import exception_summary
from mlobs.core.errors import InvalidRecordError
from mlobs.core.records import ComponentRecord, RunRecord
from mlobs.sinks.spool import (
    CLAIMED_SUFFIX,
    LOCK_NAME,
    REJECTED_NAME,
    REPLAY_LOCK_NAME,
    SPOOL_SUFFIX,
    Record,
    count_lines,
    decode,
    encode,
    ends_a_line,
    flock,
    spool_files,
)

if TYPE_CHECKING:
    from mlobs.warehouse.store import WarehouseStore

log = logging.getLogger("mlobs.sinks.spool")


@dataclass
class ReplayReport:
    """What a replay did.

    Attributes:
        files: spool files taken up.
        runs, components: records written to the warehouse (a record already there counts
            too: writes are idempotent).
        pending: records still in the spool (the database went away again).
        torn: unreadable lines skipped (a torn last line after a crash, or garbage).
        rejected: records the warehouse refused; moved to ``rejected.jsonl``.
        error: why the replay stopped early (database away), else None.
        problems: one message per torn line or refused record.
        refused: (run_id, the warehouse's reason) of each refused record.
    """

    files: int = 0
    runs: int = 0
    components: int = 0
    pending: int = 0
    torn: int = 0
    rejected: int = 0
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.error is None and self.pending == 0


#: Claimed files up to ``chunk_size`` times this many bytes in all (about one chunk of
#: component lines) are written in one pass and one transaction; larger ones in chunks,
#: in two passes.
ONE_WRITE_BYTES_PER_RECORD = 512
#: How every run line starts (:func:`encode` writes "type" first, without spaces): the
#: first pass of a replay decodes these lines only.
_RUN_LINE_PREFIX = b'{"type":"run",'


class _Interrupted(Exception):
    """The database went away while a file's components were written; ``offset`` is where
    the first record not written starts."""

    def __init__(self, cause: Exception, offset: int) -> None:
        super().__init__()
        self.cause, self.offset = cause, offset


class _LineCounts(NamedTuple):
    runs: int
    others: int  # components (and unreadable lines)


def _lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line) of each non-blank line, read as a stream."""
    with open(path, "rb") as source:
        offset = 0
        for number, line in enumerate(source, 1):
            if line.strip():
                yield number, offset, line
            offset += len(line)


class _Replay:
    """One replay's writes to ``store``: chunks of records, refused records set aside in
    ``rejected.jsonl`` (once each, though an interrupted replay meets them again), and
    what happened in ``report``."""

    def __init__(self, directory: Path, store: WarehouseStore, chunk_size: int) -> None:
        self.store, self.chunk_size = store, chunk_size
        self.rejected_path = directory / REJECTED_NAME
        self._rejected_ids: set[tuple[str, str]] | None = None  # read at the first refusal
        self.report = ReplayReport()

    def runs(self, paths: list[Path]) -> dict[Path, _LineCounts]:
        """First pass: write the run records of every file; count each file's lines.
        Raises what the store raises when the database fails."""
        counts: dict[Path, _LineCounts] = {}
        chunk: list[Record] = []
        for path in paths:
            runs = others = 0
            for number, _, line in _lines(path):
                if not line.startswith(_RUN_LINE_PREFIX):
                    others += 1
                    continue
                runs += 1
                record = self._decode(path, number, line)
                if record is not None:
                    chunk.append(record)
                if len(chunk) >= self.chunk_size:
                    self._write(chunk)
                    chunk = []
            counts[path] = _LineCounts(runs, others)
        if chunk:
            self._write(chunk)
        return counts

    def at_once(self, paths: list[Path]) -> bool:
        """Write every record of ``paths`` in one ``store.write`` (runs first); False
        when the database failed (nothing is removed)."""
        runs: list[Record] = []
        components: list[Record] = []
        for path in paths:
            for number, _, line in _lines(path):
                record = self._decode(path, number, line)
                if record is not None:
                    (runs if isinstance(record, RunRecord) else components).append(record)
        try:
            self._write(runs + components)
        except Exception:  # the database is away: the caller replays in two passes
            return False
        return True

    def components(self, path: Path) -> None:
        """Second pass, one file: write its component records in chunks.

        Raises:
            _Interrupted: the database failed; nothing from its offset on was written.
        """
        chunk: list[Record] = []
        chunk_offset = 0
        for number, offset, line in _lines(path):
            if line.startswith(_RUN_LINE_PREFIX):
                continue  # written by the first pass
            record = self._decode(path, number, line)
            if record is None:
                continue
            if not chunk:
                chunk_offset = offset
            chunk.append(record)
            if len(chunk) >= self.chunk_size:
                self._write_from(chunk, chunk_offset)
                chunk = []
        if chunk:
            self._write_from(chunk, chunk_offset)

    def _write_from(self, chunk: list[Record], offset: int) -> None:
        try:
            self._write(chunk)
        except Exception as exc:  # the database is away (again)
            raise _Interrupted(exc, offset) from exc

    def _decode(self, path: Path, number: int, line: bytes) -> Record | None:
        """The line's record, or None after reporting it as torn (the last line, cut
        short by a crash before its newline) or unreadable."""
        try:
            return decode(line.decode())
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            report = self.report
            report.torn += 1
            what = "unreadable line" if line.endswith(b"\n") else "torn last line"
            message = f"{path}: {what} {number} skipped ({type(exc).__name__}: {exc})"[:300]
            report.problems.append(message)
            log.warning("mlobs spool: %s", message)
            return None

    def _write(self, chunk: list[Record]) -> None:
        report = self.report
        runs = [r for r in chunk if isinstance(r, RunRecord)]
        components = [r for r in chunk if isinstance(r, ComponentRecord)]
        try:
            self.store.write(runs, components)
        except InvalidRecordError:
            # One refused record must not keep the others out (nor the spool forever).
            for record in chunk:
                is_run = isinstance(record, RunRecord)
                try:
                    self.store.write([record] if is_run else [], [] if is_run else [record])
                except InvalidRecordError as exc:
                    self._reject(record, str(exc))
                else:
                    report.runs += is_run
                    report.components += not is_run
        else:
            report.runs += len(runs)
            report.components += len(components)

    def _reject(self, record: Record, reason: str) -> None:
        line = json.loads(encode(record))
        key = _record_key(line)
        self.report.rejected += 1
        self.report.problems.append(f"refused by the warehouse: {key[1]}: {reason}"[:500])
        if self._rejected_ids is None:
            self._rejected_ids = _rejected_ids(self.rejected_path)
        if key in self._rejected_ids:
            return  # set aside (and reported) by an earlier replay that stopped early
        self.report.refused.append((record.run_id, reason[:300]))
        self._rejected_ids.add(key)
        with open(self.rejected_path, "ab") as out:
            out.write((json.dumps({"reason": reason[:1000], "line": line}, default=str)
                       + "\n").encode())
            out.flush()
            os.fsync(out.fileno())


def _record_key(line: dict[str, Any]) -> tuple[str, str]:
    """(type, id) of a spool line's record: a run's run_id, a component's
    component_run_id."""
    record = line.get("record") or {}
    name = "run_id" if line.get("type") == "run" else "component_run_id"
    return str(line.get("type")), str(record.get(name))


def _rejected_ids(path: Path) -> set[tuple[str, str]]:
    ids = set()
    try:
        with open(path, "rb") as source:
            for raw in source:
                try:
                    ids.add(_record_key(json.loads(raw)["line"]))
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a torn line: its record is written again
    except FileNotFoundError:
        pass
    return ids


def _keep_from(path: Path, offset: int) -> int:
    """Cut ``path`` down to its lines from ``offset`` on, less the run lines (written by
    the first pass), atomically. Returns the number of lines kept. A torn or unreadable
    line among them is kept too (it is reported when the next replay reaches it)."""
    kept = 0

    def remainder() -> Iterator[bytes]:
        nonlocal kept
        with open(path, "rb") as source:
            source.seek(offset)
            for line in source:
                if line.strip() and not line.startswith(_RUN_LINE_PREFIX):
                    kept += 1
                    yield line

    write_atomically(path, remainder(), durable=True)
    return kept


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_directory(path.parent)


def _claim(directory: Path) -> list[Path]:
    """Rename every appended spool file to its claimed name (under the append lock)."""
    claimed: dict[Path, None] = {}  # ordered, each file once (a merge may list it first)
    with flock(directory / LOCK_NAME):
        for path in spool_files(directory):
            if path.name.endswith(CLAIMED_SUFFIX):
                claimed[path] = None  # left by a replayer that stopped: take it again
                continue
            target = path.with_name(path.name[:-len(SPOOL_SUFFIX)] + CLAIMED_SUFFIX)
            if target.exists():
                # A replay was cut off and the writer, whose file name stays the same,
                # appended again: its new records go after the claimed ones, on a line
                # of their own (the claimed file may end in a torn line).
                with open(target, "a+b") as out, open(path, "rb") as source:
                    if not ends_a_line(out.fileno()):
                        out.write(b"\n")
                    shutil.copyfileobj(source, out)
                    out.flush()
                    os.fsync(out.fileno())
                path.unlink()
            else:
                os.replace(path, target)
            claimed[target] = None
        if claimed:
            fsync_directory(directory)
    return list(claimed)


def replay(directory: str | os.PathLike[str], store: WarehouseStore, *, chunk_size: int = 500,
           wait: bool = True) -> ReplayReport:
    """Write the spooled records in ``directory`` to ``store`` and remove them.

    Args:
        directory: the spool directory (``<root>/spool``).
        store: a ``WarehouseStore`` (anything with its ``write(runs, components)``).
        chunk_size: records per ``write`` (one transaction each).
        wait: wait for another replayer to finish; when False, raise SpoolBusyError.

    Returns:
        A :class:`ReplayReport`; ``report.error`` is set when the database failed (the
        records not written stay in the spool).

    Raises:
        SpoolBusyError: another replayer is at work and ``wait`` is False.
        OSError: the spool directory cannot be read or rewritten.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return ReplayReport()
    with flock(directory / REPLAY_LOCK_NAME, blocking=wait):
        paths = _claim(directory)
        if sum(_size(path) for path in paths) <= chunk_size * ONE_WRITE_BYTES_PER_RECORD:
            # A few hundred records (a run's end, a writer's batch): one pass and one
            # transaction instead of two. When it fails, the two passes below keep what
            # was not written, as for a larger spool.
            once = _Replay(directory, store, chunk_size)
            if once.at_once(paths):
                once.report.files = len(paths)
                for path in paths:
                    _remove(path)
                return once.report
        work = _Replay(directory, store, chunk_size)
        report = work.report
        report.files = len(paths)
        # Every file's runs before any component: a worker's components can sit in
        # another file than their run (the run spooled by the orchestrating process).
        try:
            counts = work.runs(paths)
        except Exception as exc:  # the database is away (again): every file stays
            report.error = exception_summary(exc)
            report.pending = sum(count_lines(path) for path in paths)
            return report
        with_components = [path for path in paths if counts[path].others]
        for path in paths:
            if not counts[path].others:
                _remove(path)  # runs only: all written
        for index, path in enumerate(with_components):
            try:
                work.components(path)
            except _Interrupted as stop:
                report.error = exception_summary(stop.cause)
                # Later files stay as they are: their runs are written again next time
                # (idempotent upserts, in the same order).
                report.pending = _keep_from(path, stop.offset) + sum(
                    sum(counts[later]) for later in with_components[index + 1:])
                return report
            _remove(path)  # torn lines go too (they were reported)
    return report

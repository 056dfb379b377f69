"""The warehouse writer's input thread: reads the parent's lines, keeps the parent's
manifests (when asked to) and hands the commands to the writer's loop
(:mod:`mlobs.sinks.writer_process`).

It runs on a thread of its own so that the manifests never wait for the database: the
writer's loop may spend seconds in a transaction, or minutes waiting for an absent
warehouse, while this thread goes on reading the pipe and rewriting manifests.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
from pathlib import Path
from typing import NamedTuple

from mlobs.core.classify import exception_summary
from mlobs.core.records import ComponentRecord, RunRecord
from mlobs.sinks.manifest_sink import ManifestSink
from mlobs.sinks.spool import decode

log = logging.getLogger("mlobs.sinks.writer")

#: How often due rewrites of running runs' manifests are looked for while lines wait.
PACE_S = 0.05
_READ_BYTES = 1 << 20


class Command(NamedTuple):
    """What the input thread hands to the writer's loop.

    ``kind``: ``"n"`` (records were appended), ``"f"`` (a flush, ``seq`` its number; the
    manifests of the lines before it are written) or ``"eof"`` (the parent is gone);
    ``manifest_refused``: (run_id, reason) of each record the manifests could not take
    since the last command that carried them.
    """

    kind: str
    seq: str = ""
    manifest_refused: tuple[tuple[str, str], ...] = ()


class WriterInput:
    """Reads ``stdin_fd`` until its end, on the calling thread (:meth:`run`).

    Args:
        stdin_fd: the pipe from the parent.
        commands: where the commands go (the writer's loop takes them).
        runs_dir: ``<root>/runs`` when this writer keeps the parent's manifests, else
            None (record lines are then only a sign that records were appended).
    """

    def __init__(self, stdin_fd: int, commands: queue.Queue[Command],
                 runs_dir: Path | None) -> None:
        self.stdin_fd = stdin_fd
        self.commands = commands
        self.manifests = None if runs_dir is None else ManifestSink(runs_dir,
                                                                    resume_from_disk=True)
        self._refused: list[tuple[str, str]] = []
        #: set once the first input was handled (or the input ended).
        self.first_input = threading.Event()

    def run(self) -> None:
        buffer = b""
        while True:
            chunk = self._read()
            if chunk == b"":
                self._flush_manifests()
                self.commands.put(Command("eof", manifest_refused=self._take_refused()))
                self.first_input.set()
                return
            *lines, buffer = (buffer + (chunk or b"")).split(b"\n")
            self._handle(lines)
            self._pace()
            if chunk:
                self.first_input.set()

    def _read(self) -> bytes | None:
        """The next bytes from the parent; None after a pause with nothing to read (time
        to rewrite what is due); b"" at the end."""
        timeout = PACE_S if self._dirty() else None
        try:
            readable, _, _ = select.select([self.stdin_fd], [], [], timeout)
            return os.read(self.stdin_fd, _READ_BYTES) if readable else None
        except OSError:  # the pipe broke: as its end
            return b""

    def _handle(self, lines: list[bytes]) -> None:
        records: list[RunRecord | ComponentRecord] = []
        appended = False
        for line in lines:
            if line == b"n":
                appended = True
            elif line.startswith(b"f "):
                self._export(records)
                records = []
                self._flush_manifests()
                self.commands.put(Command("f", line[2:].decode(), self._take_refused()))
            elif line:
                appended = True
                record = self._decode(line)
                if record is not None:
                    records.append(record)
        self._export(records)
        if appended:
            self.commands.put(Command("n"))

    def _decode(self, line: bytes) -> RunRecord | ComponentRecord | None:
        if self.manifests is None:
            return None
        try:
            return decode(line)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            # The spool holds the same line: the warehouse's replay reports it too.
            log.warning("a line for the manifests could not be read: %s",
                        exception_summary(exc))
            return None

    def _export(self, records: list[RunRecord | ComponentRecord]) -> None:
        if not records or self.manifests is None:
            return
        try:
            self.manifests.export(records)
        except Exception as exc:
            refused = getattr(exc, "refused", None)
            reason = f"manifest: {exception_summary(exc)}"[:300]
            run_ids = list(refused) if refused is not None else [r.run_id for r in records]
            self._refused.extend((run_id, reason) for run_id in run_ids)

    def _flush_manifests(self) -> None:
        if self.manifests is None:
            return
        try:
            self.manifests.force_flush(0.0)
        except Exception as exc:  # the documents stay dirty: the next flush tries again
            log.error("manifests could not be written: %s", exception_summary(exc))

    def _pace(self) -> None:
        if self.manifests is None:
            return
        try:
            self.manifests.on_idle()
        except Exception as exc:
            log.error("a manifest could not be rewritten: %s", exception_summary(exc))

    def _dirty(self) -> bool:
        return self.manifests is not None and self.manifests.has_pending()

    def _take_refused(self) -> tuple[tuple[str, str], ...]:
        refused, self._refused = tuple(self._refused), []
        return refused

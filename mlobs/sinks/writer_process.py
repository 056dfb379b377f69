"""The warehouse writer: a child process that loads the spool into the warehouse, so the
SQL work (SQLAlchemy, the driver, PostgreSQL's COPY) never runs on the pipeline's GIL.

The pipeline's warehouse sink appends records to its spool file (fsynced per batch; see
:mod:`mlobs.sinks.spool`) and tells its writer; the writer replays the spool directory
with :func:`~mlobs.sinks.spool_replay.replay`, the code ``mlobs ingest --spool`` runs, so one
path serves a single process, many workers (each has its own spool file; the replay lock
lets one replayer work at a time), outages (records wait in the spool and the writer tries
again every ``retry_interval_s``) and repair. Writes are idempotent, so a replay cut off
anywhere (the writer killed, the database gone) is simply repeated.

With ``--runs-dir`` the writer also keeps the parent's manifests: the parent sends it the
spool lines of its records (after their fsync in the spool), and a thread of the writer
decodes them and writes each run's manifest (:class:`~mlobs.sinks.manifest_sink.ManifestSink`,
its pace and atomic rewrites), independently of the database: a slow or absent warehouse
does not hold the manifests back.

Protocol, lines on the writer's stdin and stdout:

* parent → writer: ``n`` (records were appended), ``f <seq>`` (flush: write the manifests
  of the lines before it, and answer once a replay that began after this line is over),
  and spool lines (``{...}`` or ``[...]``) for the manifests;
* writer → parent: ``d <seq> <report>``, the report as JSON (:func:`report_to_json`);
* end of stdin (the parent closed the sink, exited, or was killed): the manifests are
  written, one last replay runs, then the writer exits.

Run by hand as ``python -m mlobs.sinks.writer_process --db-url URL --spool-dir DIR``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("mlobs.sinks.writer")

#: Default for ``retry_interval_s``: while the database is away, how often to try again.
RETRY_INTERVAL_S = 5.0
#: The longest time after a replay during which appends are gathered for the next one
#: (the time is the replay's own duration, up to this; seconds).
BATCH_INTERVAL_S = 0.25
#: Problem messages (torn lines, refusals) carried to the parent between two flushes.
_PROBLEMS_KEPT = 20
#: How long a flush without a time limit waits for the writer.
_UNBOUNDED_S = 3600.0
#: The writer's niceness over its parent's: it loads records with the CPU the pipeline
#: leaves (a run's end, which waits for it, leaves it all).
WRITER_NICE = 10
#: How long a new writer waits for its first input before it imports the warehouse's stack.
FIRST_INPUT_WAIT_S = 1.0
#: How long the parent waits for the writer to take manifest lines off a full pipe.
SEND_RECORDS_TIMEOUT_S = 30.0
#: The pipe's size asked for (Linux; 1 MiB is the unprivileged limit): about 1,500
#: records can wait in it while the writer's manifest thread is busy.
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031


class WriterGone(Exception):
    """The writer process exited or stopped answering (its records stay in the spool)."""


def report_to_json(report: Any, manifest_refused: list[tuple[str, str]] | None = None
                   ) -> str:
    """A :class:`~mlobs.sinks.spool_replay.ReplayReport` as the JSON the protocol
    carries, with ``manifest_refused``: (run_id, reason) per record the manifests
    could not take since the last answer."""
    return json.dumps({"runs": report.runs, "components": report.components,
                       "pending": report.pending, "error": report.error,
                       "refused": report.refused, "problems": report.problems,
                       "manifest_refused": manifest_refused or []})


# -- the writer (child process) ------------------------------------------------------------
def serve(stdin_fd: int, out: IO[str], spool_dir: Path, db_url: str, *,
          manage_schema: bool, retry_interval_s: float, runs_dir: Path | None = None,
          batch_interval_s: float = BATCH_INTERVAL_S) -> None:
    """The writer's loop: replay when told, answer flushes, retry while the database is
    away; returns after the last replay once ``stdin_fd`` reaches its end. With
    ``runs_dir``, a thread of its own keeps the manifests (:mod:`mlobs.sinks.writer_input`)."""
    from mlobs.sinks.writer_input import Command, WriterInput

    commands: queue.Queue[Command] = queue.Queue()
    reader = WriterInput(stdin_fd, commands, runs_dir)
    threading.Thread(target=reader.run, name="mlobs-writer-input", daemon=True).start()
    # The first lines' manifests (a new run's) before the warehouse's stack is imported
    # (a few hundred ms of this process's GIL).
    reader.first_input.wait(FIRST_INPUT_WAIT_S)
    from mlobs.core.classify import exception_summary
    from mlobs.sinks.spool import has_spooled, spool_contents
    from mlobs.sinks.spool_replay import ReplayReport, replay
    from mlobs.warehouse.store import WarehouseStore
    store: WarehouseStore | None = None
    flushes: list[str] = []
    refused: list[tuple[str, str]] = []
    manifest_refused: list[tuple[str, str]] = []
    problems: list[str] = []
    eof = False
    # next_at: when the next replay runs (None: nothing waits). After a replay, appends
    # are gathered for as long as it took, at most ``batch_interval_s``: the writer is
    # then at most half busy, its replays grow with the load (a claim, two passes, two
    # transactions each), and at a light load each batch is loaded as it comes, so a
    # run's end waits for its last batch only (gathering a fixed 0.25 s made a run's end
    # wait for up to 500 components' load). A flush or the end replays at once, and while
    # the database is away it is tried every ``retry_interval_s``.
    # Leftovers of an earlier writer first; a writer that never gets a record and finds
    # none never opens the warehouse (a process that configured mlobs and recorded
    # nothing leaves no database behind).
    next_at: float | None = time.monotonic() if has_spooled(spool_dir) else None
    not_before = 0.0
    last: ReplayReport | None = None
    while True:
        if not eof:
            timeout = (0.0 if flushes else None if next_at is None
                       else max(0.0, next_at - time.monotonic()))
            for command in _commands(commands, timeout):
                manifest_refused.extend(command.manifest_refused)
                if command.kind == "f":
                    flushes.append(command.seq)
                elif command.kind == "eof":
                    eof = True
                elif next_at is None:  # "n": records were appended
                    next_at = max(time.monotonic(), not_before)
        now = time.monotonic()
        if not (eof or flushes or (next_at is not None and now >= next_at)):
            continue
        if eof and not flushes and store is None and not has_spooled(spool_dir):
            return
        if flushes and not eof and last is not None and last.error and now < not_before:
            # The database failed less than retry_interval_s ago: say so again rather
            # than make every run's end wait for another connection attempt.
            eof = not _answer(out, flushes, last, manifest_refused)
            flushes, manifest_refused = [], []
            continue
        try:
            if store is None:
                store = WarehouseStore(db_url, manage_schema=manage_schema)
            started = time.monotonic()
            report = replay(spool_dir, store, wait=True)
        except Exception as exc:  # the store could not be opened: the database is away
            report = ReplayReport(error=exception_summary(exc),
                                  pending=spool_contents(spool_dir).waiting)
        if report.error is not None:
            not_before = next_at = time.monotonic() + retry_interval_s
            if store is not None:  # a broken pooled connection is not reused
                store.close()
                store = None
        else:
            finished = time.monotonic()
            not_before = finished + min(batch_interval_s, finished - started)
            next_at = None
        # Refusals reach the parent with the next answer, whichever replay met them.
        refused.extend(report.refused)
        problems = (problems + report.problems)[-_PROBLEMS_KEPT:]
        if flushes:
            report.refused, report.problems = refused, problems
            eof = not _answer(out, flushes, report, manifest_refused) or eof
            flushes, refused, problems, manifest_refused = [], [], [], []
        last = report
        if eof:
            if store is not None:
                store.close()
            return


def _commands(commands: queue.Queue[Any], timeout: float | None) -> list[Any]:
    """The next command (waiting at most ``timeout``; None: without a limit) and every
    other one already there."""
    try:
        taken = [commands.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            taken.append(commands.get_nowait())
        except queue.Empty:
            return taken


def _answer(out: IO[str], flushes: list[str], report: Any,
            manifest_refused: list[tuple[str, str]]) -> bool:
    """Answer each flush with ``report`` (the manifests' refusals with the first);
    False when the parent is gone (its pipe broke): the writer then does its last replay
    and exits."""
    try:
        for index, seq in enumerate(flushes):
            out.write(f"d {seq} {report_to_json(report, None if index else manifest_refused)}\n")
        out.flush()
    except (BrokenPipeError, ValueError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlobs.sinks.writer_process",
        description="Load the spool into the warehouse for a pipeline process (started by "
                    "its warehouse sink; reads commands on stdin until its end).")
    parser.add_argument("--db-url", required=True, help="the warehouse's SQLAlchemy URL")
    parser.add_argument("--spool-dir", required=True, type=Path, help="<root>/spool")
    parser.add_argument("--manage-schema", action="store_true",
                        help="create or upgrade the schema (the embedded SQLite default)")
    parser.add_argument("--retry-interval-s", type=float, default=RETRY_INTERVAL_S,
                        help="while the database is away, seconds between tries")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="<root>/runs: also write the manifests of the spool lines "
                             "sent on stdin")
    args = parser.parse_args(argv)
    try:  # spare CPU only: the pipeline it serves comes first (its run's end waits here)
        os.nice(WRITER_NICE)
    except OSError:
        pass
    logging.basicConfig(level=logging.WARNING,
                        format="mlobs warehouse writer: %(levelname)s %(message)s")
    serve(sys.stdin.fileno(), sys.stdout, args.spool_dir, args.db_url,
          manage_schema=args.manage_schema, retry_interval_s=args.retry_interval_s,
          runs_dir=args.runs_dir)
    return 0


# -- the parent's handle -------------------------------------------------------------------
class WriterProcess:
    """The pipeline's handle on its writer: started at the first use, started again after
    it exited. Only one thread may use it (the warehouse sink's worker).

    Args:
        db_url, spool_dir, manage_schema, retry_interval_s, runs_dir: passed to the writer.
        greeting: called when a writer starts; what it returns (spool lines) is sent
            to the new writer before anything else (the running runs, for the manifests
            a writer started again carries on with).
    """

    def __init__(self, db_url: str, spool_dir: Path, *, manage_schema: bool,
                 retry_interval_s: float, runs_dir: Path | None = None,
                 greeting: Callable[[], bytes] | None = None) -> None:
        self.command = [sys.executable, "-m", "mlobs.sinks.writer_process", "--db-url",
                        db_url, "--spool-dir", str(spool_dir), "--retry-interval-s",
                        str(retry_interval_s)] + (["--manage-schema"] if manage_schema else [])
        if runs_dir is not None:
            self.command += ["--runs-dir", str(runs_dir)]
        self._greeting = greeting
        self._greeted: subprocess.Popen[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self._seq = 0
        self._buffer = b""
        self._answered = False  # the current writer answered a flush
        #: the writer asked to flush (request_flush) whose answer flush() still awaits.
        self._requested: subprocess.Popen[bytes] | None = None
        self._quick_exits = 0  # writers in a row that exited before answering one
        self._next_start_at = 0.0

    def after_fork_in_child(self) -> None:
        """A forked child must not hold its parent's pipes open (the writer would never
        see their end): close them and start a writer of its own when needed."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    os.close(pipe.fileno())  # type: ignore[union-attr]
                except OSError:
                    pass
        self._pid = os.getpid()
        self._buffer = b""
        self._requested = None

    def _running(self) -> subprocess.Popen[bytes]:
        """The live writer, started when there is none.

        Raises:
            WriterGone: it cannot be started now (a writer that keeps exiting before it
                answered a flush is tried again after 2, 4, ... 60 s: an import error must
                not start ten processes a second).
        """
        if self._pid != os.getpid():
            self.after_fork_in_child()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        now = time.monotonic()
        if proc is not None:
            self._close_pipes(proc)
            # A writer that never answered a flush did not get going (an import error,
            # a broken interpreter): back off; one that worked is replaced at once.
            self._quick_exits = 0 if self._answered else self._quick_exits + 1
            if self._quick_exits:
                self._next_start_at = now + min(60.0, 2.0 ** self._quick_exits)
            self._proc = None
        if now < self._next_start_at:
            raise WriterGone(f"the warehouse writer keeps exiting (last code "
                             f"{proc.returncode if proc else 'unknown'}); it is started "
                             f"again in {self._next_start_at - now:.0f} s; the records "
                             "wait in the spool")
        env = dict(os.environ)
        # The writer imports the same mlobs as this process, installed or not.
        package_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH")) if p)
        try:
            # A session of its own: Ctrl-C or a group's SIGTERM aimed at the pipeline does
            # not cut the writer's last replay short (it ends when its input does).
            proc = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, env=env, close_fds=True,
                                    start_new_session=True)
        except OSError as exc:
            self._next_start_at = now + 5.0
            raise WriterGone(f"the warehouse writer cannot start: {exc}") from exc
        fd = proc.stdin.fileno()  # type: ignore[union-attr]
        try:  # room for manifest lines while the writer's input thread is busy
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:
            pass
        os.set_blocking(fd, False)
        self._proc, self._answered, self._buffer = proc, False, b""
        return proc

    @staticmethod
    def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()  # type: ignore[union-attr]
            except OSError:
                pass

    def _send(self, line: bytes, deadline: float | None) -> subprocess.Popen[bytes] | None:
        """Write ``line`` to the writer. The pipe is non-blocking, so a writer that stopped
        reading (waiting for the database) never blocks the sink: a nudge is dropped (one
        pending is enough; ``deadline`` None), a flush waits until ``deadline`` (None
        returned when it passed)."""
        proc = self._running()
        if self._greeted is not proc:
            self._greeted = proc
            if self._greeting is not None:
                line = self._greeting() + line
        fd = proc.stdin.fileno()  # type: ignore[union-attr]
        view = memoryview(line)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                if deadline is None:
                    return proc
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [fd], [], left)[1]:
                    return None
            except (BrokenPipeError, OSError) as exc:
                raise WriterGone(f"the warehouse writer exited (code {proc.poll()})") \
                    from exc
        return proc

    def start(self) -> None:
        """Start the writer now rather than at the first use (never raises: a writer
        that cannot start is tried again then)."""
        try:
            self._running()
        except WriterGone as exc:
            log.debug("mlobs warehouse writer not started yet: %s", exc)

    def nudge(self) -> None:
        """Say records were appended (raises WriterGone when the writer is gone)."""
        self._send(b"n\n", None)

    def send_records(self, lines: bytes) -> None:
        """Send spool lines for the manifests (they also say records were appended);
        waits up to :data:`SEND_RECORDS_TIMEOUT_S` while the pipe is full.

        Raises:
            WriterGone: the writer is gone, or stopped reading (it is then killed: a
                line cut in two must not reach it; the next call starts a new one).
        """
        if self._send(lines, time.monotonic() + SEND_RECORDS_TIMEOUT_S) is None:
            proc, self._proc = self._proc, None
            if proc is not None:
                proc.kill()
                proc.wait()
                self._close_pipes(proc)
            raise WriterGone(f"the warehouse writer took no input for "
                             f"{SEND_RECORDS_TIMEOUT_S:.0f} s: it was stopped")

    def request_flush(self, timeout_s: float | None) -> bool:
        """Ask the writer to replay everything appended so far, without waiting for its
        answer (:meth:`answer` or :meth:`flush` waits for it).

        Returns:
            False when the request could not be written within ``timeout_s``.

        Raises:
            WriterGone: the writer is gone.
        """
        self._seq += 1
        deadline = time.monotonic() + (_UNBOUNDED_S if timeout_s is None else timeout_s)
        self._requested = self._send(b"f " + str(self._seq).encode() + b"\n", deadline)
        return self._requested is not None

    def answer(self, wait_s: float) -> dict[str, Any] | None:
        """The report answering the last :meth:`request_flush`, waiting at most
        ``wait_s`` for it; None while it has not come (ask again later).

        Raises:
            WriterGone: no request is pending, or the writer exited before answering.
        """
        proc = self._requested
        if proc is None:
            raise WriterGone("no flush was requested from the warehouse writer")
        seq = str(self._seq).encode()
        deadline = time.monotonic() + wait_s
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        while True:
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                parts = line.split(b" ", 2)
                if len(parts) == 3 and parts[0] == b"d" and parts[1] == seq:
                    self._answered, self._requested = True, None
                    return json.loads(parts[2])
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self._requested = None
                code = proc.wait()
                raise WriterGone(f"the warehouse writer exited (code {code}) before it "
                                 "answered; the records wait in the spool")
            self._buffer += chunk

    def flush(self, timeout_s: float | None) -> dict[str, Any] | None:
        """Wait until the writer replayed everything appended before the call.

        Returns:
            The replay's report (:func:`report_to_json`'s fields), or None when
            ``timeout_s`` passed first.

        Raises:
            WriterGone: the writer exited before answering.
        """
        deadline = time.monotonic() + (_UNBOUNDED_S if timeout_s is None else timeout_s)
        if not self.request_flush(timeout_s):
            return None
        return self.answer(max(0.0, deadline - time.monotonic()))

    def close(self, timeout_s: float) -> None:
        """End the writer's input and wait for its last replay (killed after
        ``timeout_s``: the spool keeps what it did not load)."""
        proc, self._proc = self._proc, None
        if proc is None or self._pid != os.getpid():
            return
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._close_pipes(proc)


if __name__ == "__main__":
    sys.exit(main())

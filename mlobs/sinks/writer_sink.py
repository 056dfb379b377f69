"""WriterSink: the default warehouse sink. It appends records to the spool and leaves the
SQL work to a writer process (:mod:`mlobs.sinks.writer_process`).

What the pipeline's process pays per record: its spool line (a finished invocation's
compact line, :mod:`mlobs.core.compact`, built without its record) and, per batch, one
write and one fsync, and one write to the writer's pipe. Everything else (decoding,
SQLAlchemy, the driver, COPY on PostgreSQL and, with ``runs_dir``, the manifests) runs in
the writer, which shares neither this process's GIL nor its CPU time.

Promises, as with the in-process :class:`~mlobs.sinks.warehouse_sink.WarehouseSink`:

* a record the sink accepted survives a crash (``kill -9``) of the pipeline: it is
  fsynced in the spool before ``export`` returns; the writer loads it then (it sees the
  end of its input), or ``mlobs ingest --spool`` does when the writer died too (a
  container's end or a cgroup's OOM kill takes every process; the spool then needs a
  volume that outlives the container);
* ``mlobs.flush()`` (and so every run's end) returns once the writer loaded everything
  recorded before it, or found the database away: the records then wait in the spool and
  the writer tries again every ``retry_interval_s`` (a warning says so once); a flush
  that times out returns False, as for any sink;
* a record the warehouse refuses is set aside in ``<root>/spool/rejected.jsonl`` and
  counted as failed for its run at the next flush (the run's manifest keeps it);
* nothing is written twice (the store's writes are idempotent by id).

With ``runs_dir`` (the default sinks: manifest and warehouse) the writer also keeps this
process's manifests (:class:`~mlobs.sinks.manifest_relay.ManifestRelay` is the manifest
sink's face here): the lines of a batch go to the writer's pipe right after their fsync.
A writer started again mid-run gets the running runs' records first and carries on from
their manifests on disk; components the old writer had taken but not yet written (at
most a rewrite's pace: ``flush_interval_s`` for a short run, about 2 s for 10,000
components) are missing from the manifest then, not from the warehouse, and a warning
says so.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

from mlobs.core.propagation import joined_context
from mlobs.core.records import RunRecord
from mlobs.sinks.base import RecordsRefused, SpoolLine
from mlobs.sinks.spool import Spool
from mlobs.sinks.writer_process import RETRY_INTERVAL_S, WriterGone, WriterProcess

log = logging.getLogger("mlobs.sinks.warehouse")

#: Recent runs whose refused records this sink counts (older ones are only logged).
_RUNS_KEPT = 4096


class WriterSink:
    """Exports records to the warehouse at ``db_url`` through the spool and a writer.

    Args:
        db_url: SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
        spool_dir: the spool directory (``<root>/spool``).
        manage_schema: the writer creates or upgrades the schema (the embedded default
            SQLite file only; other databases need ``mlobs db upgrade``).
        retry_interval_s: while the database is away, how often the writer tries again.
        runs_dir: ``<root>/runs``: the writer keeps this process's manifests there too.

    Raises:
        ConfigError: ``db_url`` is not a SQLite or PostgreSQL URL.

    Attributes:
        spooled: records that had to wait in the spool because the database was away.
    """

    name = "warehouse"
    #: local files only: shares a worker thread with the other local sinks.
    local = True
    #: gets the items' spool lines, not their records (see mlobs.sinks.base).
    takes_lines = True

    #: Default for ``retry_interval_s``.
    RETRY_INTERVAL_S = RETRY_INTERVAL_S

    def __init__(self, db_url: str, spool_dir: str | os.PathLike[str], *,
                 manage_schema: bool = False, retry_interval_s: float | None = None,
                 runs_dir: str | os.PathLike[str] | None = None) -> None:
        from mlobs.warehouse.engine import check_sink_url
        check_sink_url(db_url)
        self.db_url = db_url
        self.spool_dir = Path(spool_dir)
        self.runs_dir = None if runs_dir is None else Path(runs_dir)
        self._spool = Spool(self.spool_dir)
        self._writer = WriterProcess(
            db_url, self.spool_dir, manage_schema=manage_schema,
            retry_interval_s=self.RETRY_INTERVAL_S if retry_interval_s is None
            else retry_interval_s, runs_dir=self.runs_dir, greeting=self._greeting)
        #: the latest line of each running run whose manifest the writer keeps.
        self._running_runs: OrderedDict[str, bytes] = OrderedDict()
        self._writers_greeted = 0
        #: flushes answered (or failed) so far, and the manifests' refusals they carried
        #: (ManifestRelay takes them).
        self.answers = 0
        self.manifest_refused: list[tuple[str, str]] = []
        self.spooled = 0
        if self.runs_dir is not None:
            # Started now, so that it is ready (a quarter of a second of imports) when
            # the first run's manifest is due.
            self._writer.start()
        self._runs: OrderedDict[str, None] = OrderedDict()  # runs this sink exported
        self._waiting = 0  # records the last flush found waiting (database away)
        self._away = False

    @property
    def spool_path(self) -> Path:
        """This sink's spool file (it exists while it holds records not loaded yet)."""
        return self._spool.path

    def after_fork_in_child(self) -> None:
        self._writer.after_fork_in_child()
        self._running_runs.clear()  # the parent's: a child never writes them

    def export(self, lines: list[SpoolLine]) -> None:  # type: ignore[override]
        """Append the lines to the spool (fsynced), then tell the writer (and send it
        the lines, for the manifests).

        Raises:
            OSError: the spool could not be written: the batch failed for the warehouse
                (the manifests still get it).
        """
        try:
            self._spool.append_lines(b"".join([line for _, _, line in lines]))
        except OSError as exc:
            failure: OSError | None = exc
        else:
            failure = None
            for run_id in dict.fromkeys(run_id for run_id, _, _ in lines):
                self._runs[run_id] = None
                self._runs.move_to_end(run_id)
            while len(self._runs) > _RUNS_KEPT:
                self._runs.popitem(last=False)
        try:
            if self.runs_dir is None:
                self._writer.nudge()
            else:
                self._send_to_manifests(lines)
        except WriterGone as exc:
            if self.runs_dir is not None:  # in the spool, not in the manifests
                self.manifest_refused += [(run_id, f"manifest: {exc}") for run_id, _, _ in lines]
            # the writer is started again at the next call; the records wait in the spool
        if failure is not None:
            raise failure

    def _send_to_manifests(self, lines: list[SpoolLine]) -> None:
        sent = []
        for run_id, item, line in lines:
            if isinstance(item, RunRecord):
                if item.status == "running":
                    self._running_runs[run_id] = line
                    self._running_runs.move_to_end(run_id)
                else:
                    self._running_runs.pop(run_id, None)
            elif run_id not in self._running_runs and joined_context(run_id) is not None:
                continue  # a run joined from another process: its own process's manifest
            sent.append(line)
        while len(self._running_runs) > _RUNS_KEPT:
            self._running_runs.popitem(last=False)
        self._writer.send_records(b"".join(sent) if sent else b"n\n")

    def _greeting(self) -> bytes:
        """The running runs' latest lines, for a writer that starts while they are open
        (it carries on from their manifests on disk)."""
        self._writers_greeted += 1
        if self._writers_greeted > 1 and self._running_runs:
            log.warning("mlobs sink 'warehouse': the warehouse writer was started again; "
                        "the manifests of %d running run(s) may miss the components "
                        "recorded just before (the warehouse has them)",
                        len(self._running_runs))
        return b"".join(self._running_runs.values())

    def begin_flush(self, timeout_s: float) -> None:
        """Ask the writer to load what was appended, without waiting: the worker goes on
        with the other sinks, and with new records, while the writer loads
        (:meth:`finish_flush` collects the answer)."""
        self._writer.request_flush(timeout_s)

    def finish_flush(self, wait_s: float) -> bool:
        """True once the writer answered the flush :meth:`begin_flush` asked for (waits
        at most ``wait_s`` for it); raises as :meth:`force_flush` does."""
        try:
            report = self._writer.answer(wait_s)
        except Exception:
            self.answers += 1
            raise
        if report is None:
            return False
        self._take(report)
        return True

    def force_flush(self, timeout_s: float) -> bool:
        """Wait for the writer (see the module docstring).

        Raises:
            RecordsRefused: records the warehouse refused since the last flush.
            WriterGone: the writer exited before it answered (the records stay in the
                spool; the next call starts a new writer).
        """
        try:
            report = self._writer.flush(timeout_s)
        except Exception:
            self.answers += 1
            raise
        if report is None:
            return False
        self._take(report)
        return True

    def _take(self, report: dict) -> None:
        """Log what the writer's answer says; raise RecordsRefused for this sink's runs."""
        self.answers += 1
        self.manifest_refused += [tuple(pair) for pair in report.get("manifest_refused", ())]
        if report["error"] is not None:
            self.spooled += max(0, report["pending"] - self._waiting)
            self._waiting = report["pending"]
            if not self._away:
                log.warning("mlobs sink 'warehouse': the warehouse cannot take records (%s); "
                            "spooling them to %s; they are written once it can (or by "
                            "`mlobs ingest --spool`)", report["error"][:300], self.spool_dir)
            self._away = True
        elif self._away:
            log.warning("mlobs sink 'warehouse': the warehouse answers again; the %d "
                        "record(s) spooled so far are written", self.spooled)
            self._away, self._waiting = False, 0
        for problem in report["problems"]:
            log.warning("mlobs sink 'warehouse': %s", problem)
        # A writer replays the whole spool directory, other processes' files too: only
        # this sink's runs count here (the others' are in rejected.jsonl and logged).
        refused = [(run_id, why) for run_id, why in report["refused"] if run_id in self._runs]
        if refused:
            raise RecordsRefused("; ".join(reason for _, reason in refused),
                                 tuple(run_id for run_id, _ in refused))

    def shutdown(self, timeout_s: float) -> None:
        self._writer.close(timeout_s)
        self._spool.close()

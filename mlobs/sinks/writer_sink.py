"""WriterSink: the default warehouse sink. It appends records to the spool and leaves the
SQL work to a writer process (:mod:`mlobs.sinks.writer_process`).

What the pipeline's process pays per record: its spool line (the manifest's JSON of the
record, encoded once for both sinks) and, per batch, one write and one fsync. Everything
else (decoding, SQLAlchemy, the driver, COPY on PostgreSQL) runs in the writer, which
shares neither this process's GIL nor its CPU time.

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
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

from mlobs.core.records import Record
from mlobs.sinks.base import RecordsRefused
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

    Raises:
        ConfigError: ``db_url`` is not a SQLite or PostgreSQL URL.

    Attributes:
        spooled: records that had to wait in the spool because the database was away.
    """

    name = "warehouse"
    #: local files only: shares a worker thread with the other local sinks.
    local = True

    #: Default for ``retry_interval_s``.
    RETRY_INTERVAL_S = RETRY_INTERVAL_S

    def __init__(self, db_url: str, spool_dir: str | os.PathLike[str], *,
                 manage_schema: bool = False, retry_interval_s: float | None = None) -> None:
        from mlobs.warehouse.engine import check_sink_url
        check_sink_url(db_url)
        self.db_url = db_url
        self.spool_dir = Path(spool_dir)
        self._spool = Spool(self.spool_dir)
        self._writer = WriterProcess(
            db_url, self.spool_dir, manage_schema=manage_schema,
            retry_interval_s=self.RETRY_INTERVAL_S if retry_interval_s is None
            else retry_interval_s)
        self.spooled = 0
        self._runs: OrderedDict[str, None] = OrderedDict()  # runs this sink exported
        self._waiting = 0  # records the last flush found waiting (database away)
        self._away = False

    @property
    def spool_path(self) -> Path:
        """This sink's spool file (it exists while it holds records not loaded yet)."""
        return self._spool.path

    def after_fork_in_child(self) -> None:
        self._writer.after_fork_in_child()

    def export(self, records: list[Record]) -> None:
        self._spool.append(records)  # OSError: the batch fails and is counted
        for run_id in dict.fromkeys(record.run_id for record in records):
            self._runs[run_id] = None
            self._runs.move_to_end(run_id)
        while len(self._runs) > _RUNS_KEPT:
            self._runs.popitem(last=False)
        try:
            self._writer.nudge()
        except WriterGone:
            pass  # started again at the next call; the records wait in the spool

    def begin_flush(self, timeout_s: float) -> None:
        """Ask the writer to load what was appended, without waiting: the worker goes on
        with the other sinks, and with new records, while the writer loads
        (:meth:`finish_flush` collects the answer)."""
        self._writer.request_flush(timeout_s)

    def finish_flush(self, wait_s: float) -> bool:
        """True once the writer answered the flush :meth:`begin_flush` asked for (waits
        at most ``wait_s`` for it); raises as :meth:`force_flush` does."""
        report = self._writer.answer(wait_s)
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
        report = self._writer.flush(timeout_s)
        if report is None:
            return False
        self._take(report)
        return True

    def _take(self, report: dict) -> None:
        """Log what the writer's answer says; raise RecordsRefused for this sink's runs."""
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

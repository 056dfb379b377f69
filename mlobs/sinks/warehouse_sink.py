"""WarehouseSink: batched, idempotent inserts into the SQL warehouse (ARCHITECTURE §6).

Each batch is one transaction (``WarehouseStore.write``): runs are upserted, component
rows, events and model signatures are insert-or-ignore by their ids, so a batch that is
exported twice (or re-ingested from a manifest or the spool) never duplicates. The store is
opened on the worker thread at the first batch.

When the database is away (the store cannot be opened or a write fails with a
``WarehouseError`` other than ``InvalidRecordError``) and the sink has a ``spool_dir``
(``<root>/spool`` when built from the settings), the batch is appended to a local spool
file and fsynced (:mod:`mlobs.sinks.spool`) instead of failing: the export succeeds,
nothing is counted as failed, and the pipeline goes on. The sink logs a warning
(``mlobs.sinks.warehouse``) the first time it spools after the database answered, counts
the records in :attr:`WarehouseSink.spooled` and drops its store (a broken pooled
connection is not reused). Every later export and every flush first replays the spool —
at most once every :attr:`WarehouseSink.retry_interval_s` seconds while the database stays
away, spooling the new batch without trying the database in between — and writes the new
batch only once the spool is empty, so a component never arrives before its run.
``mlobs ingest --spool`` replays the same files from another process.

A record the warehouse refuses (``InvalidRecordError``) is never spooled: its batch fails
and is counted as before (its records stay in their manifests). Without a ``spool_dir``,
or when the spool itself cannot be written, a batch the database could not take fails
and is counted; the manifest still holds every record (``mlobs ingest`` loads it later).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from mlobs.core.classify import exception_summary
from mlobs.core.errors import InvalidRecordError, WarehouseError
from mlobs.core.records import ComponentRecord, Record, RunRecord
from mlobs.sinks.spool import Spool, SpoolBusyError, has_spooled
from mlobs.sinks.spool_replay import replay
from mlobs.warehouse.engine import check_sink_url
from mlobs.warehouse.store import WarehouseStore

log = logging.getLogger("mlobs.sinks.warehouse")

#: Errors that mean "the database is away" (InvalidRecordError is handled before).
_AWAY = (WarehouseError, SQLAlchemyError, OSError)


class WarehouseSink:
    """Exports records to the warehouse at ``db_url``.

    Args:
        db_url: SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
        manage_schema: create or upgrade the schema as needed (for the embedded default
            SQLite file only; other databases need ``mlobs db upgrade``).
        spool_dir: where to spool batches while the database is away (None: such a
            batch fails, as without a spool).
        retry_interval_s: while the database is away, how often to try it again.

    Raises:
        ConfigError: ``db_url`` is not a SQLite or PostgreSQL URL (records would otherwise
            be spooled for ever, waiting for a database that can never answer).

    Attributes:
        spooled: records appended to the spool since the sink started.
        replayed: records written from the spool to the warehouse by this sink.
    """

    name = "warehouse"
    #: Default for ``retry_interval_s``.
    RETRY_INTERVAL_S = 5.0

    def __init__(self, db_url: str, *, manage_schema: bool = False,
                 spool_dir: str | os.PathLike[str] | None = None,
                 retry_interval_s: float | None = None) -> None:
        check_sink_url(db_url)
        self.db_url = db_url
        self.manage_schema = manage_schema
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        self.retry_interval_s = (self.RETRY_INTERVAL_S if retry_interval_s is None
                                 else retry_interval_s)
        self._store: WarehouseStore | None = None
        self._spool = Spool(self.spool_dir) if self.spool_dir is not None else None
        self.spooled = 0
        self.replayed = 0
        # None: not looked yet (records another process left behind are replayed too).
        self._pending: bool | None = None
        self._retry_at = 0.0  # monotonic time before which the database is not tried
        self._away = False

    @property
    def spool_path(self) -> Path | None:
        """This sink's spool file (it exists only while it holds records; a forked child
        gets a file of its own)."""
        return self._spool.path if self._spool is not None else None

    # -- BatchWorker's calls (worker thread) ---------------------------------------------
    def export(self, records: list[Record]) -> None:
        if self._spool is None:
            self._write(records)
            return
        if not self._drain_spool():
            self._spool_batch(records, None)
            return
        try:
            self._write(records)
        except InvalidRecordError:
            raise
        except _AWAY as exc:
            self._spool_batch(records, exc)
        else:
            self._answered()

    def force_flush(self, timeout_s: float) -> bool:
        if self._spool is not None:
            try:
                self._drain_spool()
            except Exception:  # never raise out of a flush
                log.exception("mlobs sink 'warehouse' failed to replay its spool")
        return True

    def shutdown(self, timeout_s: float) -> None:
        self._close_store()

    # -- writing -------------------------------------------------------------------------
    def _open_store(self) -> WarehouseStore:
        if self._store is None:
            self._store = WarehouseStore(self.db_url, manage_schema=self.manage_schema)
        return self._store

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:
                pass

    def _write(self, records: list[RunRecord | ComponentRecord]) -> None:
        runs = [r for r in records if isinstance(r, RunRecord)]
        components = [r for r in records if isinstance(r, ComponentRecord)]
        if not runs and not components:
            return
        store = self._open_store()
        try:
            store.write(runs, components)
        except InvalidRecordError:
            self._write_each_run(runs, components)
        except BaseException:
            # A broken pooled connection must not be reused: open a new store next time.
            self._close_store()
            raise

    def _write_each_run(self, runs: list[RunRecord], components: list[ComponentRecord]) -> None:
        """One refused record must not keep the other records of its batch out: write run
        by run, and a refused run record by record; then raise for exactly the records
        refused (they stay in their manifests, which ``mlobs ingest`` reloads)."""
        by_run: dict[str, tuple[list[RunRecord], list[ComponentRecord]]] = {}
        for run in runs:
            by_run.setdefault(run.run_id, ([], []))[0].append(run)
        for component in components:
            by_run.setdefault(component.run_id, ([], []))[1].append(component)
        problems: list[str] = []
        refused: list[str] = []
        for run_id, (run_records, component_records) in by_run.items():
            problem = self._refused_by(run_records, component_records)
            if problem is None:
                continue
            if len(run_records) + len(component_records) == 1:
                problems.append(problem)
                refused.append(run_id)
                continue
            # Alone: the run record first, since its components need its row; when it is
            # refused they are too, unwritten (the manifest keeps them all).
            if run_records and (problem := self._refused_by(run_records, [])) is not None:
                problems.append(problem)
                refused.extend([run_id] * (len(run_records) + len(component_records)))
                continue
            for component in component_records:
                if (problem := self._refused_by([], [component])) is not None:
                    problems.append(problem)
                    refused.append(run_id)
        if refused:
            raise InvalidRecordError("; ".join(problems), refused=tuple(refused))

    def _refused_by(self, runs: list[RunRecord], components: list[ComponentRecord]
                    ) -> str | None:
        """Write; the store's refusal, or None when written."""
        try:
            self._open_store().write(runs, components)
        except InvalidRecordError as exc:
            return str(exc)
        except BaseException:
            self._close_store()
            raise
        return None

    # -- the spool -----------------------------------------------------------------------
    def _spool_batch(self, records: list[RunRecord | ComponentRecord],
                     exc: BaseException | None) -> None:
        """Append the batch to the spool (OSError: the export fails and is counted)."""
        assert self._spool is not None
        if exc is not None:
            self._retry_at = time.monotonic() + self.retry_interval_s
        self._spool.append(records)
        self._pending = True
        self.spooled += len(records)
        if exc is not None and not self._away:
            log.warning("mlobs sink 'warehouse': the warehouse cannot take records (%s); "
                        "spooling them to %s; they are written once it can (or by "
                        "`mlobs ingest --spool`)",
                        exception_summary(exc, 300), self.spool_dir)
        self._away = True

    def _answered(self) -> None:
        if self._away:
            log.warning("mlobs sink 'warehouse': the warehouse answers again "
                        "(%d record(s) spooled so far, %d replayed)", self.spooled,
                        self.replayed)
        self._away = False

    def _drain_spool(self) -> bool:
        """Replay the spool if it holds records; True when it is empty afterwards.

        While the database is away this tries it at most every ``retry_interval_s``.
        """
        assert self.spool_dir is not None
        if self._pending is None:
            self._pending = has_spooled(self.spool_dir)
        if not self._pending:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            report = replay(self.spool_dir, self._open_store(), wait=False)
        except SpoolBusyError:
            # `mlobs ingest --spool` is at it: keep spooling until it is done.
            self._retry_at = time.monotonic() + min(self.retry_interval_s, 1.0)
            return False
        except _AWAY as exc:
            self._close_store()
            self._retry_at = time.monotonic() + self.retry_interval_s
            log.debug("mlobs sink 'warehouse': the warehouse is still away: %s", exc)
            return False
        self.replayed += report.runs + report.components
        for problem in report.problems:
            log.warning("mlobs sink 'warehouse' spool replay: %s", problem)
        if report.error is not None:
            self._close_store()
            self._retry_at = time.monotonic() + self.retry_interval_s
            return False
        self._pending = False
        if report.runs or report.components:
            log.warning("mlobs sink 'warehouse': replayed %d run record(s) and %d component "
                        "record(s) from the spool at %s", report.runs, report.components,
                        self.spool_dir)
        self._answered()
        return True

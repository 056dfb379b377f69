"""WarehouseSink: batched, idempotent inserts into the SQL warehouse (ARCHITECTURE §6).

Each batch is one transaction (``WarehouseStore.write``): runs are upserted, component
rows, events and model signatures are insert-or-ignore by their ids, so a batch that is
exported twice (or re-ingested from a manifest) never duplicates. The store is opened on
the worker thread at the first batch; if that fails (database away, schema out of date)
the batch fails, is counted, and the next batch tries again. The manifest still holds every
record: ``mlobs ingest`` loads it later.
"""

from __future__ import annotations

from typing import Any

from mlobs.errors import InvalidRecordError
from mlobs.records import ComponentRecord, RunRecord
from mlobs.sinks.base import materialize
from mlobs.warehouse.store import WarehouseStore


class WarehouseSink:
    """Exports records to the warehouse at ``db_url``.

    Args:
        db_url: SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
        manage_schema: create or upgrade the schema as needed (for the embedded default
            SQLite file only; other databases need ``mlobs db upgrade``).
    """

    name = "warehouse"

    def __init__(self, db_url: str, *, manage_schema: bool = False) -> None:
        self.db_url = db_url
        self.manage_schema = manage_schema
        self._store: WarehouseStore | None = None

    def export(self, items: list[Any]) -> None:
        runs, components = [], []
        for item in items:
            record = materialize(item)
            (runs if isinstance(record, RunRecord) else components).append(record)
        if self._store is None:
            self._store = WarehouseStore(self.db_url, manage_schema=self.manage_schema)
        try:
            self._store.write(runs, components)
        except InvalidRecordError:
            self._write_each_run(runs, components)

    def _write_each_run(self, runs: list[RunRecord], components: list[ComponentRecord]) -> None:
        """One refused record must not keep the other runs of its batch out: write run by
        run, then raise for the runs refused (their records stay in their manifests)."""
        by_run: dict[str, tuple[list[RunRecord], list[ComponentRecord]]] = {}
        for run in runs:
            by_run.setdefault(run.run_id, ([], []))[0].append(run)
        for component in components:
            by_run.setdefault(component.run_id, ([], []))[1].append(component)
        refused: dict[str, str] = {}
        for run_id, (run_records, component_records) in by_run.items():
            try:
                self._store.write(run_records, component_records)
            except InvalidRecordError as exc:
                refused[run_id] = str(exc)
        if refused:
            raise InvalidRecordError("; ".join(refused.values()), frozenset(refused))

    def force_flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

"""Reading one run back from the warehouse as records, on a connection the caller
holds (the store's, or a read-only one of the admin views)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from mlobs.core.records import ComponentRecord, EventRecord, ModelRef, RunRecord
from mlobs.warehouse.labels import labels_of
from mlobs.warehouse.rows import COMPONENTS, EVENTS, RUNS, SIGNATURES


def read_run(conn: Connection, run_id: str) -> tuple[RunRecord, list[ComponentRecord]] | None:
    """One run and its components (ordered by ``started_at``), or None if unknown.

    Components come back with ``models_used`` and ``events`` (ordered as written), so
    that the records equal those given to the store's ``write``.
    """
    run_row = conn.execute(select(RUNS).where(RUNS.c.run_id == run_id)).first()
    if run_row is None:
        return None
    component_rows = conn.execute(
        select(COMPONENTS).where(COMPONENTS.c.run_id == run_id).order_by(
            COMPONENTS.c.started_at, COMPONENTS.c.component, COMPONENTS.c.attempt,
            COMPONENTS.c.component_run_id)).all()
    signatures = {row.model_signature for row in component_rows
                  if row.model_signature and row.models_used_override is None}
    models: dict[str, list[dict[str, Any]]] = {}
    if signatures:
        models = dict(conn.execute(  # type: ignore[arg-type]
            select(SIGNATURES.c.model_signature, SIGNATURES.c.models)
            .where(SIGNATURES.c.model_signature.in_(signatures))).all())
    run_labels = labels_of(conn, [run_id]).get(run_id, {})
    events: dict[str | None, list[EventRecord]] = {}
    for row in conn.execute(select(EVENTS).where(EVENTS.c.run_id == run_id)
                            .order_by(EVENTS.c.component_run_id, EVENTS.c.seq)):
        data = row._asdict()
        del data["seq"]
        events.setdefault(row.component_run_id, []).append(EventRecord(**data))
    components = []
    for row in component_rows:
        data = row._asdict()
        override = data.pop("models_used_override")
        del data["ingested_at"]  # the warehouse's, not the record's
        used = override if override is not None else models.get(row.model_signature, [])
        components.append(ComponentRecord(
            **data, models_used=[ModelRef.from_dict(m) for m in used or []],
            events=events.get(row.component_run_id, [])))
    return RunRecord(**run_row._asdict(), labels=run_labels), components


def model_names(conn: Connection, signatures: Iterable[str]) -> dict[str, list[str]]:
    """The model names (sorted, without repeats) each ``model_signature`` stands for, from
    ``model_signatures``; signatures not stored there are left out."""
    wanted = sorted(set(signatures))
    found: dict[str, list[str]] = {}
    for start in range(0, len(wanted), 500):  # below every backend's bind-parameter limit
        query = select(SIGNATURES.c.model_signature, SIGNATURES.c.models).where(
            SIGNATURES.c.model_signature.in_(wanted[start:start + 500]))
        for signature, models in conn.execute(query):
            found[signature] = sorted({str(m["model_name"]) for m in models or []
                                       if isinstance(m, dict) and m.get("model_name")})
    return found

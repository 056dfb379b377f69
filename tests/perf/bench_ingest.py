"""Sustained warehouse ingest into SQLite: through mlobs vs raw SQLAlchemy executemany.

* mlobs:  components recorded with the API (warehouse sink only), timed from the first call
  until ``mlobs.flush()`` returns, i.e. until every record is committed;
* raw:    the same component rows inserted with ``conn.execute(insert(table), rows)`` in
  batches of the sink's size into a fresh database of the same schema.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

RUNS = 40
COMPONENTS_PER_RUN = 500


def ingest_through_mlobs(root: Path) -> tuple[float, str]:
    import mlobs
    db_url = f"sqlite:///{root / 'mlobs.db'}"
    mlobs.configure(root=root, db_url=db_url, sinks=["warehouse"])
    from mlobs.warehouse.migrate import upgrade
    upgrade(db_url)
    return pipeline_records_per_s(), db_url


def pipeline_records_per_s() -> float:
    """Run RUNS runs of COMPONENTS_PER_RUN components through the configured mlobs and
    wait for the sinks; records per second, API to committed rows."""
    import mlobs
    whisper = mlobs.ModelRef("whisper", "1", "sha256:00", engine="torch", device="cpu")
    start = time.perf_counter()
    for index in range(RUNS):
        with mlobs.run("bench", f"video-{index}", flush_timeout_s=60) as run:
            for _ in range(COMPONENTS_PER_RUN):
                with run.component("asr", models=[whisper], batch_size=8) as c:
                    c.set_items(3)
    mlobs.flush(60)
    elapsed = time.perf_counter() - start
    lost = sum(s.failed + s.dropped + s.spooled for s in mlobs.sink_stats())
    assert lost == 0, f"{lost} records failed, were dropped or spooled"
    return RUNS * COMPONENTS_PER_RUN / elapsed


def ingest_raw(root: Path, source_url: str) -> float:
    from sqlalchemy import create_engine, insert, select

    from mlobs.warehouse.migrate import upgrade
    from mlobs.warehouse.models import ComponentRun, Run
    components, runs = ComponentRun.__table__, Run.__table__
    source = create_engine(source_url)
    with source.connect() as conn:
        run_rows = [dict(r._mapping) for r in conn.execute(select(runs))]
        rows = [dict(r._mapping) for r in conn.execute(select(components))]
    target_url = f"sqlite:///{root / 'raw.db'}"
    upgrade(target_url)
    engine = create_engine(target_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        conn.execute(insert(runs), run_rows)
    start = time.perf_counter()
    for offset in range(0, len(rows), 512):
        with engine.begin() as conn:
            conn.execute(insert(components), rows[offset:offset + 512])
    elapsed = time.perf_counter() - start
    return len(rows) / elapsed


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        through_mlobs, db_url = ingest_through_mlobs(root)
        raw = ingest_raw(root, db_url)
    print(f"sustained SQLite ingest ({RUNS * COMPONENTS_PER_RUN} component records)")
    print(f"  raw SQLAlchemy executemany (batches of 512): {raw:10.0f} records/s")
    print(f"  through mlobs (API → sink → commit):         {through_mlobs:10.0f} records/s")
    ratio = through_mlobs / raw
    print(f"  ratio mlobs / raw: {ratio:.2f}× (target ≥ 0.5×: {'met' if ratio >= 0.5 else 'NOT met'})")
    return {"raw_per_s": raw, "mlobs_per_s": through_mlobs, "ratio": ratio}


if __name__ == "__main__":
    main()

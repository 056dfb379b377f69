"""Sustained warehouse ingest into PostgreSQL: through mlobs vs raw psycopg COPY.

* mlobs: components recorded with the API (warehouse sink only), timed from the first call
  until ``mlobs.flush()`` returns, i.e. until every record is committed (the store COPYs
  component_runs straight into the table; see ``mlobs.warehouse.copy_writer``). Each run
  ends by flushing its records, as every mlobs run does;
* raw:   the same component rows, read back from the mlobs database, written with
  ``cursor.copy("COPY component_runs (...) FROM STDIN")`` / ``write_row`` straight into
  the table, in transactions of 512 rows (the batch size of bench_ingest's raw baseline),
  into a second fresh database of the same schema;
* store: the same records through ``WarehouseStore.write`` alone, one run per write, into
  a third database (where the time goes: the store vs the API and the sink thread);
* ceiling: the same pipeline with a sink that builds each record (``ComponentCall.record()``,
  as the warehouse sink does) and writes nothing: the API and record building alone, i.e.
  the most any warehouse sink could reach on this machine.

* CPU: the CPU time per record of the pipeline's thread, the sink's thread, the memory
  sampler, mlobs's warehouse writer process (the default warehouse sink's SQL work runs
  there) and the PostgreSQL server's processes, read from ``/proc``
  (Linux), against the wall time per record: whether the gap to raw COPY is waiting or
  work, and on which side. Printed for the round with the median ratio.

The ratio is the median over ROUNDS rounds, each timing mlobs and then raw COPY into
fresh databases (the 2-vCPU CI machine drifts by ±20% within minutes). Store and ceiling
are measured once.

The databases are created on the server at ``MLOBS_TEST_PG_ADMIN_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, as for the tests) and dropped
afterwards. When the server is unreachable the benchmark prints why and is skipped.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import bench_ingest  # noqa: E402 - same folder (run_benchmarks.py puts it on sys.path)
from cpu_accounting import CHILDREN, CpuSnapshot, cpu_per_item_us  # noqa: E402 - same folder

# The same pipeline as the SQLite ingest benchmark, so the two figures compare.
RUNS = bench_ingest.RUNS
COMPONENTS_PER_RUN = bench_ingest.COMPONENTS_PER_RUN
RAW_BATCH = 512
#: Paired rounds of (through mlobs, raw COPY); the figures are their medians.
ROUNDS = 3

PG_ADMIN_URL = os.environ.get("MLOBS_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _admin_engine():
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool,
                         connect_args={"connect_timeout": 5})


def unreachable() -> str | None:
    """Why PostgreSQL cannot be used (None: it can)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return f"PostgreSQL is unreachable at {PG_ADMIN_URL} ({str(exc).splitlines()[0]})"
    finally:
        engine.dispose()
    return None


@contextmanager
def fresh_database(purpose: str) -> Iterator[str]:
    """A new empty database at the mlobs schema revision; dropped on exit."""
    from sqlalchemy import text

    from mlobs.warehouse.migrate import upgrade
    admin = _admin_engine()
    name = f"mlobs_bench_{purpose}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def ingest_through_mlobs(root: Path, db_url: str) -> tuple[float, str | None]:
    """Records per second through mlobs, and where the CPU went (a printable line, None
    without Linux's /proc)."""
    import mlobs
    mlobs.configure(root=root, db_url=db_url, sinks=["warehouse"])
    before = CpuSnapshot.take("postgres")
    rate = bench_ingest.pipeline_records_per_s()
    used = cpu_per_item_us(before, CpuSnapshot.take("postgres"), RUNS * COMPONENTS_PER_RUN)
    return rate, None if used is None else _cpu_line(*used)


_THREAD_LABELS = {"MainThread": "pipeline thread", "mlobs-sink-warehouse": "sink thread",
                  "mlobs-memory-sampler": "memory sampler", CHILDREN: "writer process"}


def _cpu_line(threads: dict[str, float], server_us: float | None, wall_us: float) -> str:
    parts = {label: threads.pop(name, 0.0) for name, label in _THREAD_LABELS.items()}
    if sum(threads.values()) >= 0.05:
        parts["other threads"] = sum(threads.values())
    if server_us is not None:
        parts["PostgreSQL"] = server_us
    busy = sum(parts.values()) / wall_us
    return (", ".join(f"{label} {us:.1f}" for label, us in parts.items())
            + f"; wall {wall_us:.1f} ({busy:.2f} of {os.cpu_count()} cores busy)")


class _RecordsOnly:
    """A sink that writes nothing: the batch worker builds each record before a sink gets
    it, as for the warehouse sink."""

    name = "records-only"

    def export(self, records: list) -> None:
        pass

    def force_flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> None:
        pass


def records_only(root: Path) -> float:
    """Records per second of the API and record building alone (no database)."""
    import mlobs
    mlobs.configure(root=root, sinks=[], extra_sinks=[_RecordsOnly()])
    return bench_ingest.pipeline_records_per_s()


def _rows(source_url: str) -> tuple[list[str], list[tuple], list[dict]]:
    from sqlalchemy import JSON, create_engine, select

    from mlobs.warehouse.models import ComponentRun, Run
    components, runs = ComponentRun.__table__, Run.__table__
    engine = create_engine(source_url)
    try:
        with engine.connect() as conn:
            run_rows = [dict(r._mapping) for r in conn.execute(select(runs))]
            rows = conn.execute(select(components)).all()
    finally:
        engine.dispose()
    names = [c.name for c in components.c]
    json_at = [i for i, c in enumerate(components.c) if isinstance(c.type, JSON)]
    # COPY's text format: JSON values as JSON text, like any client doing raw COPY would.
    out = []
    for row in rows:
        values = list(row)
        for i in json_at:
            if values[i] is not None:
                values[i] = json.dumps(values[i])
        out.append(tuple(values))
    return names, out, run_rows


def ingest_raw_copy(source_url: str, target_url: str) -> tuple[float, int]:
    import psycopg
    from sqlalchemy import create_engine, insert
    from sqlalchemy.engine import make_url

    from mlobs.warehouse.models import Run
    names, rows, run_rows = _rows(source_url)
    engine = create_engine(target_url, json_serializer=json.dumps)
    with engine.begin() as conn:
        conn.execute(insert(Run.__table__), run_rows)
    engine.dispose()
    url = make_url(target_url)
    conninfo = psycopg.conninfo.make_conninfo(
        host=url.host, port=url.port, user=url.username, password=url.password,
        dbname=url.database)
    columns = ", ".join(f'"{n}"' for n in names)
    with psycopg.connect(conninfo) as conn:
        start = time.perf_counter()
        for offset in range(0, len(rows), RAW_BATCH):
            with conn.transaction(), conn.cursor() as cursor:
                with cursor.copy(f"COPY component_runs ({columns}) FROM STDIN") as copy:
                    for row in rows[offset:offset + RAW_BATCH]:
                        copy.write_row(row)
        elapsed = time.perf_counter() - start
        count = conn.execute("SELECT count(*) FROM component_runs").fetchone()[0]
    return len(rows) / elapsed, count


def ingest_store_only(source_url: str, target_url: str) -> float:
    """The same records through ``WarehouseStore.write`` alone (no API, no sink thread):
    how much of the gap to raw COPY is the store's (validation, signatures, COPY staging,
    artifact_index) and how much the API and the sink's."""
    from mlobs.warehouse.store import WarehouseStore
    with WarehouseStore(source_url) as source:
        batches = [source.get_run(run.run_id) for run in source.list_runs(limit=RUNS + 1)]
    with WarehouseStore(target_url) as store:
        start = time.perf_counter()
        for run, components in batches:  # type: ignore[misc]
            store.write([run], components)
        elapsed = time.perf_counter() - start
    return sum(len(c) for _, c in batches) / elapsed  # type: ignore[misc]


def main() -> dict[str, float] | None:
    total = RUNS * COMPONENTS_PER_RUN
    print(f"sustained PostgreSQL ingest ({total} component records, "
          f"median of {ROUNDS} paired rounds)")
    why = unreachable()
    if why:
        print(f"  SKIPPED: {why}; start it or set MLOBS_TEST_PG_ADMIN_URL")
        return None
    raws: list[float] = []
    throughs: list[float] = []
    cpu_lines: list[str | None] = []
    with tempfile.TemporaryDirectory() as tmp:
        # mlobs and raw COPY alternate, so the machine's drift hits both alike.
        for round_ in range(ROUNDS):
            with fresh_database("mlobs") as mlobs_url, fresh_database("raw") as raw_url:
                through, cpu = ingest_through_mlobs(Path(tmp) / f"round-{round_}", mlobs_url)
                throughs.append(through)
                cpu_lines.append(cpu)
                raw, copied = ingest_raw_copy(mlobs_url, raw_url)
                assert copied == total, f"raw COPY wrote {copied} rows, expected {total}"
                raws.append(raw)
                if round_ == 0:
                    with fresh_database("store") as store_url:
                        store_only = ingest_store_only(mlobs_url, store_url)
        ceiling = records_only(Path(tmp) / "records-only")
    raw = statistics.median(raws)
    through_mlobs = statistics.median(throughs)

    # records/s: medians over the rounds (store and ceiling: measured once).
    print(f"  {f'raw psycopg COPY (transactions of {RAW_BATCH})':<44}{raw:10.0f} records/s")
    print(f"  {f'WarehouseStore.write alone ({COMPONENTS_PER_RUN} per write)':<44}"
          f"{store_only:10.0f} records/s ({store_only / raw:.2f}× raw)")
    print(f"  {'API + records alone (sink writes nothing)':<44}{ceiling:10.0f} records/s "
          f"({ceiling / raw:.2f}× raw: the most any sink could reach)")
    print(f"  {'through mlobs (API → sink → COPY + commit)':<44}{through_mlobs:10.0f} records/s")
    # The pipeline and the sink are Python threads sharing one GIL: if their work never
    # overlaps, the times per record add up (compare with the measured figure above).
    serial = 1 / (1 / ceiling + 1 / store_only)
    print(f"  {'computed: API + records, then the store':<44}{serial:10.0f} records/s "
          f"({serial / raw:.2f}× raw: the figure if nothing overlaps)")
    ratios = [mine / theirs for mine, theirs in zip(throughs, raws)]
    median_round = sorted(range(ROUNDS), key=ratios.__getitem__)[ROUNDS // 2]
    if cpu_lines[median_round] is not None:
        print(f"  CPU µs per record through mlobs, round {median_round + 1} (/proc):\n"
              f"    {cpu_lines[median_round]}")
    print(f"  ratio mlobs / raw per round: {', '.join(f'{r:.2f}×' for r in ratios)}")
    ratio = statistics.median(ratios)
    print(f"  ratio mlobs / raw (median of the rounds' ratios): {ratio:.2f}× "
          f"(target ≥ 0.6×: {'met' if ratio >= 0.6 else 'NOT met'})")
    return {"raw_per_s": raw, "store_per_s": store_only, "records_only_per_s": ceiling,
            "mlobs_per_s": through_mlobs, "ratio": ratio}


if __name__ == "__main__":
    main()

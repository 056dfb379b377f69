"""Admin views (``mlobs.web``) at scale: the server time of every page and API call over
a warehouse of 100,000 runs and 1,000,000 component invocations.

    python tests/perf/bench_ui.py [--postgres ADMIN_URL] [--no-sqlite] [--only NAME,...]
                                  [--ddl SQL ...] [--explain] [--reseed] [--json FILE]

* The warehouse (``ui_seed.py``: runs over the last 30 days, 10 invocations each, 12
  components, 7 model signatures, about 3% errors and 5% empty results, 300 events,
  rollups ``all`` and ``hour`` stored by mlobs, drift checks and gate results) is
  generated once into a SQLite file under ``~/.cache/mlobs-bench/`` (``$MLOBS_BENCH_CACHE``)
  and reused while it is younger than ``--max-age-h`` hours (the pages look at the last 7
  days relative to now) and of the same ``ui_seed.SEED_VERSION``; ``--reseed`` forces it.
  A small cache directory (one video, three versions of a component) is written through
  :class:`mlobs.cache.store.ArtifactStore` for each run.
* PostgreSQL, with ``--postgres ADMIN_URL`` (or in CI, ``$CI`` set, at
  ``$MLOBS_TEST_PG_ADMIN_URL`` or the local server): a fresh database is created, seeded
  with the same rows, measured and dropped. Unreachable: a SKIPPED line.
* Each call goes through Starlette's TestClient to :func:`mlobs.web.app.create_app`
  (``base_url`` ``http://127.0.0.1:8765``, so the Host check passes): 2 warm-ups, then 20
  requests; the figure is the *server time*, from the app receiving the request to its
  last body message (the security middleware included, TestClient's transport not),
  median and p95 (nearest rank: the 19th of 20) in ms.
* Targets: every page and call p95 <= 200 ms, the runs page with a status filter <= 100
  ms. Each row says ok or MISS; for a MISS the statements the call ran are recorded and
  printed with their times and plans (``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN
  ANALYZE`` on PostgreSQL); ``--explain`` does so for every row.
* ``--ddl SQL`` (repeatable), e.g. ``--ddl "CREATE INDEX ix_x ON runs (status,
  started_at)"``: after the measurement, the statements are run on a copy of the SQLite
  file (and on the PostgreSQL database, then ``ANALYZE``) and every call is measured again,
  before and after side by side: what a proposed migration would change.

The exit code is 0 whatever the figures (a benchmark reports), 1 when seeding fails or a
call answers anything but 200.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))

import benchjson  # noqa: E402
import ui_seed  # noqa: E402

from mlobs.web.app import create_app  # noqa: E402
from mlobs.web.data import encode_cursor  # noqa: E402

CACHE_DIR = Path(os.environ.get("MLOBS_BENCH_CACHE", Path.home() / ".cache" / "mlobs-bench"))
PG_ADMIN = os.environ.get("MLOBS_TEST_PG_ADMIN_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BASE_URL = "http://127.0.0.1:8765"
WARMUP = 2
SAMPLES = 20
PAGE_P95_MS = 200.0
STATUS_P95_MS = 100.0
#: --explain: statements faster than this are listed without their plan.
PLAN_MIN_MS = 2.0


class RequestFailed(RuntimeError):
    """A call answered something other than 200."""


@dataclass
class Call:
    name: str
    path: str
    target_ms: float = PAGE_P95_MS


@dataclass
class Result:
    call: Call
    times_ms: list[float]
    size: int
    statements: list[tuple[float, str, Any]] = field(default_factory=list)
    #: why the call failed (then no times)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else math.nan

    @property
    def p95(self) -> float:
        ordered = sorted(self.times_ms)
        return ordered[math.ceil(0.95 * len(ordered)) - 1] if ordered else math.nan

    @property
    def ok(self) -> bool:
        return self.error is None and self.p95 <= self.call.target_ms


# -- the warehouse --------------------------------------------------------------------

def _anchor() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def cached_sqlite(runs: int, max_age_h: float, reseed: bool) -> ui_seed.Seeded:
    """The seeded SQLite file under CACHE_DIR: reused, or generated (then kept)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"ui-v{ui_seed.SEED_VERSION}-{runs}"
    path, meta = CACHE_DIR / f"{stem}.db", CACHE_DIR / f"{stem}.json"
    if not reseed and path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        anchor = datetime.fromisoformat(info["anchor"])
        age_h = (datetime.now(timezone.utc) - anchor).total_seconds() / 3600
        if age_h <= max_age_h:
            print(f"SQLite warehouse: reusing {path} (seeded {age_h:.1f} h ago in "
                  f"{info['seconds']:.0f} s; --reseed to regenerate)")
            return ui_seed.Seeded(f"sqlite:///{path}", anchor, runs, info["seconds"])
    for old in CACHE_DIR.glob("ui-v*"):  # other versions and sizes: one seed on disk
        old.unlink()
    partial = CACHE_DIR / f"{stem}.partial.db"
    print(f"SQLite warehouse: seeding {runs:,} runs, {runs * ui_seed.PER_RUN:,} "
          f"component_runs into {path} ...", flush=True)
    seeded = ui_seed.seed_sqlite(partial, _anchor(), runs)
    partial.rename(path)
    meta.write_text(json.dumps({"anchor": seeded.anchor.isoformat(),
                                "seconds": seeded.seconds, "runs": runs}))
    print(f"SQLite warehouse: seeded in {seeded.seconds:.1f} s "
          f"({path.stat().st_size / 1e6:.0f} MB)")
    return ui_seed.Seeded(f"sqlite:///{path}", seeded.anchor, runs, seeded.seconds)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str | None]:
    """A fresh database on the server (dropped afterwards); None when unreachable."""
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        print(f"PostgreSQL admin views: SKIPPED (server unreachable: "
              f"{exc.__class__.__name__})")
        yield None
        return
    name = f"mlobs_bench_ui_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the calls ------------------------------------------------------------------------

def _calls(engine: sa.Engine, client: TestClient) -> list[Call]:
    """Every page and API call, with real ids, cursors and names from the warehouse."""
    with engine.connect() as conn:
        newest = conn.execute(sa.text(
            "SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1")).scalar()

        def cursor_at(offset: int) -> str:
            row = conn.execute(sa.text(
                "SELECT started_at, run_id FROM runs ORDER BY started_at DESC, run_id DESC "
                "LIMIT 1 OFFSET :o"), {"o": offset - 1}).one()
            started = row[0] if isinstance(row[0], datetime) else \
                datetime.fromisoformat(row[0])
            return encode_cursor(started, row[1])

        count = conn.execute(sa.text("SELECT count(*) FROM runs")).scalar()
        # a smaller --runs (a quick try) goes as deep as half its runs
        deep_100_pages = cursor_at(min(100 * 50, count // 2))
        deep_50k = cursor_at(min(50_000, count // 2))
        fiftieth = cursor_at(50)
    page_2 = client.get("/api/runs").json()["next"]
    assert page_2 == fiftieth, "page 1's cursor is not the 50th run's"
    sig = ui_seed.model_signature(ui_seed.MODELS["transcribe"][1])
    video, p = ui_seed.CACHE_VIDEO, ui_seed.CACHE_PLATFORM
    component = ui_seed.CACHE_COMPONENT
    prefix = newest[:5]
    return [
        Call("runs", "/runs"),
        Call("runs status=error", "/runs?status=error", STATUS_P95_MS),
        Call("runs status=ok", "/runs?status=ok", STATUS_P95_MS),
        Call("runs platform=vimeo", "/runs?platform=vimeo"),
        Call("runs q=<5-char prefix>", f"/runs?q={prefix}"),
        Call("runs page 2", f"/runs?after={page_2}"),
        Call("runs page 101 (5,000 deep)", f"/runs?after={deep_100_pages}"),
        Call("runs 50,000 deep", f"/runs?after={deep_50k}"),
        Call("run", f"/runs/{newest}"),
        Call("run manifest.json", f"/runs/{newest}/manifest.json"),
        Call("components", "/components"),
        Call("component transcribe", "/components/transcribe"),
        Call("signatures", "/signatures"),
        Call("signature (transcribe v3)", f"/signatures/{sig}"),
        Call("cache", "/cache"),
        Call("cache video", f"/cache/{p}/{video}"),
        Call("cache video diff v1..v3", f"/cache/{p}/{video}?component={component}&v1=1&v2=3"),
        Call("quality", "/quality"),
        Call("api runs", "/api/runs"),
        Call("api runs status=error", "/api/runs?status=error"),
        Call("api run", f"/api/runs/{newest}"),
        Call("api components", "/api/components"),
        Call("api component transcribe", "/api/components/transcribe"),
        Call("api signature", f"/api/signatures/{sig}"),
        Call("api cache video", f"/api/cache/{video}"),
        Call("api cache stage", f"/api/cache/{video}/{component}"),
    ]


class ServerTimer:
    """ASGI wrapper: the time from the request reaching the app to its last body
    message (``last_s``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last_s = 0.0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        start = time.perf_counter()

        async def timed(message: dict) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_s = time.perf_counter() - start
            await send(message)

        await self.app(scope, receive, timed)


@contextmanager
def recorded(engine: sa.Engine) -> Iterator[list[tuple[float, str, Any]]]:
    """The statements run on ``engine`` meanwhile: (ms, SQL, parameters)."""
    found: list[tuple[float, str, Any]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_ui_start"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        elapsed = (time.perf_counter() - conn.info.pop("bench_ui_start")) * 1000
        found.append((elapsed, statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        yield found
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)


def _get(client: TestClient, path: str) -> bytes:
    try:
        response = client.get(path, follow_redirects=False)
    except Exception as exc:  # the app raised: TestClient re-raises the server's error
        raise RequestFailed(f"GET {path}: 500 {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise RequestFailed(f"GET {path}: {response.status_code} {response.text[:300]}")
    return response.content


def measure(db_url: str, root: Path, only: list[str] | None,
            explain_all: bool) -> list[Result]:
    app = create_app(db_url, root)
    engine: sa.Engine = app.state.mlobs.engine
    timer = ServerTimer(app)
    results = []
    with TestClient(timer, base_url=BASE_URL) as client:
        calls = _calls(engine, client)
        if only:
            calls = [c for c in calls if any(o in c.name for o in only)]
        for call in calls:
            times, size = [], 0
            try:
                for _ in range(WARMUP):
                    _get(client, call.path)
                for _ in range(SAMPLES):
                    size = len(_get(client, call.path))
                    times.append(timer.last_s * 1000)
            except RequestFailed as exc:  # measure the others, fail at the end
                results.append(Result(call, [], 0, error=str(exc)))
                continue
            result = Result(call, times, size)
            if explain_all or not result.ok:
                with recorded(engine) as statements:
                    _get(client, call.path)
                result.statements = statements
            results.append(result)
    engine.dispose()
    return results


# -- plans ----------------------------------------------------------------------------

def _compact(sql: str) -> str:
    return " ".join(sql.split())


def plan(engine: sa.Engine, statement: str, parameters: Any) -> list[str]:
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    if postgres:
        return [row[0] for row in rows]
    depth: dict[int, int] = {0: 0}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, 0) + 1
        lines.append("  " * (depth[node] - 1) + detail)
    return lines


def print_plans(db_url: str, results: list[Result]) -> None:
    engine = sa.create_engine(db_url)
    for result in results:
        if not result.statements:
            continue
        total = sum(ms for ms, _, _ in result.statements)
        print(f"\n  {result.call.name} ({result.call.path[:60]}): p95 {result.p95:.1f} ms, "
              f"{len(result.statements)} statements, {total:.1f} ms in the database")
        for ms, statement, parameters in sorted(result.statements, key=lambda s: -s[0]):
            print(f"    {ms:7.1f} ms  {_compact(statement)[:400]}")
            print(f"               parameters: {parameters!r}"[:300])
            if ms >= PLAN_MIN_MS:
                for line in plan(engine, statement, parameters):
                    print(f"               | {line}")
    engine.dispose()


# -- the report -----------------------------------------------------------------------

def print_table(title: str, results: list[Result],
                before: list[Result] | None = None) -> None:
    print(f"\n{title}: server time of {SAMPLES} requests after {WARMUP} warm-ups (ms)")
    was = {r.call.name: r for r in before or []}
    extra = f" {'p95 before':>10}" if before else ""
    print(f"  {'call':<28} {'median':>7} {'p95':>7}{extra} {'target':>7}  {'':4} {'bytes':>8}"
          f"  path")
    for r in results:
        if r.error is not None:
            print(f"  {r.call.name:<28} FAILED: {r.error[:300]}")
            continue
        old = f" {was[r.call.name].p95:10.1f}" if r.call.name in was else \
            (" " * 11 if before else "")
        print(f"  {r.call.name:<28} {r.median:7.1f} {r.p95:7.1f}{old} "
              f"{'<=' + format(r.call.target_ms, '.0f'):>7}  {'ok' if r.ok else 'MISS':4} "
              f"{r.size:8d}  {r.call.path[:70]}")
    misses = [r.call.name for r in results if not r.ok and r.error is None]
    failed = [r.call.name for r in results if r.error is not None]
    print(f"  {len(results) - len(misses) - len(failed)}/{len(results)} within target"
          + (f"; MISS: {', '.join(misses)}" if misses else "")
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def figures_of(backend: str, results: list[Result]) -> dict[str, float]:
    measured = [r for r in results if r.error is None]
    figures = {f"{backend}_{_slug(r.call.name)}_p95_ms": r.p95 for r in measured}
    figures[f"{backend}_misses"] = float(sum(not r.ok for r in measured))
    figures[f"{backend}_worst_p95_ms"] = max((r.p95 for r in measured), default=0.0)
    return figures


def _run_backend(label: str, db_url: str, root: Path, args: argparse.Namespace,
                 figures: dict[str, float], failures: list[str], apply_ddl) -> None:
    only = args.only.split(",") if args.only else None
    results = measure(db_url, root, only, args.explain)
    print_table(label, results)
    print_plans(db_url, results)
    figures.update(figures_of(label.split()[0].lower(), results))
    failures += [f"{label}: {r.error}" for r in results if r.error]
    if args.ddl:
        url = apply_ddl(args.ddl)
        after = measure(url, root, only, args.explain)
        print_table(f"{label}, after {'; '.join(args.ddl)}", after, before=results)
        print_plans(url, after)
        failures += [f"{label} after DDL: {r.error}" for r in after if r.error]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="also PostgreSQL: a database created and dropped on this "
                             "server (default in CI: $MLOBS_TEST_PG_ADMIN_URL or local)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--only", help="comma-separated parts of call names to measure")
    parser.add_argument("--ddl", action="append", default=[], metavar="SQL",
                        help="measure again after this statement (on a copy)")
    parser.add_argument("--explain", action="store_true",
                        help="statements and plans of every call, not only misses")
    parser.add_argument("--runs", type=int, default=ui_seed.RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--max-age-h", type=float, default=24.0,
                        help="reuse the cached SQLite seed while younger (default 24)")
    parser.add_argument("--reseed", action="store_true", help="regenerate the SQLite seed")
    parser.add_argument("--json", metavar="FILE",
                        help="write the figures as a pytest-benchmark-compatible file")
    args = parser.parse_args([] if argv is None else argv)
    postgres = args.postgres or (PG_ADMIN if os.environ.get("CI") else None)
    print(f"Admin views (mlobs.web): {args.runs:,} runs, "
          f"{args.runs * ui_seed.PER_RUN:,} component_runs")
    started = time.perf_counter()
    figures: dict[str, float] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-ui-") as directory:
        root = Path(directory)
        if not args.no_sqlite:
            seeded = cached_sqlite(args.runs, args.max_age_h, args.reseed)
            figures["sqlite_seed_s"] = seeded.seconds
            newest = _newest_run(seeded.db_url)
            ui_seed.seed_cache(root, newest)

            def sqlite_ddl(ddl: list[str]) -> str:
                copy = root / "with-ddl.db"
                shutil.copyfile(seeded.db_url.removeprefix("sqlite:///"), copy)
                con = sqlite3.connect(copy)
                for statement in ddl:
                    con.execute(statement)
                con.commit()
                con.close()
                return f"sqlite:///{copy}"

            _run_backend("SQLite", seeded.db_url, root, args, figures, failures, sqlite_ddl)
        if postgres:
            with postgres_database(postgres) as url:
                if url is not None:
                    print(f"\nPostgreSQL warehouse: seeding {args.runs:,} runs ...",
                          flush=True)
                    seeded = ui_seed.seed_postgres(url, _anchor(), args.runs)
                    print(f"PostgreSQL warehouse: seeded in {seeded.seconds:.1f} s")
                    figures["postgres_seed_s"] = seeded.seconds
                    if args.no_sqlite:
                        ui_seed.seed_cache(root, _newest_run(url))

                    def postgres_ddl(ddl: list[str]) -> str:
                        engine = sa.create_engine(url)
                        with engine.begin() as conn:
                            for statement in ddl:
                                conn.exec_driver_sql(statement)
                            conn.exec_driver_sql("ANALYZE")
                        engine.dispose()
                        return url

                    _run_backend("PostgreSQL", url, root, args, figures, failures,
                                 postgres_ddl)
    if args.json:
        benchjson.write(Path(args.json),
                        [benchjson.entry("ui", time.perf_counter() - started, figures)])
        print(f"results: {args.json}")
    if failures:
        raise RequestFailed("; ".join(failures))
    return figures


def _newest_run(db_url: str) -> str:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        run_id = conn.execute(sa.text(
            "SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1")).scalar()
    engine.dispose()
    return run_id


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except RequestFailed as exc:
        print(f"FAILED: {str(exc)[:2000]}", file=sys.stderr)
        sys.exit(1)

"""The warehouse sink's spool: when the database is away records are spooled locally, the
pipeline goes on, and every record reaches the warehouse exactly once when it is back
(automatically on a later export or flush, or through ``mlobs ingest --spool``)."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import mlobs
from mlobs.cli.main import main
from mlobs.core.errors import WarehouseError
from mlobs.recording.recorder import get_recorder, set_recorder
from mlobs.sinks.spool import Spool, SpoolBusyError, flock, spool_files
from mlobs.sinks.spool_replay import replay
from mlobs.sinks.warehouse_sink import WarehouseSink
from mlobs.sinks.writer_sink import WriterSink
from mlobs.testing import MemorySink
from mlobs.warehouse.migrate import upgrade
from mlobs.warehouse.store import WarehouseStore
from support.tcp_proxy import TcpProxy


@pytest.fixture(autouse=True)
def _reset_recorder(monkeypatch):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    # Retry the database quickly in tests (the default is a few seconds).
    monkeypatch.setattr(WarehouseSink, "RETRY_INTERVAL_S", 0.05)
    monkeypatch.setattr(WriterSink, "RETRY_INTERVAL_S", 0.05)
    yield
    set_recorder(None)


def counts(db_url: str, run_id: str) -> dict[str, int]:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {table: conn.execute(text(f"SELECT count(*) FROM {table} WHERE run_id = :r"),
                                        {"r": run_id}).scalar_one()
                    for table in ("runs", "component_runs", "events")}
    finally:
        engine.dispose()


def stored_component_ids(db_url: str, run_id: str) -> list[str]:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(text("SELECT component_run_id FROM component_runs "
                                            "WHERE run_id = :r"), {"r": run_id}).scalars())
    finally:
        engine.dispose()


def stored_status(db_url: str, run_id: str) -> str | None:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT status FROM runs WHERE run_id = :r"),
                                {"r": run_id}).scalar_one_or_none()
    finally:
        engine.dispose()


def warehouse_sink() -> WarehouseSink:
    return get_recorder().sink("warehouse")


def warehouse_stats():
    return next(s for s in mlobs.sink_stats() if s.name == "warehouse")


def components(run, names):
    for name in names:
        with run.component(name) as c:
            c.set_items(len(name))


@pytest.fixture
def proxied_pg(pg_url):
    """(direct URL, proxy, URL through the proxy) for a fresh, upgraded PG database."""
    upgrade(pg_url)
    direct = make_url(pg_url)
    with TcpProxy((direct.host or "127.0.0.1", direct.port or 5432)) as proxy:
        through = direct.set(host="127.0.0.1", port=proxy.port)
        yield pg_url, proxy, through.render_as_string(hide_password=False)


#: Who writes the warehouse: the writer process (the default) or the sink's own thread.
WRITERS = pytest.mark.parametrize("writer", ["process", "thread"])


@pytest.mark.postgres
@WRITERS
def test_a_cut_database_gets_every_record_exactly_once_when_it_answers_again(
        proxied_pg, tmp_path, monkeypatch, writer):
    monkeypatch.setenv("MLOBS_WAREHOUSE_WRITER", writer)
    direct, proxy, url = proxied_pg
    memory = MemorySink()
    mlobs.configure(root=tmp_path, db_url=url, sinks=["warehouse"], extra_sinks=[memory])
    sink = warehouse_sink()
    with mlobs.run("youtube", "cut-and-restored") as run:
        components(run, ["asr", "cleaning"])
        assert mlobs.flush()
        assert counts(direct, run.run_id)["component_runs"] == 2
        proxy.cut()  # the database goes away in the middle of the run
        components(run, ["embedding", "faces", "ocr"])
        assert mlobs.flush()
        assert sink.spooled >= 3
        assert spool_files(tmp_path / "spool")
        assert counts(direct, run.run_id)["component_runs"] == 2
        proxy.restore()
        time.sleep(0.1)  # past the retry interval
        components(run, ["summarization"])
        assert mlobs.flush()
        # The spool was replayed before the new batch was written.
        assert spool_files(tmp_path / "spool") == []
    assert run.status == "ok"
    assert mlobs.flush()
    stats = warehouse_stats()
    assert stats.failed == 0 and stats.dropped == 0
    assert writer == "process" or sink.replayed >= 3
    produced = sorted(c.component_run_id for c in memory.components)
    assert len(produced) == 6
    assert stored_component_ids(direct, run.run_id) == produced
    assert counts(direct, run.run_id) == {"runs": 1, "component_runs": 6, "events": 0}
    assert stored_status(direct, run.run_id) == "ok"
    assert proxy.connections >= 2  # it really went through the proxy, twice


@pytest.mark.postgres
@WRITERS
def test_mlobs_ingest_spool_writes_what_a_run_spooled_exactly_once(proxied_pg, tmp_path,
                                                                   capsys, monkeypatch, writer):
    monkeypatch.setenv("MLOBS_WAREHOUSE_WRITER", writer)
    direct, proxy, url = proxied_pg
    memory = MemorySink()
    mlobs.configure(root=tmp_path, db_url=url, sinks=["warehouse"], extra_sinks=[memory])
    with mlobs.run("youtube", "ingested-later") as run:
        components(run, ["asr"])
        assert mlobs.flush()
        proxy.cut()
        components(run, ["cleaning", "embedding"])
    # The run ended while the database was away: its final state is in the spool too.
    set_recorder(None)
    assert stored_status(direct, run.run_id) == "running"
    assert spool_files(tmp_path / "spool")
    capsys.readouterr()

    # Still away: the spool is kept and the command says so.
    assert main(["ingest", "--spool", "--root", str(tmp_path), "--db-url", url]) == 1
    err = capsys.readouterr().err
    assert "still unusable" in err and "spool" in err
    assert spool_files(tmp_path / "spool")

    proxy.restore()
    assert main(["ingest", "--spool", "--root", str(tmp_path), "--db-url", url]) == 0
    out = capsys.readouterr().out
    assert "2 component record(s)" in out or "3 component record(s)" in out
    assert spool_files(tmp_path / "spool") == []
    produced = sorted(c.component_run_id for c in memory.components)
    assert len(produced) == 3
    assert stored_component_ids(direct, run.run_id) == produced
    assert counts(direct, run.run_id) == {"runs": 1, "component_runs": 3, "events": 0}
    assert stored_status(direct, run.run_id) == "ok"
    # Again: nothing left, nothing duplicated.
    assert main(["ingest", "--spool", "--root", str(tmp_path), "--db-url", url]) == 0
    assert "nothing spooled" in capsys.readouterr().out
    assert counts(direct, run.run_id)["component_runs"] == 3


# -- the spool itself (SQLite) -----------------------------------------------------------

def test_a_torn_last_line_is_skipped_and_reported(tmp_path, make_run, sqlite_url):
    run, comps = make_run()
    spool = Spool(tmp_path / "spool")
    spool.append([run, *comps[:3]])
    spool.append(comps[3:])
    with open(spool.path, "ab") as f:  # a crash in the middle of the next batch
        f.write(b'{"type":"component","record":{"component_run_id":"half')
    store = WarehouseStore(sqlite_url, manage_schema=True)
    try:
        report = replay(tmp_path / "spool", store)
        assert report.complete and report.torn == 1
        assert "torn last line" in report.problems[0]
        assert (report.runs, report.components) == (1, 5)
        stored_run, stored_components = store.get_run(run.run_id)
        assert stored_run == run and stored_components == comps
    finally:
        store.close()
    assert spool_files(tmp_path / "spool") == []


def test_an_append_after_a_torn_line_starts_on_its_own_line(tmp_path, make_run, sqlite_url):
    run, comps = make_run()
    spool = Spool(tmp_path / "spool")
    spool.append([run])
    with open(spool.path, "ab") as f:
        f.write(b'{"type":"comp')
    spool.append(comps)
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        report = replay(tmp_path / "spool", store)
    assert report.torn == 1 and (report.runs, report.components) == (1, 5)


class FailingAfter:
    """A store that goes away after ``ok`` writes."""

    def __init__(self, store, ok):
        self.store, self.ok = store, ok

    def write(self, runs, components):
        if self.ok <= 0:
            raise WarehouseError("connection lost")
        self.ok -= 1
        self.store.write(runs, components)


def test_an_interrupted_replay_and_a_repeated_one_write_nothing_twice(tmp_path, make_run,
                                                                     sqlite_url):
    run, comps = make_run()
    spool_dir = tmp_path / "spool"
    Spool(spool_dir).append([run, *comps])
    Spool(spool_dir).append([run])  # a second file (another sink instance)
    saved = tmp_path / "saved"
    shutil.copytree(spool_dir, saved)
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        report = replay(spool_dir, FailingAfter(store, ok=2), chunk_size=2)
        assert report.error is not None and "connection lost" in report.error
        # Runs first (both files), then components: 4 written, 3 components left in
        # the first file; the second file held only its run and is gone.
        assert report.pending == 3
        assert len(spool_files(spool_dir)) == 1
        report = replay(spool_dir, store, chunk_size=2)
        assert report.complete and spool_files(spool_dir) == []
        # The very same spool replayed again (e.g. killed before it was removed).
        for path in saved.iterdir():
            shutil.copy(path, spool_dir / path.name)
        assert replay(spool_dir, store).complete
    db = sqlite_url
    assert counts(db, run.run_id) == {"runs": 1, "component_runs": 5, "events": 2}


def test_a_writer_appending_after_an_interrupted_replay_is_replayed_once(tmp_path, make_run,
                                                                         sqlite_url):
    """The writer's next append re-creates its file next to the claimed one the
    interrupted replay left: the next replay takes both, each record once."""
    run, comps = make_run()
    spool = Spool(tmp_path / "spool")
    spool.append([run, *comps[:2]])
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        report = replay(spool.directory, FailingAfter(store, ok=1), chunk_size=1)
        assert report.error is not None and report.pending == 2
        spool.append(comps[2:])
        report = replay(spool.directory, store)
        assert report.error is None and report.pending == 0
        assert (report.runs, report.components) == (0, len(comps))
        assert spool_files(spool.directory) == []
    assert counts(sqlite_url, run.run_id)["component_runs"] == len(comps)


def test_a_claimed_file_newer_than_the_writers_next_one_is_taken_once(tmp_path, make_run,
                                                                     sqlite_url):
    """The writer appended while the interrupted replay was still at work, so its new
    file is older than the claimed one: the claim merges it and lists the file once."""
    run, comps = make_run()
    spool = Spool(tmp_path / "spool")
    spool.append([run, *comps[:2]])
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        assert replay(spool.directory, FailingAfter(store, ok=1), chunk_size=1).pending == 2
        spool.append(comps[2:])
        [claimed] = [p for p in spool_files(spool.directory) if p != spool.path]
        os.utime(spool.path, (claimed.stat().st_mtime - 10,) * 2)
        report = replay(spool.directory, FailingAfter(store, ok=0))
        assert (report.files, report.pending) == (1, len(comps))
        assert len(claimed.read_text().splitlines()) == len(comps)
        report = replay(spool.directory, store)
        assert (report.files, report.components, report.pending) == (1, len(comps), 0)
    assert counts(sqlite_url, run.run_id)["component_runs"] == len(comps)


def test_components_spooled_apart_from_their_run_are_replayed(tmp_path, make_run,
                                                               sqlite_url):
    """A worker's file can hold components whose run another process spooled later."""
    run, comps = make_run()
    Spool(tmp_path / "spool").append(comps)  # the worker's file, the older one
    time.sleep(0.01)
    Spool(tmp_path / "spool").append([run])  # the orchestrator's
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        report = replay(tmp_path / "spool", store)
    assert report.error is None and (report.runs, report.components) == (1, len(comps))
    assert spool_files(tmp_path / "spool") == []
    assert counts(sqlite_url, run.run_id)["component_runs"] == len(comps)


def test_an_interrupted_replay_keeps_the_rest_of_its_file_and_every_later_file(
        tmp_path, make_run, sqlite_url):
    """Three writers' files, each as a run leaves it (its first record, its components,
    its final record): the first is written, the second cut off after one chunk of
    components, the third not reached. The database failing before any write leaves every
    file as it was; the next full replay writes each record once."""
    spool_dir = tmp_path / "spool"
    runs = [make_run() for _ in range(3)]
    for order, (run, comps) in enumerate(runs):
        spool = Spool(spool_dir)
        spool.append([run, *comps, run])
        os.utime(spool.path, (1_000_000 + order,) * 2)  # replayed in this order
    before = {path.name: path.read_bytes() for path in spool_files(spool_dir)}
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        report = replay(spool_dir, FailingAfter(store, ok=0), chunk_size=2)
        assert report.error is not None and report.pending == 21 and report.runs == 0
        claimed = {path.name.replace(".replaying", ""): path.read_bytes()
                   for path in spool_files(spool_dir)}
        assert claimed == before
        # chunks of 2: 6 run lines (3 writes), file 1's 5 components (3), file 2's first
        # 2 (1); file 2 is cut to its last 3 components, without its final run line.
        report = replay(spool_dir, FailingAfter(store, ok=7), chunk_size=2)
        assert (report.runs, report.components) == (6, 7)
        assert report.pending == 3 + 7  # the third file holds its two run lines too
        left = {path.name.replace(".replaying", ""): path.read_bytes()
                for path in spool_files(spool_dir)}
        first, second, third = before
        assert set(left) == {second, third} and left[third] == before[third]
        assert len(left[second].splitlines()) == 3 and b'"type":"run"' not in left[second]
        report = replay(spool_dir, store)
        assert report.complete and spool_files(spool_dir) == []
        assert (report.runs, report.components) == (2, 8)  # the third file's runs again
    for run, comps in runs:
        assert counts(sqlite_url, run.run_id) == {"runs": 1, "component_runs": 5, "events": 2}


class CountingStore:
    """A store that keeps nothing: replay's own memory is what is measured."""

    def __init__(self):
        self.records = 0

    def write(self, runs, components):
        self.records += len(runs) + len(components)


def test_replay_memory_does_not_grow_with_the_spool(tmp_path, make_run):
    """A spool that grew during a long outage is streamed, a chunk at a time: replaying
    four times as many records peaks at about the same memory (it was ~5× the file size
    when whole files were loaded)."""
    import tracemalloc

    def peak_bytes(runs: int) -> int:
        spool = Spool(tmp_path / f"spool-{runs}")
        for _ in range(runs // 50):
            spool.append([record for run, comps in (make_run() for _ in range(50))
                          for record in (run, *comps)])
        store = CountingStore()
        tracemalloc.start()
        try:
            report = replay(spool.directory, store, chunk_size=100)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert report.complete and store.records == runs * 6
        return peak

    small, large = peak_bytes(200), peak_bytes(800)
    assert large < 1.5 * small, f"peak {large} B for 4,800 records vs {small} B for 1,200"


def test_records_appended_after_a_torn_claimed_file_start_on_their_own_line(
        tmp_path, make_run, sqlite_url):
    """A claimed file left with a torn tail (the database failed before its replay got
    anywhere) is merged with its writer's next file without fusing the two lines."""
    run, comps = make_run()
    spool = Spool(tmp_path / "spool")
    spool.append([run, *comps[:2]])
    with open(spool.path, "ab") as f:
        f.write(b'{"type":"component","record":{"comp')  # e.g. a disk that filled up
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        assert replay(spool.directory, FailingAfter(store, ok=0)).pending == 4
        spool.append(comps[2:])  # a new file under the writer's same name
        report = replay(spool.directory, store)
    assert report.complete and report.torn == 1 and "unreadable line 4" in report.problems[0]
    assert (report.runs, report.components) == (1, len(comps))


def test_a_record_refused_again_after_an_interrupted_replay_is_set_aside_once(
        tmp_path, make_run, sqlite_url):
    import json
    bad_run, _ = make_run()
    bad_run.status = "finished"  # not a run status: the warehouse refuses it
    run, comps = make_run()
    spool_dir = tmp_path / "spool"
    Spool(spool_dir).append([bad_run, run, *comps])
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        # The runs' chunk is refused; written one by one, the bad run is refused, then
        # the database goes away: every file stays as it was.
        report = replay(spool_dir, FailingAfter(store, ok=2), chunk_size=2)
        assert report.rejected == 1 and report.error is not None
        report = replay(spool_dir, store, chunk_size=2)
        assert report.complete and report.rejected == 1  # met (and reported) again
        Spool(spool_dir).append([bad_run])  # spooled again, e.g. by another process
        assert replay(spool_dir, store).rejected == 1
    assert counts(sqlite_url, run.run_id) == {"runs": 1, "component_runs": 5, "events": 2}
    kept = [json.loads(line)["line"]["record"]["run_id"]
            for line in (spool_dir / "rejected.jsonl").read_text().splitlines()]
    assert kept == [bad_run.run_id]


@pytest.mark.parametrize("line", [b'{"type":"run","record":null}\n', b'[1, 2]\n',
                                  b'{"type":"component","record":"x"}\n'])
def test_a_json_line_of_the_wrong_shape_is_skipped_not_taken_for_the_database(
        tmp_path, make_run, sqlite_url, line):
    run, comps = make_run()
    spool = Spool(tmp_path / "spool")
    spool.append([run])
    with open(spool.path, "ab") as f:
        f.write(line)
    spool.append(comps)
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        report = replay(spool.directory, store)
    assert report.complete and report.torn == 1 and "unreadable line 2" in report.problems[0]
    assert (report.runs, report.components) == (1, len(comps))


def test_two_replayers_never_work_at_once(tmp_path, make_run, sqlite_url):
    run, _ = make_run()
    spool_dir = tmp_path / "spool"
    Spool(spool_dir).append([run])
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        with flock(spool_dir / ".replay.lock"):
            with pytest.raises(SpoolBusyError):
                replay(spool_dir, store, wait=False)
        assert replay(spool_dir, store, wait=False).runs == 1


def test_a_dead_sqlite_path_spools_and_the_sink_replays_once_it_works(tmp_path, make_run):
    blocker = tmp_path / "wh"
    blocker.write_text("a file where the warehouse directory should be")
    db_url = f"sqlite:///{blocker / 'warehouse.db'}"
    sink = WarehouseSink(db_url, manage_schema=True, spool_dir=tmp_path / "spool")
    run, comps = make_run()
    sink.export([run, *comps[:2]])  # does not raise: spooled
    sink.export(comps[2:])  # within the retry interval: spooled without trying
    assert sink.spooled == 6 and sink.spool_path.exists()
    blocker.unlink()  # the path works again
    time.sleep(0.1)
    assert sink.force_flush(1)  # a flush replays
    assert sink.replayed == 6 and not sink.spool_path.exists()
    sink.shutdown(1)
    assert counts(db_url, run.run_id) == {"runs": 1, "component_runs": 5, "events": 2}


def test_a_dead_sqlite_path_spools_and_mlobs_ingest_spool_writes_it(tmp_path, make_run,
                                                                    capsys):
    blocker = tmp_path / "wh"
    blocker.write_text("not a directory")
    sink = WarehouseSink(f"sqlite:///{blocker / 'warehouse.db'}",
                         spool_dir=tmp_path / "root" / "spool")
    run, comps = make_run()
    sink.export([run, *comps])
    sink.shutdown(1)
    good = f"sqlite:///{tmp_path / 'good.db'}"
    upgrade(good)
    assert main(["ingest", "--spool", "--root", str(tmp_path / "root"), "--db-url", good]) == 0
    assert "1 run record(s), 5 component record(s)" in capsys.readouterr().out
    assert counts(good, run.run_id) == {"runs": 1, "component_runs": 5, "events": 2}
    assert main(["ingest", "--spool", "--root", str(tmp_path / "root"), "--db-url", good]) == 0
    assert counts(good, run.run_id) == {"runs": 1, "component_runs": 5, "events": 2}


def test_a_refused_record_is_not_spooled(tmp_path, make_run, sqlite_url):
    from mlobs.core.errors import InvalidRecordError
    sink = WarehouseSink(sqlite_url, manage_schema=True, spool_dir=tmp_path / "spool")
    run, comps = make_run()
    comps[0].items = 2**70
    with pytest.raises(InvalidRecordError):
        sink.export([run, *comps])
    sink.shutdown(1)
    assert sink.spooled == 0 and spool_files(tmp_path / "spool") == []


def test_ingest_needs_paths_or_spool(tmp_path, capsys):
    assert main(["ingest", "--db-url", f"sqlite:///{tmp_path / 'w.db'}"]) == 1
    assert "--spool" in capsys.readouterr().err
    assert main(["ingest", "--spool", "--root", str(tmp_path)]) == 0
    assert "nothing spooled" in capsys.readouterr().out


@WRITERS
def test_a_dead_warehouse_spools_instead_of_failing_and_the_manifest_keeps_everything(
        tmp_path, caplog, monkeypatch, writer):
    monkeypatch.setenv("MLOBS_WAREHOUSE_WRITER", writer)
    mlobs.configure(root=tmp_path, sinks=["manifest", "warehouse"],
                    db_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with caplog.at_level("WARNING", logger="mlobs.sinks.warehouse"):
        with mlobs.run("youtube", "abc") as run:
            with run.component("cleaning") as c:
                c.set_items(3)
            with run.component("faces") as c:
                c.empty("no_faces")
        assert mlobs.flush()
    assert run.status == "ok"
    stats = warehouse_stats()
    assert stats.failed == 0 and stats.exported == 4 and stats.spooled == 4
    assert warehouse_sink().spooled == 4
    assert any("cannot take records" in r.getMessage() and "spooling" in r.getMessage()
               for r in caplog.records)
    from mlobs.core.manifest import read_manifest
    record, comps = read_manifest(run.manifest_path)
    assert len(comps) == 2 and not any("failed" in w for w in record.warnings)
    assert spool_files(tmp_path / "spool")

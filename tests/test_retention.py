"""Retention / GC (``mlobs gc``, :mod:`mlobs.housekeeping.retention`).

The main fixture simulates 90 days of runs of three videos under several keys, written as
real manifests, warehouse rows (SQLite and PostgreSQL) and cached versions, and checks that exactly the
runs, versions and intermediate directories the policy names survive, and that
``--dry-run`` and a real run print the same plan.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

import mlobs
import mlobs.cache.store as store_module
from mlobs.cache.intermediate import (
    REGISTRATION_FILE,
    find_intermediates,
    intermediate_dir,
)
from mlobs.cache.store import ArtifactStore
from mlobs.cli.main import main
from mlobs.core.errors import ConfigError
from mlobs.core.manifest import manifest_document, write_manifest
from mlobs.core.paths import manifest_path
from mlobs.core.records import ComponentRecord, ModelRef, RunRecord, iso_utc
from mlobs.core.signature import config_hash, idempotency_key, model_signature
from mlobs.housekeeping.gc import apply_gc
from mlobs.housekeeping.inventory import collect_inventory
from mlobs.housekeeping.retention import (
    CacheVersion,
    GcPolicy,
    Inventory,
    RunInfo,
    decide_runs,
    plan_gc,
)
from mlobs.recording.recorder import set_recorder
from mlobs.warehouse.deletion import RowCounts, count_run_rows, delete_runs
from mlobs.warehouse.models import Base
from mlobs.warehouse.store import WarehouseStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=90)
NOW_ISO = iso_utc(NOW)
WHISPER_A = ModelRef("whisper-small", "r1", "sha256:" + "a" * 64, engine="torch",
                     precision="fp16", device="cuda:0")
WHISPER_B = ModelRef("whisper-small", "r1", "sha256:" + "a" * 64, engine="tensorrt",
                     precision="fp16", device="cuda:0")


def day(d: float) -> datetime:
    """Runs start one hour into their day, so day 30 is inside a 60-day cap at day 90."""
    return T0 + timedelta(days=d, hours=1)


@dataclass
class Sim:
    """A root with manifests, a SQLite warehouse and a cache, filled run by run."""

    root: Path
    db_url: str
    monkeypatch: pytest.MonkeyPatch
    runs: dict[str, str] = field(default_factory=dict)  # label -> run_id
    versions: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (video, component, label) -> version

    def __post_init__(self) -> None:
        self.cache = ArtifactStore(self.root / "cache")
        self.warehouse = WarehouseStore(self.db_url, manage_schema=True)

    def run(self, label: str, video: str, d: float, status: str, *, model: ModelRef | None,
            config: dict | None = None, manifest: bool = True, warehouse: bool = True,
            cache: dict[str, str] | None = None, pipeline_version: str = "1.0") -> str:
        """One run at day ``d``; ``cache`` maps component -> "save" or "hit:<label>"
        (the version saved by the run labelled so)."""
        run_id = str(uuid.uuid4())
        self.runs[label] = run_id
        start = day(d)
        config = config or {"fps": 1}
        record = RunRecord(run_id=run_id, platform_id="youtube", video_id=video,
                           status=status, started_at=start, config=config,
                           config_hash=config_hash(config), sampling_policy_version="sp-1",
                           pipeline_version=pipeline_version, labels={"sim": label},
                           finished_at=None if status == "running"
                           else start + timedelta(minutes=5),
                           duration_ms=None if status == "running" else 300_000.0)
        components = []
        for offset, (name, how) in enumerate(sorted((cache or {}).items())):
            models = [model] if (model is not None and name == "asr") else []
            key = idempotency_key(platform_id="youtube", video_id=video, component=name,
                                  config_hash=record.config_hash,
                                  sampling_policy_version="sp-1", producer_version="1",
                                  schema_version="1", model_signature=model_signature(models))
            if how == "save":
                self.monkeypatch.setattr(store_module, "_now", lambda: start)
                entry = self.cache.save("youtube", video, name, {"label": label, "n": d},
                                        key=key, input_hash="i-" + label, models=models,
                                        run_id=run_id)
                self.versions[(video, name, label)] = version = entry.version
                cache_status = "miss"
            else:
                version = self.versions[(video, name, how.split(":", 1)[1])]
                cache_status = "hit"
            began = start + timedelta(seconds=offset)
            components.append(ComponentRecord(
                component_run_id=str(uuid.uuid4()), run_id=run_id, component=name, attempt=1,
                required=True, status="ok", started_at=began,
                finished_at=began + timedelta(seconds=1), duration_ms=1000.0,
                producer_version="1", schema_version="1", models_used=models,
                model_signature=model_signature(models), cache_status=cache_status,
                cache_key=key.digest, cache_version=version))
        if manifest:
            write_manifest(manifest_path(self.root / "runs", "youtube", video, run_id),
                           manifest_document(record, components))
        if warehouse:
            self.warehouse.write([record], components)
        return run_id

    def intermediate(self, video: str, name: str, d: float) -> Path:
        path = intermediate_dir("youtube", video, name, root=self.root)
        (path / "frame_0001.jpg").write_bytes(b"\xff" * 1000)
        registration = path / REGISTRATION_FILE
        document = json.loads(registration.read_text())
        document["created_at"] = iso_utc(day(d))
        registration.write_text(json.dumps(document))
        return path

    # -- what is left ---------------------------------------------------------------------
    def manifest_run_ids(self) -> set[str]:
        return {p.parent.name for p in (self.root / "runs").glob("*/*/*/manifest.json")}

    def warehouse_run_ids(self) -> set[str]:
        with self.warehouse.engine.connect() as conn:
            return set(conn.scalars(text("SELECT run_id FROM runs")))

    def cache_versions(self, video: str, component: str) -> set[int]:
        index = self.cache.info("youtube", video)
        return {e.version for e in index.versions(component)} if index else set()

    def ids(self, *labels: str) -> set[str]:
        return {self.runs[label] for label in labels}


@pytest.fixture
def sim(tmp_path, monkeypatch, db_url) -> Sim:
    """On SQLite and on PostgreSQL (``db_url``)."""
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    simulation = Sim(tmp_path / "root", db_url, monkeypatch)
    yield simulation
    simulation.warehouse.close()


def build_90_days(sim: Sim) -> dict[str, set[str]]:
    """The scenario; returns the labels expected to survive, by kind."""
    # v1, key A (WHISPER_A): a run every 2 days, days 0..88. asr is computed every run;
    # frames is computed on day 0, again on day 32 (new input) and on day 70 (another
    # input); from day 72 on the input is back to day 32's, so runs hit day 32's version.
    special = {88: "error", 86: "running", 82: "error"}
    for d in range(0, 90, 2):
        if d in (0, 32, 70):
            frames = "save"
        elif d < 32:
            frames = "hit:A0"
        elif d < 70:
            frames = "hit:A32"
        else:
            frames = "hit:A32" if d >= 72 else "hit:A70"
        sim.run(f"A{d}", "v1", d, special.get(d, "ok"), model=WHISPER_A,
                cache={"asr": "save", "frames": frames})
    # v1, key B (another engine: another model_signature): days 35..43.
    for d, status in ((35, "ok"), (37, "ok"), (39, "ok"), (41, "ok"), (43, "error")):
        sim.run(f"B{d}", "v1", d, status, model=WHISPER_B, cache={"asr": "save"})
    # v2, key C: only runs before the cap, all ok.
    for d in range(0, 30, 4):
        sim.run(f"C{d}", "v2", d, "ok", model=WHISPER_A, cache={"asr": "save"})
    # v2, key D (another config): never succeeded; some only in the warehouse, one only
    # in a manifest.
    for d in (40, 50, 60, 70, 80):
        sim.run(f"D{d}", "v2", d, "error", model=WHISPER_A, config={"fps": 2},
                manifest=d >= 60, warehouse=d != 60)
    # v3, key E: warehouse only (a sink without manifests), ok every 2 days from day 31.
    for d in range(31, 90, 2):
        sim.run(f"E{d}", "v3", d, "ok", model=None, manifest=False)
    # Someone rolled asr of v1 back to day 38's version: current, so kept.
    sim.cache.set_current("youtube", "v1", "asr", sim.versions[("v1", "asr", "A38")])
    sim.intermediate("v1", "frames", 80)   # expired (7-day TTL ends at day 83)
    sim.intermediate("v1", "audio", 85)    # kept
    sim.intermediate("v2", "frames", 10)   # expired

    return {
        "runs": {"A88", "A86", "A84", "A82", "A80",   # after latest ok, latest ok, 2 previous
                 "B43", "B41", "B39", "B37",
                 "D40", "D50", "D60", "D70", "D80",     # no ok run: all kept inside the cap
                 "E89", "E87", "E85"},
        "asr_v1": {"A38", "A80", "A82", "A84", "A86", "A88", "B37", "B39", "B41", "B43"},
        "frames_v1": {"A32", "A70"},   # A32: used by kept runs; A70: current
    }


def test_ninety_days_keep_exactly_what_the_policy_says(sim, capsys):
    expected = build_90_days(sim)
    args = ["gc", "--root", str(sim.root), "--db-url", sim.db_url, "--now", NOW_ISO,
                 "--drop-warehouse-rows"]
    assert main([*args, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert dry.rstrip().endswith("dry run: nothing was deleted")
    before = (sim.manifest_run_ids(), sim.warehouse_run_ids(),
              sim.cache_versions("v1", "asr"))

    assert main(args) == 0
    real = capsys.readouterr().out
    # Both print the same plan; the real run then says what it deleted.
    assert dry.rsplit("\n", 2)[0] == real.rsplit("\n", 2)[0]
    assert "deleted " in real.splitlines()[-1]
    assert before[0] and before[1]

    kept = sim.ids(*expected["runs"])
    with_manifest = {rid for label, rid in sim.runs.items()
                     if label[0] in "ABC" or label in ("D60", "D70", "D80")}
    in_warehouse = {rid for label, rid in sim.runs.items() if label != "D60"}
    assert sim.manifest_run_ids() == kept & with_manifest
    assert sim.warehouse_run_ids() == kept & in_warehouse
    assert sim.cache_versions("v1", "asr") == {sim.versions[("v1", "asr", label)]
                                               for label in expected["asr_v1"]}
    assert sim.cache_versions("v1", "frames") == {sim.versions[("v1", "frames", label)]
                                                  for label in expected["frames_v1"]}
    assert sim.cache_versions("v2", "asr") == set()   # every version past the cap
    index = sim.cache.info("youtube", "v1")
    assert index.current("asr").version == sim.versions[("v1", "asr", "A38")]
    assert index.current("frames").version == sim.versions[("v1", "frames", "A70")]
    # every kept version's file is still there and loads
    for component in ("asr", "frames"):
        for entry in index.versions(component):
            sim.cache.load_entry("youtube", "v1", entry)
    assert {(i.video_id, i.name) for i in find_intermediates(sim.root / "cache")} == {
        ("v1", "audio")}
    assert not (sim.root / "cache" / "youtube" / "v2" / "intermediate").exists()
    # no rows of deleted runs anywhere in the warehouse
    with sim.warehouse.engine.connect() as conn:
        for table in ("component_runs", "events", "run_labels", "artifact_index"):
            column = "latest_success_run_id" if table == "artifact_index" else "run_id"
            left = set(conn.scalars(text(f"SELECT {column} FROM {table}")))
            assert left <= kept, table
        # the kept runs keep their labels
        assert set(conn.scalars(text("SELECT run_id FROM run_labels"))) == kept & in_warehouse
        # the artifact index (keyed without the models) still names the latest ok runs;
        # key C's row went with its runs
        assert set(conn.scalars(text("SELECT latest_success_run_id FROM artifact_index"))) \
            == sim.ids("A84", "E89")

    # A second gc finds nothing left to do.
    assert main([*args, "--dry-run"]) == 0
    again = capsys.readouterr().out
    assert "total: nothing to delete" in again
    assert "runs: 17 kept, 0 to delete" in again


def test_plan_lists_reasons_bytes_and_rows(sim, capsys):
    build_90_days(sim)
    assert main(["gc", "--root", str(sim.root), "--db-url", sim.db_url, "--now", NOW_ISO, "--drop-warehouse-rows",
                 "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["deleted"] is None
    plan = out["plan"]
    reasons = {r["run_id"]: (r["action"], r["reason"]) for r in plan["runs"]}
    assert reasons[sim.runs["A84"]] == ("keep", "latest_ok")
    assert reasons[sim.runs["A82"]] == ("keep", "previous")
    assert reasons[sim.runs["A80"]] == ("keep", "previous")
    assert reasons[sim.runs["A86"]] == ("keep", "after_latest_ok")
    assert reasons[sim.runs["A78"]] == ("delete", "superseded")
    assert reasons[sim.runs["A28"]] == ("delete", "hard_cap")
    assert reasons[sim.runs["A30"]] == ("delete", "superseded")
    assert reasons[sim.runs["C28"]] == ("delete", "hard_cap")   # the latest ok, but too old
    assert reasons[sim.runs["D40"]] == ("keep", "no_ok_run")
    assert reasons[sim.runs["E83"]] == ("delete", "superseded")
    versions = {(v["component"], v["version"]): v["reason"] for v in plan["cache_versions"]
                if v["video_id"] == "v1"}
    assert versions[("frames", sim.versions[("v1", "frames", "A0")])] == "hard_cap"
    assert versions[("asr", sim.versions[("v1", "asr", "A40")])] == "dropped_run"
    assert ("asr", sim.versions[("v1", "asr", "A38")]) not in versions
    # bytes: the sum of what is listed, and it matches the files on disk
    listed = (sum(r["manifest_bytes"] for r in plan["runs"] if r["action"] == "delete")
              + sum(v["bytes"] for v in plan["cache_versions"])
              + sum(i["bytes"] for i in plan["intermediates"]))
    assert plan["totals"]["bytes"] == listed > 0
    for v in plan["cache_versions"]:
        assert Path(v["path"]).stat().st_size == v["bytes"]
    assert sum(i["bytes"] for i in plan["intermediates"]) == 2000 + sum(
        (Path(i["path"]) / REGISTRATION_FILE).stat().st_size for i in plan["intermediates"])
    rows = plan["warehouse"]["rows"]
    deleted_ids = set(plan["warehouse"]["run_ids"])
    assert rows["runs"] == len(deleted_ids)
    assert deleted_ids == {r["run_id"] for r in plan["runs"]
                           if r["action"] == "delete" and r["warehouse_rows"]}
    with sim.warehouse.engine.connect() as conn:
        n = conn.execute(text("SELECT COUNT(*) FROM component_runs")).scalar()
    assert 0 < rows["component_runs"] < n


def test_by_default_warehouse_rows_go_only_past_the_cap(sim, capsys):
    expected = build_90_days(sim)
    assert main(["gc", "--root", str(sim.root), "--db-url", sim.db_url, "--now", NOW_ISO]) == 0
    capsys.readouterr()
    past_cap = {rid for label, rid in sim.runs.items() if day(int(label[1:])) < NOW -
                timedelta(days=60)}
    assert sim.warehouse_run_ids() == set(sim.runs.values()) - past_cap - sim.ids("D60")
    kept = sim.ids(*expected["runs"])
    assert sim.manifest_run_ids() <= kept
    # the superseded runs' rows stay, yet a second gc has nothing left to do
    assert main(["gc", "--root", str(sim.root), "--db-url", sim.db_url, "--now", NOW_ISO,
                 "--dry-run"]) == 0
    assert "total: nothing to delete" in capsys.readouterr().out


def test_keep_previous_and_cap_options(sim, capsys):
    build_90_days(sim)
    assert main(["gc", "--root", str(sim.root), "--db-url", sim.db_url, "--now", NOW_ISO, "--drop-warehouse-rows",
                 "--keep-previous", "0", "--hard-cap-days", "10", "--show-kept"]) == 0
    out = capsys.readouterr().out
    assert "keep   run" in out and "[latest_ok]" in out
    # cap at day 80: of key A only days 82..88 remain; 84 is the latest ok
    assert sim.manifest_run_ids() & set(sim.runs.values()) == sim.ids(
        "A88", "A86", "A84", "D80")
    assert sim.warehouse_run_ids() == sim.ids("A88", "A86", "A84", "D80", "E89")


def test_real_runs_with_the_cache(tmp_path, monkeypatch, capsys):
    """Runs recorded by mlobs itself: the first run's version is used by the later ones,
    so it stays although that run goes."""
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path))
    mlobs.configure(root=tmp_path)
    run_ids = []
    try:
        for _ in range(4):
            with mlobs.run("youtube", "vid", config={"fps": 1}) as run:
                with run.component("asr", producer_version="1", schema_version="1",
                                   models=[WHISPER_A], cache=True, inputs={"x": 1}) as c:
                    if not c.hit:
                        c.set_result({"text": "hi"})
                frames = intermediate_dir("youtube", "vid", "frames")
                (frames / "f.bin").write_bytes(b"1234")
            run_ids.append(run.run_id)
    finally:
        set_recorder(None)
    assert main(["gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "runs: 3 kept, 1 to delete (0 hard_cap, 1 superseded)" in out
    assert "cache versions: 0 to delete" in out
    assert "intermediate directories: 0 to delete" in out
    later = (datetime.now(timezone.utc) + timedelta(days=8)).isoformat()
    assert main(["gc", "--now", later, "--drop-warehouse-rows"]) == 0
    out = capsys.readouterr().out
    assert "deleted 1 run manifest dir(s), 0 cache version(s), 1 intermediate dir(s)" in out
    left = {p.parent.name for p in (tmp_path / "runs").glob("*/*/*/manifest.json")}
    assert left == set(run_ids[1:])
    with WarehouseStore(f"sqlite:///{tmp_path / 'warehouse.db'}") as store:
        assert store.get_run(run_ids[0]) is None
        assert all(store.get_run(r) for r in run_ids[1:])
    index = ArtifactStore(tmp_path / "cache").info("youtube", "vid")
    assert [(e.version, e.run_id) for e in index.versions("asr")] == [(1, run_ids[0])]


# -- the pure rules ------------------------------------------------------------------------

def info(label: str, d: float, status: str = "ok", *, key: str = "k",
         refs: frozenset = frozenset()) -> RunInfo:
    return RunInfo(run_id=label, platform_id="p", video_id="v", status=status,
                   started_at=day(d), config_hash=key, cache_refs=refs)


def decisions(runs, **policy):
    return {d.run.run_id: (d.keep, d.reason)
            for d in decide_runs(runs, GcPolicy(**policy), NOW)}


def test_rules_on_small_cases():
    runs = [info("r1", 70), info("r2", 71, "error"), info("r3", 72), info("r4", 73),
            info("r5", 74, "running")]
    assert decisions(runs) == {"r5": (True, "after_latest_ok"), "r4": (True, "latest_ok"),
                               "r3": (True, "previous"), "r2": (True, "previous"),
                               "r1": (False, "superseded")}
    assert decisions(runs, keep_previous=0)["r3"] == (False, "superseded")
    assert decisions(runs, keep_previous=10)["r1"] == (True, "previous")
    # keys are independent; a key without an ok run keeps everything inside the cap
    other = [info("x1", 50, "error", key="other"), info("x2", 20, "error", key="other")]
    assert decisions(runs + other)["x1"] == (True, "no_ok_run")
    assert decisions(runs + other)["x2"] == (False, "hard_cap")
    # the anchor is the latest ok inside the cap; same start: run_id breaks the tie
    tie = [info("a", 80), info("b", 80)]
    assert decisions(tie, keep_previous=0) == {"b": (True, "latest_ok"),
                                               "a": (False, "superseded")}


def test_a_run_the_artifact_index_names_is_kept(sim, capsys):
    """artifact_index is keyed by pipeline_version, the GC key by models: the latest
    success of pipeline 1.0 stays although newer runs (pipeline 2.0) supersede it."""
    sim.run("P1", "v1", 70, "ok", model=WHISPER_A, pipeline_version="1.0")
    for d in (71, 72, 73, 74):
        sim.run(f"Q{d}", "v1", d, "ok", model=WHISPER_A, pipeline_version="2.0")
    assert main(["gc", "--root", str(sim.root), "--db-url", sim.db_url, "--now", NOW_ISO, "--drop-warehouse-rows",
                 "--show-kept"]) == 0
    out = capsys.readouterr().out
    assert f"keep   run {sim.runs['P1']} " in out and "[artifact_index]" in out
    assert sim.manifest_run_ids() == sim.warehouse_run_ids() == sim.ids(
        "P1", "Q74", "Q73", "Q72")


def test_artifact_index_rule_yields_to_the_cap():
    old = info("old", 10)
    old.indexed = True
    new = info("new", 80)
    assert decisions([old, new]) == {"old": (False, "hard_cap"), "new": (True, "latest_ok")}


def test_model_signature_set_is_part_of_the_key():
    a = RunInfo(run_id="a", platform_id="p", video_id="v", status="ok", started_at=day(80),
                model_signatures=frozenset({"s1"}))
    b = RunInfo(run_id="b", platform_id="p", video_id="v", status="ok", started_at=day(81),
                model_signatures=frozenset({"s1", "s2"}))
    assert decisions([a, b], keep_previous=0) == {"a": (True, "latest_ok"),
                                                  "b": (True, "latest_ok")}


def test_policy_is_validated():
    for bad, message in (({"keep_previous": -1}, "keep_previous must be an integer >= 0"),
                         ({"keep_previous": True}, "keep_previous must be an integer >= 0"),
                         ({"hard_cap_days": 0}, "hard_cap_days must be a finite number > 0"),
                         ({"intermediate_ttl_days": float("nan")},
                          "intermediate_ttl_days must be a finite number > 0, got nan"),
                         ({"warehouse": "all"}, "warehouse must be one of")):
        with pytest.raises(ConfigError, match=message):
            GcPolicy(**bad)
    with pytest.raises(ConfigError, match="timezone-aware"):
        plan_gc(Inventory(Path("r"), Path("r/runs"), Path("r/cache"), None),
                now=datetime(2026, 1, 1))


def test_cli_refuses_bad_options(tmp_path, capsys):
    for bad in (["--keep-previous", "-1"], ["--hard-cap-days", "0"], ["--now", "yesterday"],
                ["--intermediate-ttl-days", "x"]):
        with pytest.raises(SystemExit) as exc:
            main(["gc", "--root", str(tmp_path), *bad])
        assert exc.value.code == 2
    capsys.readouterr()


def test_empty_root_and_no_warehouse(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    assert main(["gc", "--root", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "total: nothing to delete" in out and "warehouse: none" in out
    assert not (tmp_path / "none").exists()   # nothing created, no SQLite file either


def test_apply_rechecks_versions_and_intermediates(sim):
    """What changed between the plan and its application is left alone."""
    for d in (60, 62, 64, 66):
        sim.run(f"A{d}", "v1", d, "ok", model=WHISPER_A, cache={"asr": "save"})
    sim.intermediate("v1", "frames", 70)
    plan = plan_gc(collect_inventory(sim.root, sim.db_url), GcPolicy(warehouse="dropped"),
                   now=NOW)
    doomed = [d.version.entry.version for d in plan.cache_versions]
    assert doomed == [sim.versions[("v1", "asr", "A60")]]
    assert len(plan.intermediates) == 1
    # meanwhile: A60's version is made current again, the frames directory re-registered
    sim.cache.set_current("youtube", "v1", "asr", doomed[0])
    registration = plan.intermediates[0].path / REGISTRATION_FILE
    document = json.loads(registration.read_text())
    document["created_at"] = iso_utc(day(89))
    registration.write_text(json.dumps(document))
    result = apply_gc(plan)
    assert result.cache_versions == 0 and result.intermediates == 0
    assert result.manifest_dirs == 1 and result.warehouse_rows.runs == 1
    assert sim.cache_versions("v1", "asr") == {1, 2, 3, 4}
    assert plan.intermediates[0].path.exists()


def test_unreadable_manifest_is_left_alone(sim, capsys):
    sim.run("A10", "v1", 10, "ok", model=WHISPER_A, warehouse=False)
    bad = sim.root / "runs" / "youtube" / "v1" / "broken" / "manifest.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert main(["gc", "--root", str(sim.root), "--db-url", sim.db_url, "--now",
                 NOW_ISO]) == 0
    out = capsys.readouterr().out
    assert "left alone: " in out and "broken" in out
    assert bad.exists() and sim.manifest_run_ids() == {"broken"}


def test_cache_versions_without_a_known_run_stay_until_the_cap(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    key = idempotency_key(platform_id="p", video_id="v", component="asr", config_hash=None,
                          sampling_policy_version=None, producer_version="1",
                          schema_version="1", model_signature=None)
    entries = [store.save("p", "v", "asr", i, key=key, input_hash=str(i), run_id=rid)
               for i, rid in enumerate((None, "unknown-run", "unknown-run"))]
    inventory = Inventory(tmp_path, tmp_path / "runs", tmp_path / "cache", None,
                          cache_versions=[CacheVersion("p", "v", e, tmp_path, 1)
                                          for e in entries])
    assert plan_gc(inventory).cache_versions == []
    later = plan_gc(inventory, now=datetime.now(timezone.utc) + timedelta(days=61))
    assert [d.reason for d in later.cache_versions] == ["hard_cap"] * 3


# -- warehouse deletion --------------------------------------------------------------------

def test_deletion_handles_any_artifact_index_shape(tmp_path, make_run):
    """delete_runs finds artifact_index by inspection, whatever revision made it."""
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    Base.metadata.create_all(engine, tables=[Base.metadata.tables[name] for name in
                                             ("runs", "component_runs", "events")])
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE artifact_index (platform_id TEXT, video_id TEXT, "
                          "run_id TEXT, latest_success_run_id TEXT)"))
    engine.dispose()
    url = f"sqlite:///{tmp_path / 'w.db'}"
    from mlobs.warehouse.engine import create_warehouse_engine
    from mlobs.warehouse.rows import ComponentBatch, rows_of_runs
    first, second = make_run(video_id="one"), make_run(video_id="two")
    engine = create_warehouse_engine(url)
    with engine.begin() as conn:
        for run, components in (first, second):
            conn.execute(Base.metadata.tables["runs"].insert(), rows_of_runs([run]))
            batch = ComponentBatch(components)
            conn.execute(Base.metadata.tables["component_runs"].insert(), batch.component_rows)
            conn.execute(Base.metadata.tables["events"].insert(), batch.event_rows)
        conn.execute(text("INSERT INTO artifact_index VALUES ('youtube', 'one', :a, NULL), "
                          "('youtube', 'one', NULL, :a), ('youtube', 'two', :b, :b)"),
                     {"a": first[0].run_id, "b": second[0].run_id})
    counts = count_run_rows(engine, [first[0].run_id])
    assert counts[first[0].run_id] == RowCounts(runs=1, component_runs=5, events=2,
                                                artifact_index=2)
    assert delete_runs(engine, [first[0].run_id, "unknown"]) == counts[first[0].run_id]
    assert delete_runs(engine, [first[0].run_id]) == RowCounts()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM artifact_index")).scalar() == 1
        assert set(conn.scalars(select(Base.metadata.tables["runs"].c.run_id))) == {
            second[0].run_id}
    engine.dispose()

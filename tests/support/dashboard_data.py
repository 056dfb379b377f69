"""Fill one warehouse with data for every panel of the Grafana dashboards, and serve the
same records as Prometheus metrics.

Run as a script::

    python tests/support/dashboard_data.py --root DIR --db-url URL [--metrics-port N]

or import :func:`fill` (the database part only). In one process it runs the demo twice
(pipeline_version 1.0.0, then 1.1.0 with ``features`` three times slower, which reuses the
text components' cache), then an "incidents" pipeline written here against mlobs's public
API (OOMs absorbed by a halved batch, transient retries, external cache hits, misses and
stale entries, a model fallback, an optional component that fails, a failed run whose
cached result a rerun resumes from), then stores rollups (hour, day, all), drift checks
and gate results comparing 1.0.0 with 1.1.0.

stdout carries one JSON line, ``{"ready": true, "runs": ..., ...}``; progress goes
to stderr. With ``--metrics-port`` it first prints ``{"serving": true}`` and waits for a line
on stdin (send it once Prometheus has scraped), and after the ready line it serves
``/metrics`` until stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlobs
from mlobs.hooks.external_cache import record_cache_lookup

#: videos per demo pipeline and version: the visual pipeline's ``features`` then has
#: that many runs a side, enough for the drift check and the gate (>= 6 runs a side) to
#: find the slowdown significant (3 a side never can be, whatever the change).
DEMO_VIDEOS = 10
BASELINE_VERSION, CURRENT_VERSION = "1.0.0", "1.1.0"
SLOWDOWN = {"features": 3.0}
#: a drift check needs this many invocations a side (mlobs's default, 30, is more than
#: these runs give, and would leave every verdict insufficient_data).
DRIFT_MIN_SAMPLES = 5
ROLLUP_BUCKETS = ("hour", "day", "all")
#: one budget that holds and one that breaches, so gate_results has both verdicts.
GATE_BUDGETS = {"budget": [{"component": "frames", "max_error_rate": 0.5},
                           {"component": "features", "max_p95_duration_ms": 0.001}]}
#: prometheus_client keeps metric values here (its multiprocess mode) when serving, so the
#: counters add up across the recorders each ``mlobs.configure()`` builds (run_demo
#: configures anew; a new prometheus sink would otherwise start from zero).
MULTIPROC_SUBDIR = "prometheus-multiproc"

INCIDENTS_PLATFORM = "incidents"
INCIDENTS_PROFILE = mlobs.AnalysisProfile("incidents-v1", optional={"enrich"},
                                          models={"incident-encoder", "incident-classifier"})
INCIDENTS_CONFIG = {"segments": 4}
_VERSIONS = {"producer_version": "1.0", "schema_version": "1"}
ENCODER = mlobs.ModelRef("incident-encoder", "2.0", weights_digest="sha256:" + "e1" * 32,
                         engine="numpy")
CLASSIFIER_V2 = mlobs.ModelRef("incident-classifier", "2.0",
                               weights_digest="sha256:" + "c2" * 32, engine="numpy")
CLASSIFIER_V1 = mlobs.ModelRef("incident-classifier", "1.0",
                               weights_digest="sha256:" + "c1" * 32, engine="numpy")
#: short backoffs: the retries must be recorded, not waited for.
RETRY = mlobs.RetryPolicy(max_attempts=3, initial_backoff_s=0.005, max_backoff_s=0.02,
                          jitter_s=0.005)
#: ``embed`` runs out of memory above this batch size (32 → 16 → 8 with HalveBatch).
FITTING_BATCH, OOM_BATCH = 8, 32
LOOKUP_REASONS = {"miss": "no_entry", "stale": "source_unavailable"}


@dataclass(frozen=True)
class Incident:
    """One video of the incidents pipeline and what goes wrong in it: ``lookups``, the
    statuses of its external cache lookups; ``transient``, what ``fetch``'s first attempt
    raises (retried); ``oom``, ``embed`` starts with a batch too large for memory;
    ``degraded``, the preferred classifier times out (the fallback answers);
    ``enrich_fails``, the optional ``enrich`` fails (the run stays ok with a warning);
    ``score_fails_once``, the required ``score`` fails (run error), then a rerun resumes.
    """

    video_id: str
    lookups: tuple[str, ...] = ("hit",)
    transient: type[Exception] | None = None
    oom: bool = False
    degraded: bool = False
    enrich_fails: bool = False
    score_fails_once: bool = False


INCIDENTS = (
    Incident("inc-oom", lookups=("miss", "hit"), oom=True),
    Incident("inc-retry", transient=ConnectionError),
    Incident("inc-timeout", lookups=("stale",), transient=TimeoutError, degraded=True),
    Incident("inc-partial", lookups=("hit", "miss"), enrich_fails=True),
    Incident("inc-resume", lookups=("miss",), score_fails_once=True),
)


class ScoringError(RuntimeError):
    """The required ``score`` component's deliberate failure."""


mlobs.register_error_code(ScoringError, "scoring_failed")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- incidents

def _predict_v2(vectors: list[list[float]], fail: bool) -> list[int]:
    if fail:
        raise TimeoutError("incident-classifier 2.0: no answer within 50 ms")
    return [int(sum(v)) % 3 for v in vectors]


def _predict_v1(vectors: list[list[float]], _fail: bool) -> list[int]:
    return [int(v[0]) % 3 for v in vectors]


def process_incident(incident: Incident, nonce: str, fail_score: bool) -> str:
    """One run of the incidents pipeline over ``incident``; returns its run_id.

    Raises:
        ScoringError: ``fail_score``: the required ``score`` failed (the run is error).
    """
    with mlobs.run(INCIDENTS_PLATFORM, incident.video_id, profile=INCIDENTS_PROFILE,
                   pipeline_version=CURRENT_VERSION, config=INCIDENTS_CONFIG,
                   sampling_policy_version="1") as run:
        with run.component("prompt", **_VERSIONS) as c:
            for i, status in enumerate(incident.lookups):
                record_cache_lookup("prompt_templates", status, key=f"{incident.video_id}/{i}",
                                    reason=LOOKUP_REASONS.get(status))
            c.set_items(len(incident.lookups))

        with run.component("fetch", retry=RETRY, **_VERSIONS) as c:
            failures = 1 if incident.transient else 0
            for attempt in c.attempts():
                with attempt:
                    if failures:
                        failures -= 1
                        raise incident.transient("feature store: connection reset by peer")
                    segments = [f"{incident.video_id}#{i}"
                                for i in range(INCIDENTS_CONFIG["segments"])]
            c.set_items(len(segments))

        # The nonce makes each fill's first run compute (and cache) this result afresh,
        # so the rerun of inc-resume hits the version its failed run stored.
        with run.component("decode", cache=True, inputs={"segments": segments, "nonce": nonce},
                           **_VERSIONS) as c:
            if not c.hit:
                c.set_result([len(s) for s in segments])
                c.set_items(len(segments))
            lengths = c.result

        with run.component("embed", models=[ENCODER], on_oom=mlobs.HalveBatch(min=1),
                           batch_size=OOM_BATCH if incident.oom else FITTING_BATCH,
                           **_VERSIONS) as c:
            for attempt in c.attempts():
                with attempt:
                    if c.batch_size > FITTING_BATCH:
                        raise MemoryError(f"Unable to allocate {c.batch_size * 64} MiB "
                                          "for an array")
                    vectors = [[float(n), float(i), float(n * i % 5)]
                               for i, n in enumerate(lengths)]
            c.set_items(len(vectors))

        with run.component("classify", models=[CLASSIFIER_V2], **_VERSIONS) as c:
            answer = mlobs.predict_with_fallback(
                [(CLASSIFIER_V2, _predict_v2), (CLASSIFIER_V1, _predict_v1)], vectors,
                incident.degraded)
            c.set_items(len(answer.value))

        with run.component("enrich", **_VERSIONS) as c:  # optional in the profile
            if incident.enrich_fails:
                raise ValueError("enrichment service returned an unparseable record")
            c.metric("enriched", len(answer.value))

        with run.component("score", **_VERSIONS) as c:
            if fail_score:
                raise ScoringError("score: every segment scored NaN")
            c.metric("mean_label", sum(answer.value) / len(answer.value))
    return run.run_id


def run_incidents(progress: Callable[[str], None]) -> dict[str, int]:
    """Every incident once, then the failed ones again (a rerun resumes from its cache)."""
    nonce = uuid.uuid4().hex
    failed: list[Incident] = []
    for incident in INCIDENTS:
        try:
            process_incident(incident, nonce, fail_score=incident.score_fails_once)
        except ScoringError as exc:  # expected: the run is recorded as error
            progress(f"incidents: {incident.video_id} failed as intended: {exc}")
            failed.append(incident)
    for incident in failed:
        process_incident(incident, nonce, fail_score=False)
    return {"incident_runs": len(INCIDENTS) + len(failed), "incident_failed": len(failed)}


# --------------------------------------------------------------------------- analysis

def store_analysis(db_url: str, progress: Callable[[str], None]) -> None:
    """Rollups of every bucket width, drift checks and gate results, 1.0.0 vs 1.1.0."""
    from mlobs.analysis.budgets import parse_budgets
    from mlobs.analysis.drift import DriftPolicy, Window, check_drift
    from mlobs.analysis.gate import evaluate_gate
    from mlobs.analysis.gate_inputs import RunSet, load_run_set
    from mlobs.analysis.gate_reports import store_report
    from mlobs.analysis.incremental import refresh_rollup

    for bucket in ROLLUP_BUCKETS:
        result = refresh_rollup(db_url, bucket, full=True)
        progress(f"rollup {bucket}: stored {result.written} rows")
    report = check_drift(db_url, Window(pipeline_version=BASELINE_VERSION),
                         Window(pipeline_version=CURRENT_VERSION),
                         policy=DriftPolicy(min_samples=DRIFT_MIN_SAMPLES))
    verdicts = Counter(c.verdict for c in report.checks)
    progress(f"drift: {dict(verdicts)}")
    gate = evaluate_gate(load_run_set(db_url, RunSet(pipeline_version=BASELINE_VERSION)),
                         load_run_set(db_url, RunSet(pipeline_version=CURRENT_VERSION)),
                         budgets=parse_budgets(GATE_BUDGETS, name="dashboard_data"))
    stored = store_report(db_url, gate)
    progress(f"gate: {stored} results, {dict(Counter(c.verdict for c in gate.checks))}")


def warehouse_counts(db_url: str) -> dict[str, Any]:
    """What the panels need, counted in the warehouse (portable SQL: SQLite and PG)."""
    from sqlalchemy import text

    from mlobs.warehouse.engine import create_warehouse_engine

    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            def one(sql: str) -> int:
                return int(conn.execute(text(sql)).scalar() or 0)

            def by(sql: str) -> dict[str, int]:
                return {str(k): int(n) for k, n in conn.execute(text(sql))}

            lookups: Counter[str] = Counter()
            for (attributes,) in conn.execute(text(
                    "SELECT attributes FROM events WHERE kind = 'external_cache'")):
                if isinstance(attributes, str):
                    attributes = json.loads(attributes)
                lookups[attributes.get("status")] += 1
            return {
                "runs": one("SELECT count(*) FROM runs"),
                "component_runs": one("SELECT count(*) FROM component_runs"),
                "runs_by_status": by("SELECT status, count(*) FROM runs GROUP BY status"),
                "partial_runs": one("SELECT count(*) FROM runs WHERE status = 'ok' "
                                    "AND json_array_length(warnings) > 0"),
                "resumed_runs": one("SELECT count(*) FROM runs "
                                    "WHERE resumed_from_run_id IS NOT NULL"),
                "oom_components": one("SELECT count(*) FROM component_runs "
                                      "WHERE oom_count > 0"),
                "degraded_batches": one("SELECT count(*) FROM component_runs "
                                        "WHERE batch_size < batch_size_requested"),
                "retried_components": one("SELECT count(*) FROM component_runs "
                                          "WHERE retry_count > 0"),
                "cache_status": by("SELECT cache_status, count(*) FROM component_runs "
                                   "WHERE cache_status IS NOT NULL GROUP BY cache_status"),
                "events_by_kind": by("SELECT kind, count(*) FROM events GROUP BY kind"),
                "external_cache_status": dict(lookups),
                "rollups_by_bucket": by("SELECT bucket_width, count(*) FROM "
                                        "component_rollups GROUP BY bucket_width"),
                "drift_verdicts": by("SELECT verdict, count(*) FROM drift_checks "
                                     "GROUP BY verdict"),
                "gate_verdicts": by("SELECT verdict, count(*) FROM gate_results "
                                    "GROUP BY verdict"),
            }
    finally:
        engine.dispose()


def check_counts(counts: dict[str, Any]) -> None:
    """Raise if a panel would find nothing to show (a regression in mlobs or here)."""
    wanted = {
        "error runs": counts["runs_by_status"].get("error", 0),
        "partial runs": counts["partial_runs"], "resumed runs": counts["resumed_runs"],
        "OOM components": counts["oom_components"],
        "halved batches": counts["degraded_batches"],
        "retries": counts["retried_components"],
        "cache hits": counts["cache_status"].get("hit", 0),
        "cache misses": counts["cache_status"].get("miss", 0),
        **{f"{kind} events": counts["events_by_kind"].get(kind, 0)
           for kind in ("oom", "retry", "fallback", "external_cache")},
        **{f"external cache {s}": counts["external_cache_status"].get(s, 0)
           for s in ("hit", "miss", "stale")},
        **{f"{b} rollups": counts["rollups_by_bucket"].get(b, 0) for b in ROLLUP_BUCKETS},
        # the cache hit rate going from 0 to 1 between the two demos is a certain drift;
        # a gate regression is left out: at 10 runs a side it is likely, not certain,
        # while the breach of the failing budget is certain
        "drift found": counts["drift_verdicts"].get("drift", 0),
        "gate breach": counts["gate_verdicts"].get("breach", 0),
    }
    missing = sorted(name for name, n in wanted.items() if not n)
    if missing:
        raise RuntimeError(f"dashboard data incomplete, none of: {', '.join(missing)}")


# --------------------------------------------------------------------------- the fill

@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _fill(root: Path, db_url: str, sinks: Sequence[str], progress: Callable[[str], None],
          before_work: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Everything but the serving, with MLOBS_DB_URL set (run_demo configures mlobs
    with root and sinks only: the warehouse URL must come from the environment).
    ``before_work`` is called once the sinks exist (the /metrics endpoint is up) and
    before any run."""
    from mlobs.demo.runner import run_demo
    from mlobs.warehouse.migrate import upgrade

    started = time.monotonic()
    mlobs.configure(root=root, db_url=db_url, sinks=list(sinks))
    upgrade(db_url)
    before_work()
    demos = [run_demo(root, max_videos=DEMO_VIDEOS, pipeline_version=BASELINE_VERSION,
                      progress=progress, sinks=list(sinks)),
             run_demo(root, max_videos=DEMO_VIDEOS, pipeline_version=CURRENT_VERSION,
                      slow=SLOWDOWN, progress=progress, sinks=list(sinks))]
    if mlobs.settings().db_url != db_url:  # run_demo's configure must keep our warehouse
        raise RuntimeError(f"mlobs records into {mlobs.settings().db_url}, not {db_url}")
    incidents = run_incidents(progress)
    if mlobs.flush(timeout_s=60) is False:
        raise RuntimeError(f"mlobs sinks did not finish within 60 s: {mlobs.sink_stats()}")
    store_analysis(db_url, progress)
    counts = warehouse_counts(db_url)
    check_counts(counts)
    return {"ready": True, **counts, **incidents,
            "demo_error_runs": sum(d.error_runs for d in demos),
            "duration_s": round(time.monotonic() - started, 2)}


def fill(root: Path, db_url: str,
         progress: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Fill the warehouse at ``db_url`` (manifests and cache under ``root``); returns the
    counts. Sinks: manifest and warehouse; mlobs is left configured with no sinks.

    Raises:
        RuntimeError: a panel's data is missing (:func:`check_counts`), or the sinks
            did not finish.
        MlobsError: the warehouse cannot be reached or migrated.
    """
    root = Path(root)
    with _environment({"MLOBS_ROOT": str(root), "MLOBS_DB_URL": db_url}):
        try:
            return _fill(root, db_url, ("manifest", "warehouse"), progress)
        finally:
            mlobs.configure(root=root, db_url=db_url, sinks=[])


def _serve_setup(root: Path, port: int) -> None:
    """Before any sink exists: the exporter's port, and prometheus_client's value files."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess "
                           "directory could be set")
    directory = root / MULTIPROC_SUBDIR
    shutil.rmtree(directory, ignore_errors=True)  # old values would add to the new ones
    directory.mkdir(parents=True)
    os.environ.update({"MLOBS_PROMETHEUS_PORT": str(port),
                       "PROMETHEUS_MULTIPROC_DIR": str(directory)})


def _await_first_scrape() -> None:
    """Say that /metrics is up, then wait for a line on stdin: the parent sends it once
    Prometheus has scraped the zero state, so rates over the runs are not all zero."""
    print(json.dumps({"serving": True}), flush=True)
    sys.stdin.readline()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True,
                        help="manifests and the component cache")
    parser.add_argument("--db-url", required=True, help="the warehouse to fill")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus /metrics here until stdin closes")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    sinks = ["manifest", "warehouse"]
    if args.metrics_port is not None:
        _serve_setup(root, args.metrics_port)
        sinks.append("prometheus")
    os.environ.update({"MLOBS_ROOT": str(root), "MLOBS_DB_URL": args.db_url})
    summary = _fill(root, args.db_url, sinks, _stderr,
                    _await_first_scrape if args.metrics_port is not None else lambda: None)
    print(json.dumps(summary, sort_keys=True), flush=True)
    if args.metrics_port is not None:
        _stderr(f"serving http://127.0.0.1:{args.metrics_port}/metrics until stdin closes")
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())

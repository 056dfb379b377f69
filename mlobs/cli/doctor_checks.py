"""Health checks behind ``mlobs doctor``: is the set-up usable, and is anything missing?

Each check returns a :class:`Check` (name, ok, detail, hint). The manifest check compares
the manifests under the root with the warehouse: a run whose manifest is not in the
warehouse, or whose warehouse row is behind its manifest, was not (fully) exported — most
often because a sink failed or the database was away — and ``mlobs ingest`` repairs it.
The spool check counts the records the warehouse sink spooled while the database was
away (``mlobs ingest --spool`` writes them) and those the warehouse refused on replay.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mlobs.core.config import Settings
from mlobs.core.errors import ManifestError, MlobsError
from mlobs.core.liveness import CRASHED, STALE_AFTER_S, is_crashed, mark_crashed
from mlobs.core.manifest import manifest_document, read_manifest, write_manifest
from mlobs.sinks.ingest import find_manifests
from mlobs.sinks.spool import REJECTED_NAME, spool_contents
from mlobs.warehouse.engine import (
    db_url_option,
    display_url,
    missing_sqlite_file,
    normalize_url,
)
from mlobs.warehouse.store import WarehouseStore


def where_options(settings: Settings) -> str:
    """``--root 'ROOT'`` (and ``--db-url 'URL'`` unless the warehouse is the root's own):
    what a hint's command needs to act on the root and warehouse this doctor checked."""
    db_url = "" if settings.db_is_embedded_default else f" {db_url_option(settings.db_url)}"
    return f"--root {_quoted(settings.root)}{db_url}"


def _quoted(path: object) -> str:
    return "'" + str(path).replace("'", "'\"'\"'") + "'"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def check_root(settings: Settings) -> Check:
    root = settings.root
    if not root.exists():
        return Check("root", True, f"{root} does not exist yet (created by the first run)")
    if not os.access(root, os.W_OK):
        return Check("root", False, f"{root} is not writable", "fix its permissions or set MLOBS_ROOT")
    return Check("root", True, f"{root} is writable")


def check_warehouse(settings: Settings) -> tuple[Check, WarehouseStore | None]:
    url = display_url(settings.db_url)
    absent = missing_sqlite_file(settings.db_url)
    if absent is not None:  # opening it would create an empty file
        ok = settings.db_is_embedded_default
        detail = (f"{absent} does not exist yet" + (" (the first run creates it)" if ok else ""))
        return Check("warehouse", ok, detail, "" if ok else f"mlobs db upgrade {db_url_option(settings.db_url)}"), None
    try:
        store = WarehouseStore(settings.db_url)
    except MlobsError as exc:
        return Check("warehouse", False, str(exc), f"mlobs db upgrade {db_url_option(settings.db_url)}"), None
    return Check("warehouse", True, f"{url} is reachable and at the current schema"), store


def check_duckdb_extensions(settings: Settings) -> Check:
    from mlobs.analysis.duckdb_connect import extension_path
    backend = normalize_url(settings.db_url).get_backend_name()
    name = "postgres_scanner" if backend == "postgresql" else "sqlite_scanner"
    try:
        path = extension_path(name)
    except MlobsError as exc:
        return Check("duckdb", False, str(exc))
    return Check("duckdb", True, f"{name} extension at {path}")


def check_spool(settings: Settings) -> list[Check]:
    """Records the warehouse sink spooled while the database was away, and records the
    warehouse refused when they were replayed (see :mod:`mlobs.sinks.spool`)."""
    spool_dir = settings.spool_dir
    found = spool_contents(spool_dir)
    checks = [Check("spool", found.waiting == 0,
                    f"{found.waiting} record(s) in {found.files} file(s) under {spool_dir} "
                    "wait for the warehouse (the sink that spooled them writes them once it "
                    "answers; a sink that stopped does not)" if found.waiting else
                    f"no records wait in {spool_dir}",
                    f"mlobs ingest --spool {where_options(settings)}"
                    if found.waiting else "")]
    if found.rejected:
        rejected = spool_dir / REJECTED_NAME
        checks.append(Check("spool", False, f"{found.rejected} spooled record(s) were "
                            f"refused by the warehouse and kept in {rejected}",
                            f"read {rejected}: each line holds a record and the reason"))
    return checks


@dataclass
class ManifestComparison:
    manifests: int = 0
    missing: int = 0
    stale: int = 0
    unreadable: int = 0
    running: int = 0
    sink_warnings: int = 0
    #: manifests of runs still ``running`` whose heartbeat stopped (mlobs.core.liveness).
    silent: list[Path] = field(default_factory=list)


def _chunks(paths: Iterator[Path], size: int) -> Iterator[list[Path]]:
    chunk: list[Path] = []
    for path in paths:
        chunk.append(path)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def compare_manifests(settings: Settings, store: WarehouseStore,
                      stale_after_s: float = STALE_AFTER_S) -> ManifestComparison:
    """Count manifests under the root that the warehouse lacks or holds in an older state,
    and find those of runs taken for crashed (silent for over ``stale_after_s``)."""
    result = ManifestComparison()
    now = datetime.now(timezone.utc)
    if not settings.runs_dir.exists():
        return result
    # chunks of 500 keep the IN (...) lists below every backend's bind-parameter limit
    for chunk in _chunks(find_manifests([settings.runs_dir]), 500):
        runs = {}
        for path in chunk:
            result.manifests += 1
            try:
                run, components = read_manifest(path)
            except ManifestError:
                result.unreadable += 1
                continue
            runs[run.run_id] = (run, len(components), path)
        statuses = store.run_statuses(runs)
        counts = store.component_counts(list(runs))
        for run_id, (run, n_components, path) in runs.items():
            result.running += run.status == "running"
            result.sink_warnings += any(w.startswith("sink ") for w in run.warnings)
            # silent in its manifest, and not finished in the warehouse either (a lost
            # final manifest write is for `mlobs ingest`, not a crash)
            if run.status == "running" and is_crashed(run, now, stale_after_s) and \
                    statuses.get(run_id) in (None, "running", CRASHED):
                result.silent.append(path)
            if run_id not in statuses:
                result.missing += 1
            elif statuses[run_id] != run.status or counts.get(run_id, 0) < n_components:
                result.stale += 1
    return result


def check_manifests(settings: Settings, store: WarehouseStore | None,
                    stale_after_s: float = STALE_AFTER_S, fix: bool = False) -> list[Check]:
    if store is None:
        ok = missing_sqlite_file(settings.db_url) is not None and not settings.runs_dir.exists()
        return [Check("manifests", ok, "none yet" if ok else
                      "not compared: the warehouse is not usable")]
    found = compare_manifests(settings, store, stale_after_s)
    ingest = f"mlobs ingest {_quoted(settings.runs_dir)} {where_options(settings)}"
    checks = [Check("manifests", found.missing == 0 and found.stale == 0,
                    f"{found.manifests} manifest(s); {found.missing} run(s) missing from the "
                    f"warehouse, {found.stale} behind their manifest",
                    ingest if found.missing or found.stale else "")]
    if found.unreadable:
        checks.append(Check("manifests", False, f"{found.unreadable} manifest(s) unreadable",
                            f"{ingest}   (names each one and why)"))
    if found.sink_warnings:
        checks.append(Check("sinks", False, f"{found.sink_warnings} run(s) recorded sink "
                            "export failures in their warnings (`mlobs runs show RUN_ID` "
                            "lists a run's warnings)", f"{ingest}   (loads them from their "
                            "manifests)"))
    checks.append(check_crashed(settings, store, found.silent, stale_after_s, fix))
    return checks


def check_crashed(settings: Settings, store: WarehouseStore, silent_manifests: list[Path],
                  stale_after_s: float, fix: bool) -> Check:
    """Runs still ``running`` whose heartbeat stopped for over ``stale_after_s`` seconds
    (in the warehouse or in their manifests): taken for crashed; ``fix`` writes
    ``crashed`` into both."""
    silent_since = datetime.now(timezone.utc) - timedelta(seconds=stale_after_s)
    silent = [run.run_id for run in store.list_runs(
        status=CRASHED, silent_since=silent_since, limit=100_000) if run.status == "running"]
    count = len(set(silent) | {p.parent.name for p in silent_manifests})
    if not count:
        return Check("runs", True, f"no run silent for over {stale_after_s:g} s")
    detail = (f"{count} run(s) still running with no heartbeat for over {stale_after_s:g} s: "
              "their process died (killed, out of memory, host lost)")
    if not fix:
        return Check("runs", False, detail, f"mlobs doctor --fix {where_options(settings)}")
    marked = store.mark_crashed(silent, silent_since)
    rewritten = 0
    now = datetime.now(timezone.utc)
    for path in silent_manifests:
        try:  # read again: its run may have gone on since the comparison
            run, components = read_manifest(path)
        except ManifestError:
            continue
        if run.status == "running" and is_crashed(run, now, stale_after_s):
            write_manifest(path, manifest_document(mark_crashed(run), components),
                           durable=True)
            rewritten += 1
    return Check("runs", True, f"{detail}; marked crashed: {len(marked)} in the warehouse, "
                 f"{rewritten} manifest(s)")


def run_checks(settings: Settings, *, stale_after_s: float = STALE_AFTER_S,
               fix: bool = False) -> list[Check]:
    """Every check, in the order they are printed; ``fix`` marks crashed runs."""
    checks = [check_root(settings)]
    warehouse, store = check_warehouse(settings)
    checks.append(warehouse)
    checks.append(check_duckdb_extensions(settings))
    try:
        checks.extend(check_manifests(settings, store, stale_after_s, fix))
        checks.extend(check_spool(settings))
    finally:
        if store is not None:
            store.close()
    return checks

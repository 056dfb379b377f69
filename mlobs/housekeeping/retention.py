"""Retention / GC: which runs, cached versions and intermediate directories go (``mlobs gc``).

Rules (model system rules §6, orchestration notes §7), as implemented here:

**Runs.** Every run known from a manifest under ``<root>/runs`` or from the warehouse's
``runs`` table is grouped by its *key* ``(platform_id, video_id, config_hash,
sampling_policy_version, model_signature-set)``, where the model_signature-set is the set
of non-null ``model_signature`` values of the run's component records (manifest and
warehouse together). Within a key, runs are ordered by ``started_at`` (then ``run_id``):

1. a run that started before ``now - hard_cap_days`` is dropped, whatever its status or
   rank (``hard_cap``);
2. among the others, the newest run with status ``ok`` is the *anchor* and is kept
   (``latest_ok``); so are the ``keep_previous`` runs that started just before it,
   whatever their status (``previous``, for debugging), and every run that started after
   it (``after_latest_ok``: failed or unfinished attempts since the last success, a run
   still in progress among them);
3. the remaining older runs are dropped (``superseded``);
4. a key with no ``ok`` run inside the cap keeps all its runs inside the cap
   (``no_ok_run``);
5. a run the warehouse's ``artifact_index`` names (the latest success of its
   ``(platform_id, video_id, config_hash, sampling_policy_version, pipeline_version)``,
   what :func:`mlobs.warehouse.reuse.reusable_run` hands out) is kept instead of being superseded
   (``artifact_index``), so that the index never points at a run whose artifacts are gone.
   The hard cap still applies to it.

So GC never drops a run newer than the last success of its key, and inside the cap it
drops a run only when its key has a newer ``ok`` run with at least ``keep_previous`` runs
between the two.
Note that a run that failed before one of its model components ran has a smaller
model_signature-set, hence a key of its own, and is kept until the cap.

Dropping a run deletes its manifest directory ``<root>/runs/<platform>/<video>/<run_id>/``
and, unless ``warehouse="cap"``, its warehouse rows (:mod:`mlobs.warehouse.deletion`:
``runs``, ``component_runs``, ``events``, ``artifact_index``). With ``warehouse="cap"`` only
the rows of runs past the hard cap are deleted (the metrics history of superseded runs
stays for rollups).

**Cached versions** (``<root>/cache/<platform>/<video>/<component>/v<N>.json``). A version
is deleted when

* it was created before ``now - hard_cap_days`` (``hard_cap``; even the current version:
  the next run computes it again), or
* the run that produced it (``CacheEntry.run_id``) is a dropped run, and it is not the
  current version of its component, and no kept run of that video loaded or wrote it
  (a component record with that ``cache_version``) (``dropped_run``).

Versions made by a run GC does not know (no manifest, no warehouse row, or no run_id)
are kept until the cap. Deleting goes through :meth:`ArtifactStore.remove`, under the
video's lock.

**Intermediate directories** registered by :func:`mlobs.cache.intermediate.intermediate_dir`
are deleted once created before ``now - intermediate_ttl_days`` (``expired``).

Everything is decided by the pure :func:`plan_gc` from an :class:`Inventory`
(:func:`collect_inventory` reads the disk and the warehouse); :func:`apply_gc` deletes what
a plan lists, re-checking each cached version and intermediate directory first (a version
that became current, or a directory registered again, is skipped). ``mlobs gc --dry-run``
prints the same plan as ``mlobs gc`` and deletes nothing.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlobs.cache.entries import CacheEntry
from mlobs.cache.intermediate import (
    INTERMEDIATE_FOLDER,
    REGISTRATION_FILE,
    Intermediate,
    find_intermediates,
    read_registration,
)
from mlobs.cache.store import ArtifactStore
from mlobs.core.checks import check_finite, check_int
from mlobs.core.errors import ConfigError, WarehouseError
from mlobs.core.errors import ManifestError
from mlobs.core.manifest import read_manifest
from mlobs.core.paths import tree_size
from mlobs.core.records import iso_utc, parse_utc

#: Defaults of the policy (model system rules §6; frames retention §7).
KEEP_PREVIOUS = 2
HARD_CAP_DAYS = 60.0
INTERMEDIATE_TTL_DAYS = 7.0
#: ``GcPolicy.warehouse``: delete the rows of every dropped run, or only past the cap.
WAREHOUSE_MODES = ("dropped", "cap")

KEEP_REASONS = ("latest_ok", "previous", "after_latest_ok", "no_ok_run", "artifact_index")
DROP_REASONS = ("hard_cap", "superseded")

#: (platform_id, video_id, config_hash, sampling_policy_version, model_signature-set)
RunKey = tuple[str, str, "str | None", "str | None", frozenset[str]]


@dataclass(frozen=True)
class GcPolicy:
    """What GC keeps (see the module docstring for the rules).

    Args:
        keep_previous: runs kept before the latest ``ok`` run of each key (>= 0).
        hard_cap_days: anything older than this many days goes (> 0).
        intermediate_ttl_days: registered intermediate directories older than this go (> 0).
        warehouse: ``"cap"`` (default) deletes the warehouse rows of runs past the hard cap
            only, so rollups keep their history (the issue's rule: "warehouse rows older
            than the cap are removed too"); ``"dropped"`` deletes those of every dropped
            run.

    Raises:
        ConfigError: a value is out of range.
    """

    keep_previous: int = KEEP_PREVIOUS
    hard_cap_days: float = HARD_CAP_DAYS
    intermediate_ttl_days: float = INTERMEDIATE_TTL_DAYS
    warehouse: str = "cap"

    def __post_init__(self) -> None:
        check_int("keep_previous", self.keep_previous, 0)
        for name in ("hard_cap_days", "intermediate_ttl_days"):
            check_finite(name, getattr(self, name), positive=True)
        if self.warehouse not in WAREHOUSE_MODES:
            raise ConfigError(f"warehouse must be one of {WAREHOUSE_MODES}, got "
                              f"{self.warehouse!r}")


@dataclass
class RunInfo:
    """What GC knows of one run (from its manifest, the warehouse, or both).

    ``cache_refs`` are the ``(component, cache_version)`` pairs its component records
    loaded or wrote; ``warehouse_rows`` is ``None`` when the warehouse does not hold it.
    """

    run_id: str
    platform_id: str
    video_id: str
    status: str
    started_at: datetime
    config_hash: str | None = None
    sampling_policy_version: str | None = None
    model_signatures: frozenset[str] = frozenset()
    cache_refs: frozenset[tuple[str, int]] = frozenset()
    manifest_dir: Path | None = None
    manifest_files: int = 0
    manifest_bytes: int = 0
    warehouse_rows: Any = None  # mlobs.warehouse.deletion.RowCounts | None
    #: the warehouse's artifact_index names it (the latest success of its pipeline key).
    indexed: bool = False

    @property
    def key(self) -> RunKey:
        return (self.platform_id, self.video_id, self.config_hash,
                self.sampling_policy_version, self.model_signatures)


@dataclass(frozen=True)
class CacheVersion:
    """One stored version of a cached component result, with its file's size on disk."""

    platform_id: str
    video_id: str
    entry: CacheEntry
    path: Path
    #: the file's size when the inventory was read (0 when the file was missing).
    size_bytes: int
    #: the file existed when the inventory was read.
    on_disk: bool = True


@dataclass
class Inventory:
    """Everything GC looks at (:func:`collect_inventory`)."""

    root: Path
    runs_dir: Path
    cache_dir: Path
    db_url: str | None
    runs: list[RunInfo] = field(default_factory=list)
    cache_versions: list[CacheVersion] = field(default_factory=list)
    intermediates: list[Intermediate] = field(default_factory=list)
    #: things GC could not read and left alone (unreadable manifests, ...).
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunDecision:
    """Keep or drop one run, and why (:data:`KEEP_REASONS`, :data:`DROP_REASONS`)."""

    run: RunInfo
    keep: bool
    reason: str
    #: its warehouse rows are deleted (dropped, stored, and the policy's warehouse mode).
    delete_rows: bool = False

    @property
    def actionable(self) -> bool:
        """A dropped run with something left to delete (manifest or rows)."""
        return not self.keep and (self.run.manifest_dir is not None or self.delete_rows)


@dataclass(frozen=True)
class VersionDecision:
    """A cached version to delete, and why (``hard_cap`` or ``dropped_run``)."""

    version: CacheVersion
    reason: str


@dataclass
class GcPlan:
    """What GC deletes (and keeps), with the files, bytes and rows involved."""

    policy: GcPolicy
    now: datetime
    root: Path
    runs_dir: Path
    cache_dir: Path
    db_url: str | None
    runs: list[RunDecision]
    cache_versions: list[VersionDecision]
    intermediates: list[Intermediate]
    problems: list[str] = field(default_factory=list)

    @property
    def cutoff(self) -> datetime:
        """Everything created or started before this goes (the hard cap)."""
        return self.now - timedelta(days=self.policy.hard_cap_days)

    @property
    def intermediate_cutoff(self) -> datetime:
        return self.now - timedelta(days=self.policy.intermediate_ttl_days)

    @property
    def kept_runs(self) -> list[RunDecision]:
        return [d for d in self.runs if d.keep]

    @property
    def dropped_runs(self) -> list[RunDecision]:
        """Dropped runs with something to delete (see :attr:`RunDecision.actionable`)."""
        return [d for d in self.runs if d.actionable]

    @property
    def warehouse_run_ids(self) -> list[str]:
        return sorted(d.run.run_id for d in self.runs if d.delete_rows)

    @property
    def warehouse_rows(self) -> Any:
        from mlobs.warehouse.deletion import RowCounts

        total = RowCounts()
        for decision in self.runs:
            if decision.delete_rows:
                total = total + decision.run.warehouse_rows
        return total

    @property
    def files(self) -> int:
        return (sum(d.run.manifest_files for d in self.dropped_runs)
                + sum(1 for d in self.cache_versions if d.version.on_disk)
                + sum(i.files for i in self.intermediates))

    @property
    def bytes(self) -> int:
        return (sum(d.run.manifest_bytes for d in self.dropped_runs)
                + sum(d.version.size_bytes for d in self.cache_versions)
                + sum(i.size_bytes for i in self.intermediates))

    @property
    def empty(self) -> bool:
        return not (self.dropped_runs or self.cache_versions or self.intermediates)

    def render(self, *, show_kept: bool = False) -> str:
        """The plan as text (what ``mlobs gc`` and ``mlobs gc --dry-run`` print)."""
        policy = self.policy
        lines = [
            f"gc plan at {iso_utc(self.now)}",
            f"policy: per key, keep the latest ok run, the {policy.keep_previous} run(s) "
            f"before it, every run after it and the runs artifact_index names; hard cap "
            f"{policy.hard_cap_days:g} days "
            f"(everything before {iso_utc(self.cutoff)}); intermediate directories "
            f"{policy.intermediate_ttl_days:g} days (before "
            f"{iso_utc(self.intermediate_cutoff)}); warehouse rows of "
            + ("every dropped run" if policy.warehouse == "dropped"
               else "runs past the hard cap"),
        ]
        dropped = self.dropped_runs
        by_reason = {r: sum(1 for d in dropped if d.reason == r) for r in DROP_REASONS}
        lines.append(f"runs: {len(self.kept_runs)} kept, {len(dropped)} to delete ("
                     + ", ".join(f"{n} {r}" for r, n in by_reason.items()) + ")")
        for d in sorted(self.runs, key=_run_order):
            if d.actionable or (show_kept and d.keep):
                lines.append("  " + _describe_run(d))
        versions = sorted(self.cache_versions, key=_version_order)
        lines.append(f"cache versions: {len(versions)} to delete, "
                     f"{_size(sum(d.version.size_bytes for d in versions))}")
        for d in versions:
            v, e = d.version, d.version.entry
            lines.append(f"  delete {v.platform_id}/{v.video_id} {e.component} v{e.version} "
                         f"(run {e.run_id or '-'}, created {_when(e.created_at)}"
                         f"{', current' if e.is_current else ''}) "
                         f"{_size(v.size_bytes)}: {d.reason}")
        lines.append(f"intermediate directories: {len(self.intermediates)} to delete, "
                     f"{sum(i.files for i in self.intermediates)} file(s), "
                     f"{_size(sum(i.size_bytes for i in self.intermediates))}")
        for i in sorted(self.intermediates, key=lambda i: str(i.path)):
            lines.append(f"  delete {i.platform_id}/{i.video_id} {i.name} (created "
                         f"{_when(i.created_at)}) {i.files} file(s) {_size(i.size_bytes)}: "
                         "expired")
        if self.db_url is not None:
            from mlobs.warehouse.engine import display_url

            lines.append(f"warehouse {display_url(self.db_url)}: "
                         f"{self.warehouse_rows.describe()} row(s) to delete")
        else:
            lines.append("warehouse: none")
        for problem in self.problems:
            lines.append(f"left alone: {problem}")
        lines.append("total: nothing to delete" if self.empty else f"total: {self.files} file(s), {_size(self.bytes)}, "
                          f"{self.warehouse_rows.total} warehouse row(s)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON data (``mlobs gc --json``); every run with its decision."""
        return {
            "now": iso_utc(self.now),
            "policy": {"keep_previous": self.policy.keep_previous,
                       "hard_cap_days": self.policy.hard_cap_days,
                       "intermediate_ttl_days": self.policy.intermediate_ttl_days,
                       "warehouse": self.policy.warehouse},
            "cutoff": iso_utc(self.cutoff),
            "intermediate_cutoff": iso_utc(self.intermediate_cutoff),
            "runs": [{"run_id": d.run.run_id, "platform_id": d.run.platform_id,
                      "video_id": d.run.video_id, "status": d.run.status,
                      "started_at": iso_utc(d.run.started_at),
                      "action": "keep" if d.keep else "delete", "reason": d.reason,
                      "manifest_dir": str(d.run.manifest_dir) if d.run.manifest_dir else None,
                      "manifest_files": d.run.manifest_files,
                      "manifest_bytes": d.run.manifest_bytes,
                      "warehouse_rows": (d.run.warehouse_rows.to_dict()
                                         if d.delete_rows else None)}
                     for d in sorted(self.runs, key=_run_order)],
            "cache_versions": [{"platform_id": d.version.platform_id,
                                "video_id": d.version.video_id,
                                "component": d.version.entry.component,
                                "version": d.version.entry.version,
                                "run_id": d.version.entry.run_id,
                                "created_at": iso_utc(d.version.entry.created_at),
                                "is_current": d.version.entry.is_current,
                                "path": str(d.version.path),
                                "bytes": d.version.size_bytes, "reason": d.reason}
                               for d in sorted(self.cache_versions, key=_version_order)],
            "intermediates": [{"platform_id": i.platform_id, "video_id": i.video_id,
                               "name": i.name, "path": str(i.path),
                               "created_at": iso_utc(i.created_at), "files": i.files,
                               "bytes": i.size_bytes}
                              for i in sorted(self.intermediates, key=lambda i: str(i.path))],
            "warehouse": (None if self.db_url is None else
                          {"run_ids": self.warehouse_run_ids,
                           "rows": self.warehouse_rows.to_dict()}),
            "problems": list(self.problems),
            "totals": {"files": self.files, "bytes": self.bytes,
                       "warehouse_rows": self.warehouse_rows.total},
        }


@dataclass
class GcResult:
    """What :func:`apply_gc` deleted."""

    manifest_dirs: int = 0
    cache_versions: int = 0
    intermediates: int = 0
    files: int = 0
    bytes: int = 0
    warehouse_rows: Any = None  # RowCounts
    #: what could not be deleted (the rest was); a later gc tries again.
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        rows = self.warehouse_rows.describe() if self.warehouse_rows is not None else "no"
        return (f"deleted {self.manifest_dirs} run manifest dir(s), {self.cache_versions} "
                f"cache version(s), {self.intermediates} intermediate dir(s): "
                f"{self.files} file(s), {_size(self.bytes)}; warehouse: {rows} row(s)")

    def to_dict(self) -> dict[str, Any]:
        return {"manifest_dirs": self.manifest_dirs, "cache_versions": self.cache_versions,
                "intermediates": self.intermediates, "files": self.files,
                "bytes": self.bytes,
                "warehouse_rows": (self.warehouse_rows.to_dict()
                                   if self.warehouse_rows is not None else None),
                "problems": list(self.problems)}


# -- formatting --------------------------------------------------------------------------

def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{n} B ({value:.1f} {unit})"
    raise AssertionError("unreachable")


def _when(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _run_order(d: RunDecision) -> tuple[Any, ...]:
    r = d.run
    return (r.platform_id, r.video_id, r.started_at, r.run_id)


def _version_order(d: VersionDecision) -> tuple[Any, ...]:
    v = d.version
    return (v.platform_id, v.video_id, v.entry.component, v.entry.version)


def _describe_run(d: RunDecision) -> str:
    r = d.run
    parts = []
    if not d.keep:
        if r.manifest_dir is not None:
            parts.append(f"manifest dir {r.manifest_files} file(s) {_size(r.manifest_bytes)}")
        if d.delete_rows:
            parts.append(f"warehouse {r.warehouse_rows.describe()}")
    action = "keep  " if d.keep else "delete"
    detail = f": {'; '.join(parts)}" if parts else ""
    return (f"{action} run {r.run_id} {r.platform_id}/{r.video_id} started "
            f"{_when(r.started_at)} {r.status} [{d.reason}]{detail}")


# -- the plan (pure) -----------------------------------------------------------------------

def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


def decide_runs(runs: Iterable[RunInfo], policy: GcPolicy, now: datetime) -> list[RunDecision]:
    """Keep or drop each run by the rules of the module docstring (pure)."""
    cutoff = now - timedelta(days=policy.hard_cap_days)
    groups: dict[RunKey, list[RunInfo]] = defaultdict(list)
    for run in runs:
        groups[run.key].append(run)
    decisions: list[RunDecision] = []

    def decide(run: RunInfo, keep: bool, reason: str) -> None:
        delete_rows = (not keep and run.warehouse_rows is not None
                       and (policy.warehouse == "dropped" or reason == "hard_cap"))
        decisions.append(RunDecision(run, keep, reason, delete_rows))

    for members in groups.values():
        members.sort(key=lambda r: (r.started_at, r.run_id), reverse=True)  # newest first
        inside = [r for r in members if r.started_at >= cutoff]
        for run in members:
            if run.started_at < cutoff:
                decide(run, False, "hard_cap")
        anchor = next((i for i, r in enumerate(inside) if r.status == "ok"), None)
        if anchor is None:
            for run in inside:
                decide(run, True, "no_ok_run")
            continue
        for i, run in enumerate(inside):
            if i < anchor:
                decide(run, True, "after_latest_ok")
            elif i == anchor:
                decide(run, True, "latest_ok")
            elif i <= anchor + policy.keep_previous:
                decide(run, True, "previous")
            elif run.indexed:
                decide(run, True, "artifact_index")
            else:
                decide(run, False, "superseded")
    return decisions


def decide_versions(versions: Iterable[CacheVersion], decisions: Sequence[RunDecision],
                    policy: GcPolicy, now: datetime) -> list[VersionDecision]:
    """The cached versions to delete, by the rules of the module docstring (pure)."""
    cutoff = now - timedelta(days=policy.hard_cap_days)
    dropped = {d.run.run_id for d in decisions if not d.keep}
    used: dict[tuple[str, str], set[tuple[str, int]]] = defaultdict(set)
    for d in decisions:
        if d.keep:
            used[(d.run.platform_id, d.run.video_id)].update(d.run.cache_refs)
    doomed = []
    for version in versions:
        entry = version.entry
        if entry.created_at < cutoff:
            doomed.append(VersionDecision(version, "hard_cap"))
        elif (entry.run_id in dropped and not entry.is_current
              and (entry.component, entry.version)
              not in used[(version.platform_id, version.video_id)]):
            doomed.append(VersionDecision(version, "dropped_run"))
    return doomed


def plan_gc(inventory: Inventory, policy: GcPolicy | None = None, *,
            now: datetime | None = None) -> GcPlan:
    """Decide what GC deletes (pure: reads nothing, changes nothing).

    Args:
        inventory: the runs, cached versions and intermediate directories
            (:func:`collect_inventory`).
        policy: the rules' parameters (default :class:`GcPolicy`).
        now: the time to judge ages by (timezone-aware; default: now, UTC).

    Returns:
        The plan; :func:`apply_gc` carries it out.

    Raises:
        ConfigError: ``now`` is naive.
    """
    policy = policy or GcPolicy()
    now = _aware(now, "now") if now is not None else datetime.now(timezone.utc)
    decisions = decide_runs(inventory.runs, policy, now)
    ttl_cutoff = now - timedelta(days=policy.intermediate_ttl_days)
    return GcPlan(
        policy=policy, now=now, root=inventory.root, runs_dir=inventory.runs_dir,
        cache_dir=inventory.cache_dir, db_url=inventory.db_url, runs=decisions,
        cache_versions=decide_versions(inventory.cache_versions, decisions, policy, now),
        intermediates=[i for i in inventory.intermediates if i.created_at < ttl_cutoff],
        problems=list(inventory.problems))


# -- reading the inventory ---------------------------------------------------------------

def _manifest_runs(runs_dir: Path, problems: list[str]) -> dict[str, RunInfo]:
    found: dict[str, RunInfo] = {}
    for path in sorted(runs_dir.glob("*/*/*/manifest.json")):
        try:
            run, components = read_manifest(path)
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        files, size = tree_size(path.parent)
        found[run.run_id] = RunInfo(
            run_id=run.run_id, platform_id=run.platform_id, video_id=run.video_id,
            status=run.status, started_at=run.started_at, config_hash=run.config_hash,
            sampling_policy_version=run.sampling_policy_version,
            model_signatures=frozenset(c.model_signature for c in components
                                       if c.model_signature),
            cache_refs=frozenset((c.component, c.cache_version) for c in components
                                 if c.cache_version is not None),
            manifest_dir=path.parent, manifest_files=files, manifest_bytes=size)
    return found


def _warehouse_runs(db_url: str) -> dict[str, RunInfo]:
    from sqlalchemy import MetaData, Table, inspect, select
    from sqlalchemy.exc import SQLAlchemyError

    from mlobs.warehouse.deletion import (
        COMPONENTS,
        RUNS,
        artifact_index_table,
        count_run_rows,
        has_mlobs_tables,
        run_columns,
    )
    from mlobs.warehouse.engine import create_warehouse_engine, display_url

    engine = create_warehouse_engine(db_url)
    found: dict[str, RunInfo] = {}
    try:
        with engine.connect() as conn:
            if not has_mlobs_tables(conn):
                return found
            for row in conn.execute(select(
                    RUNS.c.run_id, RUNS.c.platform_id, RUNS.c.video_id, RUNS.c.status,
                    RUNS.c.started_at, RUNS.c.config_hash,
                    RUNS.c.sampling_policy_version)):
                found[row.run_id] = RunInfo(**row._asdict())
            signatures: dict[str, set[str]] = defaultdict(set)
            for run_id, signature in conn.execute(
                    select(COMPONENTS.c.run_id, COMPONENTS.c.model_signature).distinct()
                    .where(COMPONENTS.c.model_signature.is_not(None))):
                signatures[run_id].add(signature)
            refs: dict[str, set[tuple[str, int]]] = defaultdict(set)
            columns = {c["name"] for c in inspect(conn).get_columns(COMPONENTS.name)}
            if "cache_version" in columns:  # a later revision stores it
                table = Table(COMPONENTS.name, MetaData(), autoload_with=conn)
                for run_id, component, version in conn.execute(
                        select(table.c.run_id, table.c.component, table.c.cache_version)
                        .where(table.c.cache_version.is_not(None))):
                    refs[run_id].add((component, int(version)))
            indexed: set[str] = set()
            index = artifact_index_table(conn)
            for column in run_columns(index) if index is not None else ():
                indexed.update(conn.scalars(select(column).distinct()
                                            .where(column.is_not(None))))
        counts = count_run_rows(engine)
    except SQLAlchemyError as exc:
        raise WarehouseError(f"cannot read the warehouse at {display_url(engine)}: "
                             f"{exc}") from exc
    finally:
        engine.dispose()
    for run_id, info in found.items():
        info.model_signatures = frozenset(signatures.get(run_id, ()))
        info.cache_refs = frozenset(refs.get(run_id, ()))
        info.warehouse_rows = counts[run_id]
        info.indexed = run_id in indexed
    return found


def _merge(manifest: RunInfo | None, stored: RunInfo | None) -> RunInfo:
    if manifest is None or stored is None:
        found = manifest or stored
        assert found is not None
        return found
    # The finished state wins (a manifest may lag behind the warehouse, or the reverse).
    status = stored.status if manifest.status == "running" else manifest.status
    manifest.status = status
    manifest.model_signatures = manifest.model_signatures | stored.model_signatures
    manifest.cache_refs = manifest.cache_refs | stored.cache_refs
    manifest.warehouse_rows = stored.warehouse_rows
    manifest.indexed = stored.indexed
    return manifest


def _cache_versions(cache_dir: Path) -> list[CacheVersion]:
    store = ArtifactStore(cache_dir)
    versions = []
    for index in store.videos():
        video_dir = store.video_dir(index.platform_id, index.video_id)
        for component in sorted(index.entries):
            for entry in index.versions(component):
                path = video_dir / entry.file_path
                try:
                    size, on_disk = path.stat().st_size, True
                except OSError:
                    size, on_disk = 0, False
                versions.append(CacheVersion(index.platform_id, index.video_id, entry, path,
                                             size, on_disk))
    return versions


def collect_inventory(root: str | os.PathLike[str], db_url: str | None = None) -> Inventory:
    """Read the runs (manifests under ``<root>/runs`` and the warehouse), the cached
    versions (``<root>/cache``) and the registered intermediate directories.

    Args:
        root: the mlobs root.
        db_url: the warehouse, or ``None`` to leave the warehouse out. A SQLite file that
            does not exist is left out too (and not created).

    Raises:
        WarehouseError: the warehouse cannot be read.
    """
    from mlobs.warehouse.engine import missing_sqlite_file

    root = Path(root)
    inventory = Inventory(root=root, runs_dir=root / "runs", cache_dir=root / "cache",
                          db_url=None)
    manifests = _manifest_runs(inventory.runs_dir, inventory.problems)
    stored: dict[str, RunInfo] = {}
    if db_url is not None and missing_sqlite_file(db_url) is None:
        inventory.db_url = db_url
        stored = _warehouse_runs(db_url)
    inventory.runs = [_merge(manifests.get(run_id), stored.get(run_id))
                      for run_id in sorted(set(manifests) | set(stored))]
    inventory.cache_versions = _cache_versions(inventory.cache_dir)
    inventory.intermediates = list(find_intermediates(inventory.cache_dir))
    return inventory


# -- carrying a plan out -----------------------------------------------------------------

def _prune_empty_parents(path: Path, stop: Path) -> None:
    """Remove empty directories from ``path`` upwards, never ``stop`` or above it."""
    try:
        path.relative_to(stop)
    except ValueError:
        return
    while path != stop and path.is_dir():
        try:
            path.rmdir()
        except OSError:  # not empty (or gone): stop here
            return
        path = path.parent


def _remove_tree(path: Path, result: GcResult) -> bool:
    files, size = tree_size(path)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        result.problems.append(f"{path}: {exc}")
        return False
    result.files += files
    result.bytes += size
    return True


def apply_gc(plan: GcPlan) -> GcResult:
    """Delete what ``plan`` lists: manifest directories, cached versions, intermediate
    directories, then the warehouse rows. A cached version that changed since the plan
    (another content, or it became current) and an intermediate directory registered
    again are left alone. Errors on one item are collected in ``problems``; the others
    are still deleted, and a later gc tries again.

    Returns:
        What was deleted.
    """
    from mlobs.warehouse.deletion import RowCounts, delete_runs

    result = GcResult(warehouse_rows=RowCounts())
    for decision in plan.dropped_runs:
        directory = decision.run.manifest_dir
        if directory is not None and directory.exists():
            if _remove_tree(directory, result):
                result.manifest_dirs += 1
            _prune_empty_parents(directory.parent, plan.runs_dir)

    store = ArtifactStore(plan.cache_dir)
    by_video: dict[tuple[str, str], list[VersionDecision]] = defaultdict(list)
    for d in plan.cache_versions:
        by_video[(d.version.platform_id, d.version.video_id)].append(d)
    for (platform_id, video_id), planned in sorted(by_video.items()):
        try:
            index = store.info(platform_id, video_id)
            stored = {(e.component, e.version): e
                      for versions in (index.entries.values() if index else ()) for e in versions}
            doomed: dict[tuple[str, int], CacheEntry] = {}
            for d in planned:
                e = d.version.entry
                now_entry = stored.get((e.component, e.version))
                if now_entry is None or now_entry.content_sha256 != e.content_sha256:
                    continue  # gone, or another version under that number
                if now_entry.is_current and d.reason != "hard_cap":
                    continue  # made current since the plan (mlobs cache use)
                doomed[(e.component, e.version)] = now_entry
            video_dir = store.video_dir(platform_id, video_id)
            sizes = {}
            for key, entry in doomed.items():
                try:
                    sizes[key] = (video_dir / entry.file_path).stat().st_size
                except OSError:
                    pass  # the file is already gone: only its index entry goes
            for removed in store.remove(platform_id, video_id, list(doomed.values())) \
                    if doomed else []:
                key = (removed.component, removed.version)
                result.cache_versions += 1
                if key in sizes:
                    result.files += 1
                    result.bytes += sizes[key]
        except OSError as exc:
            result.problems.append(f"cache of {platform_id}/{video_id}: {exc}")

    for intermediate in plan.intermediates:
        registration = read_registration(intermediate.path / REGISTRATION_FILE)
        if registration is None or parse_utc(str(registration["created_at"])) \
                != intermediate.created_at:
            continue  # gone, or registered again since the plan
        if _remove_tree(intermediate.path, result):
            result.intermediates += 1
        folder = intermediate.path.parent
        if folder.name == INTERMEDIATE_FOLDER:
            _prune_empty_parents(folder, folder.parent)

    run_ids = plan.warehouse_run_ids
    if run_ids and plan.db_url is not None:
        try:
            result.warehouse_rows = delete_runs(plan.db_url, run_ids)
        except WarehouseError as exc:
            result.problems.append(str(exc))
    return result


def gc(root: str | os.PathLike[str], db_url: str | None = None,
       policy: GcPolicy | None = None, *, now: datetime | None = None,
       dry_run: bool = False) -> tuple[GcPlan, GcResult | None]:
    """Plan and (unless ``dry_run``) apply GC of a root and its warehouse.

    Returns:
        The plan, and what was deleted (``None`` for a dry run).

    Raises:
        WarehouseError: the warehouse cannot be read.
        ConfigError: invalid policy or ``now``.
    """
    plan = plan_gc(collect_inventory(root, db_url), policy, now=now)
    return plan, (None if dry_run else apply_gc(plan))

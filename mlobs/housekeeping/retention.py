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

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlobs.cache.entries import CacheEntry
from mlobs.cache.intermediate import Intermediate
from mlobs.core.checks import check_finite, check_int
from mlobs.core.errors import ConfigError
from mlobs.core.records import iso_utc
from mlobs.housekeeping.policy_defaults import (  # the policy's defaults
    HARD_CAP_DAYS,
    INTERMEDIATE_TTL_DAYS,
    KEEP_PREVIOUS,
)

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
                     for d in sorted(self.runs, key=run_order)],
            "cache_versions": [{"platform_id": d.version.platform_id,
                                "video_id": d.version.video_id,
                                "component": d.version.entry.component,
                                "version": d.version.entry.version,
                                "run_id": d.version.entry.run_id,
                                "created_at": iso_utc(d.version.entry.created_at),
                                "is_current": d.version.entry.is_current,
                                "path": str(d.version.path),
                                "bytes": d.version.size_bytes, "reason": d.reason}
                               for d in sorted(self.cache_versions, key=version_order)],
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

    def to_dict(self) -> dict[str, Any]:
        return {"manifest_dirs": self.manifest_dirs, "cache_versions": self.cache_versions,
                "intermediates": self.intermediates, "files": self.files,
                "bytes": self.bytes,
                "warehouse_rows": (self.warehouse_rows.to_dict()
                                   if self.warehouse_rows is not None else None),
                "problems": list(self.problems)}


def run_order(d: RunDecision) -> tuple[Any, ...]:
    r = d.run
    return (r.platform_id, r.video_id, r.started_at, r.run_id)


def version_order(d: VersionDecision) -> tuple[Any, ...]:
    v = d.version
    return (v.platform_id, v.video_id, v.entry.component, v.entry.version)


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

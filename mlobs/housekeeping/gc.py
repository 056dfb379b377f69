"""Carrying a gc plan out (:func:`apply_gc`), and :func:`gc`: plan, then apply.

The rules and the plan are :mod:`mlobs.housekeeping.retention`'s; this module deletes only
what a plan lists.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from mlobs.cache.entries import CacheEntry
from mlobs.cache.intermediate import INTERMEDIATE_FOLDER, REGISTRATION_FILE, read_registration
from mlobs.cache.store import ArtifactStore
from mlobs.core.errors import WarehouseError
from mlobs.core.records import parse_utc
from mlobs.housekeeping.inventory import collect_inventory
from mlobs.housekeeping.retention import GcPlan, GcPolicy, GcResult, VersionDecision, plan_gc
from mlobs.housekeeping.trees import prune_empty_parents, remove_tree


def _remove(path: Path, result: GcResult) -> bool:
    removed = remove_tree(path, result.problems)
    if removed is None:
        return False
    result.files += removed[0]
    result.bytes += removed[1]
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
            if _remove(directory, result):
                result.manifest_dirs += 1
            prune_empty_parents(directory.parent, plan.runs_dir)

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
        if _remove(intermediate.path, result):
            result.intermediates += 1
        folder = intermediate.path.parent
        if folder.name == INTERMEDIATE_FOLDER:
            prune_empty_parents(folder, folder.parent)

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

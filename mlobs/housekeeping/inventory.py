"""What gc looks at: the runs (manifests and warehouse rows), the cached versions and the
registered intermediate directories of a root (:func:`collect_inventory`)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from mlobs.cache.intermediate import find_intermediates
from mlobs.cache.store import ArtifactStore
from mlobs.core.errors import ManifestError, WarehouseError
from mlobs.core.manifest import read_manifest
from mlobs.core.paths import tree_size
from mlobs.housekeeping.retention import CacheVersion, Inventory, RunInfo
from mlobs.warehouse.engine import missing_sqlite_file


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

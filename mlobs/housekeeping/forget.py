"""Forgetting a video (privacy requests): delete everything mlobs holds about it.

:func:`forget_video` deletes, for one ``video_id`` (of one platform, or of every
platform when ``platform_id`` is not given):

* its run manifests: ``<root>/runs/<platform>/<video>/`` (every run);
* its cache: ``<root>/cache/<platform>/<video>/`` (every version of every component, the
  cache index, and the registered intermediate directories such as extracted frames);
* its warehouse rows, in each warehouse given (SQLite or PostgreSQL): ``runs``,
  ``component_runs``, ``events`` and ``artifact_index``
  (:func:`mlobs.warehouse.deletion.delete_video_rows`). On SQLite the deleted content is
  overwritten (``secure_delete``) and the WAL checkpointed.

Nothing else mlobs stores names a video: ``model_signatures`` describes models, and
``component_rollups`` aggregates per component and model.

It reports what it deleted (directories, files, bytes, rows per table) and is safe to
repeat: a second call finds nothing and reports nothing deleted. With ``dry_run`` it
reports the same for what it would delete, and deletes nothing. A warehouse that fails
is reported in ``problems`` while the rest is still deleted; calling again finishes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlobs.core.errors import ConfigError, WarehouseError
from mlobs.core.paths import safe_segment
from mlobs.housekeeping.trees import prune_empty_parents, remove_tree
from mlobs.warehouse.deletion import RowCounts


@dataclass
class DeletedTree:
    """A directory deleted: what it held (``kind``: ``manifests`` or ``cache``)."""

    kind: str
    path: Path
    files: int
    size_bytes: int


@dataclass
class ForgetReport:
    """What :func:`forget_video` deleted (with ``dry_run``: would delete)."""

    video_id: str
    platform_id: str | None
    dry_run: bool = False
    trees: list[DeletedTree] = field(default_factory=list)
    #: (warehouse URL with any password hidden, rows deleted there)
    warehouses: list[tuple[str, RowCounts]] = field(default_factory=list)
    #: warehouses that had no database to delete from (a SQLite file that does not exist).
    absent: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(t.files for t in self.trees)

    @property
    def size_bytes(self) -> int:
        return sum(t.size_bytes for t in self.trees)

    @property
    def rows(self) -> RowCounts:
        total = RowCounts()
        for _url, counts in self.warehouses:
            total = total + counts
        return total

    @property
    def nothing_deleted(self) -> bool:
        return not self.trees and self.rows.total == 0

    def to_dict(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "platform_id": self.platform_id,
                "dry_run": self.dry_run,
                "deleted": [{"kind": t.kind, "path": str(t.path), "files": t.files,
                             "bytes": t.size_bytes} for t in self.trees],
                "warehouses": [{"url": url, "rows": counts.to_dict()}
                               for url, counts in self.warehouses],
                "absent_warehouses": list(self.absent),
                "files": self.files, "bytes": self.size_bytes, "rows": self.rows.total,
                "problems": list(self.problems)}


def _video_dirs(base: Path, video_id: str, platform_id: str | None) -> list[Path]:
    """``<base>/<platform>/<video>`` for the given platform, or for every platform."""
    video = safe_segment(video_id)
    if platform_id is not None:
        candidates = [base / safe_segment(platform_id) / video]
    else:
        try:
            platforms = sorted(p for p in base.iterdir() if p.is_dir())
        except OSError:
            platforms = []
        candidates = [p / video for p in platforms]
    return [c for c in candidates if c.is_dir() and not c.is_symlink()]


def _delete_tree(kind: str, path: Path, base: Path, report: ForgetReport) -> None:
    removed = remove_tree(path, report.problems)
    if removed is not None:
        report.trees.append(DeletedTree(kind, path, *removed))
        prune_empty_parents(path.parent, base)  # the platform folder, if now empty


def forget_video(video_id: str, *, platform_id: str | None = None,
                 root: str | os.PathLike[str] | None = None,
                 db_urls: Sequence[str] | None = None,
                 dry_run: bool = False) -> ForgetReport:
    """Delete every manifest, cached file and warehouse row of a video.

    Args:
        video_id: the video to forget.
        platform_id: its platform; ``None`` forgets the video_id on every platform.
        root: the mlobs root (default: ``$MLOBS_ROOT`` or ``./mlobs-data``).
        db_urls: the warehouses to delete rows from (default: the configured one,
            ``$MLOBS_DB_URL`` or the root's SQLite file). A SQLite file that does not
            exist is reported as absent and not created.
        dry_run: count what would be deleted (files, bytes, rows), delete nothing.

    Returns:
        What was deleted (would be, with ``dry_run``); ``nothing_deleted`` on a repeat.

    Raises:
        ConfigError: ``video_id`` (or ``platform_id``) is not a non-empty string.
    """
    from mlobs.core.config import resolve_settings
    from mlobs.core.paths import tree_size
    from mlobs.warehouse.deletion import count_video_rows, delete_video_rows
    from mlobs.warehouse.engine import display_url, missing_sqlite_file, normalize_url

    for label, value in (("video_id", video_id), ("platform_id", platform_id)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{label} must be a non-empty string, got {value!r}")
    settings = resolve_settings(root=root)
    urls = list(db_urls) if db_urls else [settings.db_url]
    report = ForgetReport(video_id=video_id, platform_id=platform_id, dry_run=dry_run)
    for kind, base in (("manifests", settings.runs_dir), ("cache", settings.cache_dir)):
        for path in _video_dirs(base, video_id, platform_id):
            if dry_run:
                report.trees.append(DeletedTree(kind, path, *tree_size(path)))
            else:
                _delete_tree(kind, path, base, report)
    for url in urls:
        try:
            shown = display_url(normalize_url(url))
            if missing_sqlite_file(url) is not None:
                report.absent.append(shown)
                continue
            rows = (count_video_rows if dry_run else delete_video_rows)(
                url, video_id, platform_id)
            report.warehouses.append((shown, rows))
        except WarehouseError as exc:
            report.problems.append(str(exc))
    return report

"""Loading manifests into the warehouse (``mlobs ingest``), idempotently.

Rows are keyed by run_id and component_run_id, so ingesting a manifest twice — or one the
warehouse sink already wrote — changes nothing but the run's latest state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mlobs.core.errors import ManifestError
from mlobs.core.manifest import read_manifest
from mlobs.sinks.spool_replay import ReplayReport, replay
from mlobs.warehouse.store import WarehouseStore


def find_manifests(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Each path itself if it is a file, else every ``manifest.json`` below it (sorted)."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(path.rglob("manifest.json"))
        else:
            yield path


@dataclass
class IngestReport:
    """What an ingest did: manifests loaded, records written, and per-file problems."""

    manifests: int = 0
    runs: int = 0
    components: int = 0
    problems: list[str] = field(default_factory=list)


def ingest_manifests(store: WarehouseStore, paths: Iterable[Path], *,
                     on_progress: Callable[[int], None] | None = None) -> IngestReport:
    """Write the records of each manifest in ``paths`` (one transaction per manifest).

    A manifest that cannot be read, or whose records the warehouse refuses, is reported in
    ``problems`` (file and reason) and skipped; the others are still loaded.
    """
    report = IngestReport()
    for index, path in enumerate(paths, 1):
        try:
            run, components = read_manifest(path)
            store.write([run], components)
        except ManifestError as exc:
            report.problems.append(str(exc))
        except Exception as exc:  # a refused record must not stop the others
            report.problems.append(f"{path}: {type(exc).__name__}: {exc}")
        else:
            report.manifests += 1
            report.runs += 1
            report.components += len(components)
        if on_progress is not None:
            on_progress(index)
    return report


def replay_spool(spool_dir: str | Path, store: WarehouseStore, *,
                 chunk_size: int = 500) -> ReplayReport:
    """Write the records the warehouse sink spooled in ``spool_dir`` (``<root>/spool``)
    and remove them from the spool; waits while a sink of a running pipeline replays it.

    Idempotent: a replay that stopped midway (database away again, process killed) can
    be repeated without duplicates. See :func:`mlobs.sinks.spool_replay.replay`.
    """
    return replay(spool_dir, store, chunk_size=chunk_size, wait=True)

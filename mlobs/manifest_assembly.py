"""Assemble a run's ``manifest.json`` from the warehouse.

When a run's components are recorded by several processes (Celery workers), no process
holds them all, and many writers of one file would race. Each process writes its records
to the shared warehouse; the orchestrating process then reads the run back and writes the
manifest once (:func:`assemble_manifest`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlobs.errors import WarehouseError
from mlobs.manifest import ManifestText, write_manifest
from mlobs.paths import manifest_path
from mlobs.records import ComponentRecord, RunRecord
from mlobs.warehouse.store import WarehouseStore

log = logging.getLogger("mlobs.manifest")


@dataclass(frozen=True)
class AssembledManifest:
    """What :func:`assemble_manifest` wrote.

    Attributes:
        path: the manifest file.
        run: the run record written (with the assembly's warnings added).
        components: the component records written, in finishing order.
        missing: the expected component_run_ids that never reached the warehouse.
    """

    path: Path
    run: RunRecord
    components: list[ComponentRecord]
    missing: list[str]


def assemble_manifest(store: WarehouseStore, run_id: str, runs_dir: Path, *,
                      expected: Mapping[str, str] | None = None,
                      warnings: Sequence[str] = (), timeout_s: float = 30.0,
                      poll_interval_s: float = 0.1) -> AssembledManifest:
    """Write ``run_id``'s manifest from the warehouse.

    Waits (polling every ``poll_interval_s`` seconds, for at most ``timeout_s``) until the
    run's record is final and every component_run_id in ``expected`` is stored; whatever
    is still missing then is named in a warning on the manifest's run record.

    Args:
        store: the warehouse every process writes to.
        run_id: the run.
        runs_dir: ``<root>/runs``; the file goes where the manifest sink puts it.
        expected: component_run_id → a label for the warning (e.g. the task's name and
            id), for components other processes are known to have finished.
        warnings: further warnings for the manifest's run record.
        timeout_s, poll_interval_s: seconds.

    Raises:
        WarehouseError: the warehouse cannot be read, or does not know the run.
    """
    expected = dict(expected or {})
    deadline = time.monotonic() + timeout_s
    while True:
        found = store.get_run(run_id)
        if found is None:
            raise WarehouseError(f"run {run_id} is not in the warehouse {store.url}")
        run, components = found
        stored = {c.component_run_id for c in components}
        missing = [cid for cid in expected if cid not in stored]
        if (run.status != "running" and not missing) or time.monotonic() >= deadline:
            break
        time.sleep(poll_interval_s)
    run.warnings.extend(warnings)
    if missing:
        run.warnings.extend(
            f"the record of {expected[cid]} did not reach the warehouse within {timeout_s} s"
            for cid in missing)
        log.warning("mlobs: manifest of run %s assembled without %d record(s)", run_id,
                    len(missing))
    components = in_finishing_order(components)
    path = manifest_path(runs_dir, run.platform_id, run.video_id, run.run_id)
    write_manifest(path, manifest_document(run, components), durable=True)
    return AssembledManifest(path, run, components, missing)


def in_finishing_order(components: list[ComponentRecord]) -> list[ComponentRecord]:
    """The manifest's order: by ``finished_at`` (ties by component_run_id)."""
    return sorted(components, key=lambda c: (c.finished_at, c.component_run_id))


def manifest_document(run: RunRecord, components: list[ComponentRecord]) -> str:
    """The ``mlobs.manifest/1`` JSON text of a run and its components (in the order
    given; see :func:`in_finishing_order`)."""
    text = ManifestText(run)
    for component in components:
        text.add_component(component)
    return text.render()

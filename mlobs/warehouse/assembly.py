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

from mlobs.core.errors import WarehouseError
from mlobs.core.manifest import in_finishing_order, manifest_document, write_manifest
from mlobs.core.paths import manifest_path
from mlobs.core.records import ComponentRecord, RunRecord
from mlobs.core.run_status import optional_failure_warning, required_failure_message
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
                      unconfirmed: Mapping[str, str] | None = None,
                      warnings: Sequence[str] = (), timeout_s: float = 30.0,
                      unconfirmed_wait_s: float = 2.0,
                      poll_interval_s: float = 0.1) -> AssembledManifest:
    """Write ``run_id``'s manifest from the warehouse.

    Waits (polling every ``poll_interval_s`` seconds, for at most ``timeout_s``) until the
    run's record is final and every component_run_id in ``expected`` is stored; whatever
    is still missing then is named in a warning on the run record. Components in
    ``unconfirmed`` are waited for ``unconfirmed_wait_s`` at most: those stored by then
    count as expected ones, the others get their warning.

    The expected components (other processes' work, which the run's own status rule never
    saw) are then judged by that rule (ARCHITECTURE §4): a failed required one makes an
    ``ok`` run ``error``, a failed optional one adds a warning. When the run record
    changes, it is written back to the warehouse too, so both say the same.

    Args:
        store: the warehouse every process writes to.
        run_id: the run.
        runs_dir: ``<root>/runs``; the file goes where the manifest sink puts it.
        expected: component_run_id → a label for the warning (e.g. the task's name and
            id), for components other processes are known to have finished.
        unconfirmed: component_run_id → the warning to add unless it is stored, for
            components that may or may not have finished (a Celery task the result
            backend still calls RETRY: that state can be written after the last delivery
            already failed).
        warnings: further warnings for the manifest's run record.
        timeout_s, unconfirmed_wait_s, poll_interval_s: seconds.

    Raises:
        WarehouseError: the warehouse cannot be read or written, does not know the run, or
            still has it ``running`` after ``timeout_s`` (nothing is written then).
    """
    expected = dict(expected or {})
    unconfirmed = dict(unconfirmed or {})
    start = time.monotonic()
    deadline, unconfirmed_deadline = start + timeout_s, start + unconfirmed_wait_s
    # Poll with two light queries; read the whole run once, when done waiting.
    while True:
        status = store.run_statuses([run_id]).get(run_id)
        if status is None:
            raise WarehouseError(f"run {run_id} is not in the warehouse {store.url}")
        stored = store.component_run_ids(run_id)
        now = time.monotonic()
        if (status != "running" and all(cid in stored for cid in expected)
                and (now >= unconfirmed_deadline
                     or all(cid in stored for cid in unconfirmed))) or now >= deadline:
            break
        time.sleep(poll_interval_s)
    if status == "running":  # its final record went to a spool, or is late: the manifest
        # sink's own file is the better one, so it is not replaced
        raise WarehouseError(f"run {run_id} is still 'running' in the warehouse {store.url} "
                             f"after {timeout_s} s; its manifest is left as it is")
    found = store.get_run(run_id)
    if found is None:  # deleted meanwhile (mlobs forget)
        raise WarehouseError(f"run {run_id} is not in the warehouse {store.url}")
    run, components = found
    stored = {c.component_run_id for c in components}
    missing = [cid for cid in expected if cid not in stored]
    waiting = [cid for cid in unconfirmed if cid not in stored]
    added = list(warnings)
    added.extend(unconfirmed[cid] for cid in waiting)
    expected.update((cid, label) for cid, label in unconfirmed.items() if cid in stored)
    added.extend(f"the record of {expected[cid]} did not reach the warehouse within "
                 f"{timeout_s} s" for cid in missing)
    if missing:
        log.warning("mlobs: manifest of run %s assembled without %d record(s)", run_id,
                    len(missing))
    judged = [c for c in components if c.component_run_id in expected]
    added.extend(_optional_failures(judged))
    failed = _apply_required_failure(run, judged)
    added = [w for w in added if w not in run.warnings]
    if added or failed:
        run.warnings.extend(added)
        store.write([run], [])  # the warehouse says what the manifest says
    components = in_finishing_order(components)
    path = manifest_path(runs_dir, run.platform_id, run.video_id, run.run_id)
    write_manifest(path, manifest_document(run, components), durable=True)
    return AssembledManifest(path, run, components, missing)


def _optional_failures(components: list[ComponentRecord]) -> list[str]:
    """The warning a run gains for each failed optional component (as in one process)."""
    return [optional_failure_warning(c.component, c.error_code, c.error_message or "")
            for c in components if c.status == "error" and not c.required]


def _apply_required_failure(run: RunRecord, components: list[ComponentRecord]) -> bool:
    """Make an ``ok`` run ``error`` when a required component failed; True if it did."""
    failed = next((c for c in in_finishing_order(components)
                   if c.status == "error" and c.required), None)
    if failed is None or run.status != "ok":
        return False
    run.status, run.error_code = "error", failed.error_code
    run.error_message = required_failure_message(failed.component,
                                                 failed.error_message or failed.error_code)
    return True

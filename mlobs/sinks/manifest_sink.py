"""ManifestSink: keeps ``<root>/runs/<platform>/<video>/<run_id>/manifest.json`` current.

Each run's manifest is rewritten atomically, so a run killed with SIGKILL leaves a valid
manifest with ``status: "running"`` and its components up to the last rewrite. A new
run's manifest is written at once and a finished run's at once (fsynced); a running run's
is rewritten when its records arrive, at most once per
``components_bytes / rewrite_bytes_per_s`` seconds: a run of a few hundred components is
rewritten within ``flush_interval_s`` of a component's end, a run of 10,000 (about 8 MB
of JSON) every 2 s, so the rewrites of a growing run cost O(components) in all rather
than O(components²). ``mlobs.flush()`` writes whatever is pending. One writer per run: the
process that opened it; components this process recorded into a run it joined
(:mod:`mlobs.hooks.joined_run`) are left to the orchestrating process, which assembles
that run's manifest.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from mlobs.core.manifest import ManifestText, read_manifest, write_manifest
from mlobs.core.paths import manifest_path
from mlobs.core.propagation import joined_context
from mlobs.core.records import ComponentRecord, Record, RunRecord
from mlobs.sinks.base import RecordsRefused

#: closed runs whose manifest path is remembered for components that finish late.
_CLOSED_RUNS_KEPT = 4096
#: Default pace of a running run's rewrites: one per (encoded size / this) seconds.
REWRITE_BYTES_PER_S = 4 * 1024 * 1024


@dataclass
class _RunDocument:
    path: Path
    text: ManifestText
    #: records arrived since the last write.
    dirty: bool = True
    #: time.monotonic() before which a running run is not rewritten.
    next_write_at: float = 0.0


class ManifestSink:
    """Writes one manifest per run under ``runs_dir``.

    Args:
        runs_dir: ``<root>/runs``.
        rewrite_bytes_per_s: a running run's manifest is rewritten at most once per
            (its encoded components' bytes / this) seconds (see the module docstring).
        resume_from_disk: a run record of a run this sink has not seen carries on from
            the run's manifest on disk, when there is one, instead of starting it again
            (a warehouse writer started again in the middle of its parent's runs).
    """

    name = "manifest"
    #: local files only: shares a worker thread with the other local sinks.
    local = True

    def __init__(self, runs_dir: Path, *,
                 rewrite_bytes_per_s: float = REWRITE_BYTES_PER_S,
                 resume_from_disk: bool = False) -> None:
        self.runs_dir = Path(runs_dir)
        self.rewrite_bytes_per_s = rewrite_bytes_per_s
        self.resume_from_disk = resume_from_disk
        self._open: dict[str, _RunDocument] = {}
        self._closed: OrderedDict[str, Path] = OrderedDict()

    def export(self, records: list[Record]) -> None:
        touched: dict[str, _RunDocument] = {}
        problems: list[str] = []
        refused: list[str] = []
        for record in records:
            if self._joined_elsewhere(record):
                continue
            doc = self._document_for(record)
            if isinstance(record, RunRecord):
                doc.text.run = record
            else:
                try:
                    doc.text.add_component(record)
                except (TypeError, ValueError) as exc:  # JSON cannot hold it: this one only
                    refused.append(record.run_id)
                    problems.append(f"component {record.component!r} "
                                    f"({record.component_run_id}) of run {record.run_id}: "
                                    f"{exc}")
            doc.dirty = True
            touched[record.run_id] = doc
        now = time.monotonic()
        for run_id, doc in touched.items():
            if doc.text.run.status != "running" or now >= doc.next_write_at:
                self._write(run_id, doc)
        if refused:
            raise RecordsRefused("; ".join(problems), tuple(refused))

    def on_idle(self) -> None:
        """Rewrite the running runs whose next rewrite is due (the worker's wake). A run
        whose rewrite fails is tried again after its pace, not at every wake."""
        now = time.monotonic()
        for run_id, doc in list(self._open.items()):
            if doc.dirty and now >= doc.next_write_at:
                try:
                    self._write(run_id, doc)
                except Exception:
                    doc.next_write_at = now + max(
                        1.0, doc.text.components_bytes / self.rewrite_bytes_per_s)
                    raise

    def has_pending(self) -> bool:
        """Whether some manifest has records not written yet."""
        return any(doc.dirty for doc in self._open.values())

    def _write(self, run_id: str, doc: _RunDocument) -> None:
        finished = doc.text.run.status != "running"
        write_manifest(doc.path, doc.text.render(), durable=finished)
        doc.dirty = False
        doc.next_write_at = (time.monotonic()
                             + doc.text.components_bytes / self.rewrite_bytes_per_s)
        if finished:  # nothing more is expected; a straggler reloads it from disk
            del self._open[run_id]
            self._closed[run_id] = doc.path
            if len(self._closed) > _CLOSED_RUNS_KEPT:
                self._closed.popitem(last=False)

    def _joined_elsewhere(self, record: RunRecord | ComponentRecord) -> bool:
        run_id = record.run_id
        return (run_id not in self._open and run_id not in self._closed
                and isinstance(record, ComponentRecord) and joined_context(run_id) is not None)

    def _document_for(self, record: RunRecord | ComponentRecord) -> _RunDocument:
        doc = self._open.get(record.run_id)
        if doc is not None:
            return doc
        path = self._closed.get(record.run_id)
        if path is None and self.resume_from_disk and isinstance(record, RunRecord):
            known = manifest_path(self.runs_dir, record.platform_id, record.video_id,
                                  record.run_id)
            path = known if known.exists() else None
        if path is not None:
            # A record after the run's end (a component finishing late, or the final run
            # record sent again with warnings): carry on from the file on disk.
            run, components = read_manifest(path)
            doc = _RunDocument(path, ManifestText(run))
            for component in components:
                doc.text.add_component(component)
        elif isinstance(record, RunRecord):
            path = manifest_path(self.runs_dir, record.platform_id, record.video_id,
                                 record.run_id)
            doc = _RunDocument(path, ManifestText(record))
        else:
            raise KeyError(f"component {record.component_run_id} belongs to run "
                           f"{record.run_id}, which this process never opened")
        self._open[record.run_id] = doc
        return doc

    def after_fork_in_child(self) -> None:
        """A forked child never writes its parent's runs (one writer per run): it forgets
        them, written or not."""
        self._open.clear()
        self._closed.clear()

    def force_flush(self, timeout_s: float) -> bool:
        """Write every manifest with records not written yet. Raises what writing one
        raised (OSError: disk full, ...) after the others were written."""
        failure: Exception | None = None
        for run_id, doc in list(self._open.items()):
            if doc.dirty:
                try:
                    self._write(run_id, doc)
                except Exception as exc:  # one document must not keep the others back
                    failure = exc
        if failure is not None:
            raise failure
        return True

    def shutdown(self, timeout_s: float) -> None:
        self._open.clear()

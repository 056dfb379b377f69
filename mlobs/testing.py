"""Test helpers: capture what mlobs records, in memory.

    from mlobs.testing import capture

    def test_my_pipeline(tmp_path):
        with capture() as records:
            with mlobs.run("youtube", "v1") as run:
                my_pipeline(run)
        assert records.component("asr").status == "ok"

``capture()`` configures mlobs with only an in-memory sink (no manifests, no database) for
the duration of the ``with`` block and restores the previous configuration afterwards.
Cached component results go to ``root`` when given, else to a temporary directory removed
at the end of the block.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from mlobs.core.config import settings_from_env
from mlobs.core.records import ComponentRecord, Record, RunRecord
from mlobs.recording.recorder import Recorder, set_recorder


class MemorySink:
    """A sink keeping every record in lists (``runs`` holds the latest snapshot per run)."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, RunRecord] = {}
        self._components: list[ComponentRecord] = []

    def export(self, records: list[Record]) -> None:
        with self._lock:
            for record in records:
                if isinstance(record, RunRecord):
                    self._runs[record.run_id] = record
                else:
                    self._components.append(record)

    def force_flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> None:
        return None

    @property
    def runs(self) -> list[RunRecord]:
        with self._lock:
            return list(self._runs.values())

    @property
    def components(self) -> list[ComponentRecord]:
        with self._lock:
            return list(self._components)


class Captured:
    """What a :func:`capture` block recorded; reading flushes the sinks first."""

    def __init__(self, recorder: Recorder, sink: MemorySink) -> None:
        self._recorder, self._sink = recorder, sink

    @property
    def runs(self) -> list[RunRecord]:
        self._recorder.flush()
        return self._sink.runs

    @property
    def components(self) -> list[ComponentRecord]:
        self._recorder.flush()
        return self._sink.components

    def run(self) -> RunRecord:
        """The only run recorded (AssertionError if there is not exactly one)."""
        runs = self.runs
        assert len(runs) == 1, f"expected one run, captured {len(runs)}"
        return runs[0]

    def component(self, name: str) -> ComponentRecord:
        """The only record of component ``name`` (AssertionError otherwise)."""
        found = [c for c in self.components if c.component == name]
        assert len(found) == 1, f"expected one {name!r} record, captured {len(found)}"
        return found[0]


@contextmanager
def capture(*, sample_interval_ms: float = 5.0, memory_probes: bool = True,
            root: str | os.PathLike[str] | None = None) -> Iterator[Captured]:
    """Record into memory only, for the duration of the block.

    Args:
        root: where ``cache=True`` components keep their results (and where a resume
            looks for manifests); default: a temporary directory, removed afterwards.
    """
    sink = MemorySink()
    with tempfile.TemporaryDirectory(prefix="mlobs-capture-") as scratch:
        settings = replace(settings_from_env(), sinks=(), sample_interval_ms=sample_interval_ms,
                           memory_probes=memory_probes,
                           root=Path(root if root is not None else scratch).resolve())
        recorder = Recorder(settings, [sink])
        previous = set_recorder(recorder, shutdown_previous=False)
        try:
            yield Captured(recorder, sink)
        finally:
            set_recorder(previous)  # shuts the capture's recorder down after a final flush

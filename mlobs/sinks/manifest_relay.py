"""ManifestRelay: the manifest sink of the default sinks, when the warehouse writer keeps
the manifests (:mod:`mlobs.sinks.writer_sink`).

The pipeline's process then builds no record and writes no manifest: the warehouse sink
sends the spool lines to its writer process, which writes each run's manifest with the
same rules as :class:`~mlobs.sinks.manifest_sink.ManifestSink` (atomic rewrites, valid
at any instant, a finished run's manifest fsynced; one writer per run). This sink stands
for the manifests on the pipeline's side: its counters, and the records the writer's
manifests could not take, counted for their runs once a flush's answer says so.
"""

from __future__ import annotations

from mlobs.sinks.base import RecordsRefused, SpoolLine
from mlobs.sinks.writer_sink import WriterSink


class ManifestRelay:
    """The ``manifest`` sink whose manifests ``writer_sink``'s writer process writes.

    Args:
        writer_sink: a WriterSink made with ``runs_dir``, on the same worker.
    """

    name = "manifest"
    #: shares the local sinks' worker: the lines it stands for are the warehouse sink's.
    local = True
    takes_lines = True

    def __init__(self, writer_sink: WriterSink) -> None:
        if writer_sink.runs_dir is None:
            raise ValueError("ManifestRelay needs a WriterSink made with runs_dir")
        self.writer_sink = writer_sink
        self.runs_dir = writer_sink.runs_dir
        self._answers_at_begin: int | None = None

    def export(self, lines: list[SpoolLine]) -> None:
        """Nothing to do here: the warehouse sink sends these lines to the writer."""

    def begin_flush(self, timeout_s: float) -> None:
        self._answers_at_begin = self.writer_sink.answers

    def finish_flush(self, wait_s: float) -> bool:
        """True once the warehouse sink took the writer's answer to this flush (it never
        waits: the warehouse sink's own ``finish_flush`` does).

        Raises:
            RecordsRefused: records the manifests could not take, since the last flush.
        """
        if self._answers_at_begin == self.writer_sink.answers:
            return False
        self._answers_at_begin = None
        return self.force_flush(0.0)

    def force_flush(self, timeout_s: float) -> bool:
        """Report the refusals the writer's answers brought so far.

        Raises:
            RecordsRefused: records the manifests could not take.
        """
        refused, self.writer_sink.manifest_refused = self.writer_sink.manifest_refused, []
        if refused:
            raise RecordsRefused("; ".join(dict.fromkeys(reason for _, reason in refused)),
                                 tuple(run_id for run_id, _ in refused))
        return True

    def shutdown(self, timeout_s: float) -> None:
        """The warehouse sink stops the writer (which writes the manifests first)."""

"""A run opened in another process, joined here so components record into it.

The orchestrating process owns the run: it writes the run record and (from the
warehouse) the manifest. A process that joins the run (a Celery worker running one of
its tasks) only adds component records: entering a :class:`JoinedRun` makes it the
current run for the code inside, and leaving it emits nothing of the run itself.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from mlobs.core.propagation import RunContext, remember_joined
from mlobs.hooks.context import active_runs, current_run_var
from mlobs.hooks.profile import AnalysisProfile
from mlobs.hooks.run import Run
from mlobs.hooks.threads import install_executor_propagation
from mlobs.recording.recorder import Recorder


class JoinedRun(Run):
    """Records components into the run ``context`` names; :attr:`labels` are the
    context's (the orchestrator's run's), never this process's ``MLOBS_RUN_LABELS``.

    Args:
        recorder: this process's recorder.
        context: the run's context, as the orchestrating process sent it.
        attempt: the ``attempt`` of every component recorded through it (a Celery task's
            delivery: ``retries + 1``); default: counted per component in this process.

    Raises:
        ConfigError: the context holds values a run refuses.
    """

    def __init__(self, recorder: Recorder, context: RunContext, *,
                 attempt: int | None = None) -> None:
        super().__init__(recorder, platform_id=context.platform_id,
                         video_id=context.video_id,
                         profile=AnalysisProfile(context.profile, context.optional,
                                                 context.required),
                         pipeline_version=context.pipeline_version, config=None,
                         sampling_policy_version=context.sampling_policy_version, seed=None,
                         flush_timeout_s=0.0, labels=context.labels)
        self.record.run_id = context.run_id
        self.record.config_hash = context.config_hash
        self.context = context
        self._attempt = attempt

    def _next_attempt(self, name: str) -> int:
        return self._attempt if self._attempt is not None else super()._next_attempt(name)

    def __enter__(self) -> JoinedRun:
        # This process's time base for its components' timestamps (see Run._wall_at).
        self.record.started_at = datetime.now(timezone.utc)
        self._t0_ns = time.perf_counter_ns()
        remember_joined(self.context)
        install_executor_propagation()  # a worker may never open a run of its own
        self._token = current_run_var.set(self)
        active_runs.setdefault(self.run_id, self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        current_run_var.reset(self._token)
        if active_runs.get(self.run_id) is self:
            del active_runs[self.run_id]
        return False

    # Nothing here blocks: ``async with`` is ``with``, not Run's executor hand-off.
    async def __aenter__(self) -> JoinedRun:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)

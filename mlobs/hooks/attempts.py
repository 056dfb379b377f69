"""The attempt loop of one component: OOM batch degradation and transient retries.

``for attempt in c.attempts(): with attempt: ...`` runs the body until it succeeds or a
failure is final. The loop is tenacity's ``Retrying`` (``AsyncRetrying`` for
``async for``); this module decides, per failure, whether another attempt follows:

* an OOM (error_code ``oom``) with an ``on_oom`` policy that still has a smaller batch
  size: an ``oom`` event (attempt, batch_size, memory snapshot), ``oom_count + 1``, the
  GPU cache released, the smaller size set on the handle, retried at once;
* an OOM the policy cannot absorb (or without a policy): the ``oom`` event, and the
  component ends ``insufficient_gpu_memory`` (GPU, policy exhausted) or ``oom``;
* a transient failure the :class:`~mlobs.RetryPolicy` still allows: a ``retry``
  event, ``retry_count + 1``, retried after the policy's backoff;
* anything else: re-raised unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlobs.core.classify import classify_exception
from mlobs.core.limits import ERROR_MESSAGE_MAX_CHARS
from mlobs.hooks.oom import INSUFFICIENT_GPU_MEMORY, oom_snapshot
from mlobs.probes.gpu_oom import release_gpu_cache

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, Retrying

    from mlobs.hooks.component import ComponentCall

#: characters of an exception message kept on a ``retry`` event.
_EVENT_MESSAGE_MAX_CHARS = min(500, ERROR_MESSAGE_MAX_CHARS)


class AttemptDecider:
    """Decides, after each failed attempt of ``call``, whether to try again."""

    def __init__(self, call: ComponentCall) -> None:
        self.call = call
        self.failures = 0
        self._next_wait_s = 0.0

    def retry_after(self, exc: BaseException) -> bool:
        """True if ``exc`` gets another attempt (records the event either way it applies)."""
        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt and friends end the component at once
        self.failures += 1
        code = classify_exception(exc)
        if code == "oom":
            return self._after_oom(exc)
        policy = self.call.retry
        if policy is None or not policy.retries(code, self.call.retry_count):
            return False
        self._next_wait_s = policy.backoff_s(self.call.retry_count + 1)
        self.call.record_retry(exc, code, attempt=self.failures, wait_s=self._next_wait_s,
                               message_max_chars=_EVENT_MESSAGE_MAX_CHARS)
        return True

    def _after_oom(self, exc: BaseException) -> bool:
        call = self.call
        failed_size = call.batch_size
        snapshot = oom_snapshot(exc, call.device_used)
        call.record_oom(exc, snapshot, attempt=self.failures)
        smaller = None
        if call.on_oom is not None and failed_size is not None:
            smaller = call.on_oom.next_batch_size(failed_size)
        if smaller is None or not 0 < smaller < failed_size:
            if call.on_oom is not None:
                call.final_error_code(exc, INSUFFICIENT_GPU_MEMORY
                                      if snapshot["device_kind"] == "cuda" else "oom")
            return False
        call.degrade_batch_size(smaller)
        self._next_wait_s = 0.0
        # The failed attempt's frames (and the tensors they hold) must go before the
        # next attempt allocates again.
        exc.__traceback__ = None
        release_gpu_cache()
        return True

    def wait_s(self, _state: Any) -> float:
        return self._next_wait_s

    def options(self) -> dict[str, Any]:
        # tenacity is imported on the first component, not by `import mlobs`; `import
        # tenacity` (not `from tenacity import ...`) once loaded costs a dict lookup.
        import tenacity

        return {"retry": tenacity.retry_if_exception(self.retry_after), "wait": self.wait_s,
                "stop": tenacity.stop_never, "reraise": True}


def attempts(call: ComponentCall) -> Retrying:
    """``for attempt in attempts(call): with attempt: ...`` (blocking backoff sleeps)."""
    import tenacity

    return tenacity.Retrying(**AttemptDecider(call).options())


def async_attempts(call: ComponentCall) -> AsyncRetrying:
    """``async for attempt in async_attempts(call): with attempt: ...`` (asyncio sleeps)."""
    import tenacity

    return tenacity.AsyncRetrying(**AttemptDecider(call).options())

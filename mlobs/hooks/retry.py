"""Transient retries: which failures are tried again, how many times, how long apart.

Rule (model system rules §7): only transient errors (connection refused or reset,
timeouts, HTTP 502/503/504/429, ``triton_unavailable``) are retried, with exponential
backoff and jitter and a bounded number of attempts; ``model_load_failed`` is never
retried. The backoff is tenacity's ``wait_exponential_jitter``: ``initial_backoff_s * 2**n
+ uniform(0, jitter_s)`` seconds before retry ``n + 1``, capped at ``max_backoff_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from mlobs.core.checks import check_finite, check_int
from mlobs.core.classify import TRANSIENT_CODES
from mlobs.core.errors import ConfigError

#: error codes no policy may retry (fail fast: model system rules §7).
NEVER_RETRIED = frozenset({"model_load_failed"})


@dataclass(frozen=True)
class RetryPolicy:
    """How a component retries transient failures.

    Args:
        max_attempts: attempts in all, the first included (>= 1).
        initial_backoff_s: wait before the first retry, seconds (before jitter).
        max_backoff_s: the longest wait between attempts, seconds.
        jitter_s: up to this many seconds of random extra wait, so that many workers
            failing together do not retry together.
        retry_on: the error codes that are retried (default: :data:`TRANSIENT_CODES`).

    Raises:
        ConfigError: a bound is out of range, or ``retry_on`` names ``model_load_failed``.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    jitter_s: float = 0.5
    retry_on: frozenset[str] = field(default=TRANSIENT_CODES)

    def __post_init__(self) -> None:
        check_int("max_attempts", self.max_attempts, 1)
        for name in ("initial_backoff_s", "max_backoff_s", "jitter_s"):
            check_finite(name, getattr(self, name))
        object.__setattr__(self, "retry_on", frozenset(self.retry_on))
        forbidden = self.retry_on & NEVER_RETRIED
        if forbidden:
            raise ConfigError(f"{sorted(forbidden)} is never retried (fail fast)")

    def retries(self, error_code: str, retries_so_far: int) -> bool:
        """Whether a failure with ``error_code`` gets another attempt."""
        return error_code in self.retry_on and retries_so_far + 1 < self.max_attempts

    def backoff_s(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        import tenacity  # only once a retry is due

        try:
            wait = tenacity.wait_exponential_jitter(
                multiplier=self.initial_backoff_s, max=self.max_backoff_s, jitter=self.jitter_s)
        except TypeError:  # tenacity before 9.2 calls the multiplier `initial`
            wait = tenacity.wait_exponential_jitter(
                initial=self.initial_backoff_s, max=self.max_backoff_s, jitter=self.jitter_s)
        # tenacity's strategies read only attempt_number from the retry state.
        return wait(SimpleNamespace(attempt_number=retry_number))  # type: ignore[arg-type]

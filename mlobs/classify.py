"""Exception → error_code classification (ARCHITECTURE §3; model system rules §7).

Rules are tried newest first; the first one that returns a code wins. Built-in rules:

* ``ComponentError``                         → its ``code``
* ``MemoryError``, torch's ``OutOfMemoryError``, messages like "CUDA out of memory",
  "can't allocate memory"                    → ``oom``
* ``TimeoutError`` (incl. asyncio/futures)   → ``timeout``
* ``ConnectionError`` (refused, reset, ...)  → ``transient``
* ``KeyboardInterrupt``, ``SystemExit``       → ``interrupted`` (never swallowed)
* anything else                              → ``internal``

Users extend it with :func:`register_error_code` (an exception type → code) or
:func:`register_classifier` (a function returning a code or ``None`` to pass).
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
from collections.abc import Callable

from mlobs.errors import ComponentError, ConfigError
from mlobs.limits import CODE_MAX_CHARS

Classifier = Callable[[BaseException], "str | None"]

_OOM_MESSAGE = re.compile(
    r"out of memory|can't allocate memory|cannot allocate memory|CUDNN_STATUS_ALLOC_FAILED"
    r"|failed to allocate memory|OOM when allocating",
    re.IGNORECASE,
)


def _builtin(exc: BaseException) -> str | None:
    if isinstance(exc, ComponentError):
        return exc.code
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    # torch.cuda.OutOfMemoryError is matched by name so mlobs never imports torch.
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "transient"
    if isinstance(exc, RuntimeError) and _OOM_MESSAGE.search(str(exc)):
        return "oom"
    return None


_lock = threading.Lock()
_rules: tuple[Classifier, ...] = (_builtin,)


def register_classifier(rule: Classifier) -> None:
    """Add a rule tried before every earlier one.

    Args:
        rule: called with the exception; returns an error_code string, or ``None`` to let
            the next rule decide. A rule that raises is skipped.
    """
    global _rules
    if not callable(rule):
        raise ConfigError("register_classifier needs a callable")
    with _lock:  # copy-on-write: readers never lock
        _rules = (rule, *_rules)


def register_error_code(exc_type: type[BaseException], code: str) -> None:
    """Classify ``exc_type`` (and its subclasses) as ``code``."""
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise ConfigError("register_error_code needs an exception type")
    if not code or not isinstance(code, str):
        raise ConfigError("register_error_code needs a non-empty string code")
    register_classifier(lambda exc: code if isinstance(exc, exc_type) else None)


def classify_exception(exc: BaseException) -> str:
    """The error_code for ``exc``: the first registered rule's answer, else ``internal``."""
    for rule in _rules:
        try:
            code = rule(exc)
        except Exception:  # a broken user rule must not hide the real error
            continue
        if code:
            return str(code)[:CODE_MAX_CHARS]
    return "internal"

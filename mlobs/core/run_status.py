"""What a failed component leaves on its run (the run status rule, ARCHITECTURE §4).

Used where the rule is applied: by the run itself in one process (:mod:`mlobs.hooks.run`), and
by the orchestrating process for the records workers wrote (:mod:`mlobs.warehouse.assembly`),
so both say the same.
"""

from __future__ import annotations

from mlobs.core.limits import ERROR_MESSAGE_MAX_CHARS


def optional_failure_warning(component: str, error_code: str | None, message: str) -> str:
    """The run's warning for a failed optional component (message cut to 200 characters)."""
    return f"optional component {component!r} failed: {error_code}: {message[:200]}"


def required_failure_message(component: str, message: str) -> str:
    """The run's ``error_message`` when a required component failed (bounded)."""
    return f"required component {component!r} failed: {message}"[:ERROR_MESSAGE_MAX_CHARS]

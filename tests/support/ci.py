"""Tests that need a local service or tool: skipped without it, except in CI (CI=true),
where every one of them must run, so a missing service fails the run."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> None:
    """Skip the test for ``reason``, or fail it in CI. Never returns."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def required_tool(name: str) -> str:
    """The path of ``name`` (``prometheus`` or ``promtool``, from Debian's ``prometheus``
    package), or :func:`unavailable`."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is missing: install Debian's prometheus package "
                    "(`make .venv/.installed` does it as root)")
    return path

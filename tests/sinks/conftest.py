"""Fixtures shared by the sink tests."""

from __future__ import annotations

import pytest

from mlobs.hooks.component import ComponentCall


@pytest.fixture
def broken_component(monkeypatch):
    """A component named ``broken`` cannot be built: neither its record nor its compact
    spool line (both are built from ``_record_values``)."""
    build = ComponentCall._record_values

    def build_or_fail(self, *args, **kwargs):
        if self.name == "broken":
            raise RuntimeError("cannot build this one")
        return build(self, *args, **kwargs)

    monkeypatch.setattr(ComponentCall, "_record_values", build_or_fail)

"""A property of the whole public API: any value it accepts is stored by every sink.

Hypothesis draws identifiers, sizes, counts, metrics, warnings, events and seeds, odd ones
included (lone surrogates, huge integers, NaN, very long text); a call may refuse a value
with ConfigError, and whatever it accepted must reach the manifest and the warehouse
with no sink failing.
"""

from __future__ import annotations

import contextlib
import tempfile

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mlobs
from mlobs.core.manifest import read_manifest
from mlobs.warehouse.migrate import upgrade
from mlobs.warehouse.store import WarehouseStore

text = st.text(max_size=300) | st.sampled_from(["asr", "bad\udcff", "nul\x00", "", "x" * 256])
#: identifiers: mostly ones a pipeline would use, so most runs get to record something.
ident = st.sampled_from(["youtube", "abc123", "vidéo-1"]) | st.text(min_size=1, max_size=40) \
    | text
maybe_text = st.none() | text
numbers = (st.integers(min_value=-2, max_value=2**70) | st.floats(allow_nan=True)
           | st.booleans() | text)
json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | text,
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(text, inner, max_size=3), max_leaves=6)



def rarely(strategy):
    """None three times in four: each odd argument alone, not all at once, most often."""
    return st.one_of(st.none(), st.none(), st.none(), strategy)


call = st.fixed_dictionaries({
    "platform_id": ident, "video_id": ident, "pipeline_version": rarely(text),
    "config": rarely(st.dictionaries(text, json_values, max_size=3)),
    "seed": rarely(st.integers(min_value=-1, max_value=2**33) | st.floats()),
    "component": ident, "producer_version": rarely(text), "device": rarely(text),
    "batch_size": rarely(st.integers(min_value=-1, max_value=2**40)),
    "items": numbers, "metric": st.tuples(text, numbers), "warning": text,
    "event": st.tuples(text, st.dictionaries(text, json_values, max_size=3)),
    "empty_reason": maybe_text, "error": st.none() | text,
})


def _accepted(fn, *args, **kwargs):
    with contextlib.suppress(mlobs.ConfigError):
        return fn(*args, **kwargs)
    return None


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(call)
def test_what_the_api_accepts_every_sink_stores(configured, values):
    try:
        run = mlobs.run(values["platform_id"], values["video_id"],
                        pipeline_version=values["pipeline_version"], config=values["config"],
                        seed=values["seed"])
    except mlobs.ConfigError:
        event("run refused")
        return
    with run:
        try:
            handle = run.component(values["component"], required=False,
                                   producer_version=values["producer_version"],
                                   device=values["device"], batch_size=values["batch_size"])
        except mlobs.ConfigError:
            event("component refused")
            handle = run.component("fallback", required=False)
        with handle as c:
            c.set_items(values["items"])
            c.metric(*values["metric"])
            c.warn(values["warning"])
            kind, attributes = values["event"]
            c.event(kind, **attributes)
            if values["empty_reason"] is not None:
                _accepted(c.empty, values["empty_reason"])
            if values["error"] is not None:
                raise RuntimeError(values["error"])
    assert mlobs.flush(10)
    assert {(s.name, s.failed, s.dropped) for s in mlobs.sink_stats()} == {
        ("manifest", 0, 0), ("warehouse", 0, 0)}
    _, in_manifest = read_manifest(run.manifest_path)
    with WarehouseStore(mlobs.settings().db_url) as store:
        stored = store.get_run(run.run_id)
    assert stored is not None
    assert [c.component_run_id for c in in_manifest] == \
        [c.component_run_id for c in stored[1]] == [handle.component_run_id]


@pytest.fixture
def configured(db_url):
    """One recorder for every example (SQLite, and PostgreSQL: NUL is refused there)."""
    upgrade(db_url)
    with tempfile.TemporaryDirectory(prefix="mlobs-property-") as directory:
        mlobs.configure(root=directory, db_url=db_url)
        yield db_url
        mlobs.configure(sinks=[])

"""Run labels travel to Celery workers: the run context header carries them (checked as at
``mlobs.run``), headers of older senders without them still parse, and a joined run
exposes the orchestrator's labels, never the worker's ``MLOBS_RUN_LABELS``."""

from __future__ import annotations

import json
import uuid

import pytest

pytest.importorskip("celery")

import mlobs  # noqa: E402
from mlobs.core.propagation import RunContext  # noqa: E402
from mlobs.integrations import celery as mlobs_celery  # noqa: E402
from mlobs.testing import capture  # noqa: E402

LABELS = {"experiment": "asr-int8", "release": "rc-2"}


@pytest.fixture
def ca():
    from support import celery_app

    celery_app.app.conf.task_always_eager = True
    yield celery_app
    celery_app.app.conf.task_always_eager = False
    mlobs_celery.instrument()


def _context(**extra) -> RunContext:
    return RunContext(run_id=str(uuid.uuid4()), platform_id="youtube", video_id="v1",
                      config_hash="c" * 64, **extra)


def test_the_header_round_trips_the_labels():
    context = _context(labels=dict(LABELS))
    header = context.to_header()
    assert json.loads(header)["labels"] == LABELS
    assert RunContext.from_header(header) == context
    assert RunContext.from_header(json.loads(header)).labels == LABELS


def test_a_header_from_a_sender_older_than_labels_parses_without_them():
    body = json.loads(_context().to_header())
    del body["labels"]
    context = RunContext.from_header(json.dumps(body))
    assert context.labels == {}
    assert RunContext.from_header({**body, "labels": None}).labels == {}


@pytest.mark.parametrize("labels, message", [
    ({"bad key": "x"}, "run context labels key 'bad key' must be a letter"),
    ({"release": 2}, r"run context labels\['release'\] must be a string"),
    ({"release": "x" * 257}, "must be at most 256 characters"),
    ({f"k{i}": "v" for i in range(33)}, "run context labels must hold at most 32"),
    (["release=rc-2"], "run context labels must be a mapping"),
])
def test_a_header_with_bad_labels_is_refused(labels, message):
    body = {**json.loads(_context().to_header()), "labels": labels}
    with pytest.raises(mlobs.ConfigError, match=message):
        RunContext.from_header(body)


def test_a_run_sends_its_labels(monkeypatch):
    monkeypatch.setenv("MLOBS_RUN_LABELS", "ci=yes")
    with capture():
        with mlobs.run("youtube", "v1", labels=dict(LABELS)) as run:
            context = RunContext.from_header(run.run_context().to_header())
    assert context.labels == {**LABELS, "ci": "yes"}


def test_a_joined_run_exposes_the_context_s_labels(ca, monkeypatch):
    """The worker's own MLOBS_RUN_LABELS (a CI driver's, say) does not relabel the
    orchestrator's run."""
    monkeypatch.setenv("MLOBS_RUN_LABELS", "worker=yes")
    seen: list[dict[str, str]] = []

    @ca.app.task(name="tests.labels_probe", mlobs={"component": "labels_probe"})
    def probe() -> bool:
        run = mlobs.current_run()
        seen.append(dict(run.labels))
        seen.append(dict(run.run_context().labels))  # what it would send on
        return True

    labelled, old = _context(labels=dict(LABELS)), _context()
    with capture() as records:
        for context in (labelled, old):
            assert probe.apply(headers={mlobs_celery.HEADER: context.to_header()}).get()
    assert seen == [LABELS, LABELS, {}, {}]
    assert sorted(c.run_id for c in records.components) == sorted(
        [labelled.run_id, old.run_id])
    assert records.runs == []  # the run records belong to the orchestrator

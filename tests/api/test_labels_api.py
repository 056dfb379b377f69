"""Run labels at the call: ``mlobs.run(..., labels={...})``, ``MLOBS_RUN_LABELS``, the
checks and their messages, ``Run.labels``, and labels in manifest.json."""

from __future__ import annotations

import json

import pytest

import mlobs
from mlobs.core.errors import ManifestError
from mlobs.core.labels import LABELS_ENV, labels_from_env, parse_labels, run_labels
from mlobs.core.manifest import parse_manifest, read_manifest
from mlobs.testing import capture


@pytest.fixture(autouse=True)
def no_env_labels(monkeypatch):
    monkeypatch.delenv(LABELS_ENV, raising=False)


def _run_of(records, run_id: str):
    """The latest record captured of run ``run_id``."""
    return next(r for r in records.runs if r.run_id == run_id)


def test_labels_are_recorded_and_exposed_read_only():
    with capture() as records:
        with mlobs.run("youtube", "v1", labels={"release": "rc-2", "experiment": "x"}) as run:
            assert dict(run.labels) == {"experiment": "x", "release": "rc-2"}
            with pytest.raises(TypeError):
                run.labels["release"] = "rc-3"  # type: ignore[index]
    assert _run_of(records, run.run_id).labels == {"experiment": "x", "release": "rc-2"}


def test_a_run_without_labels_has_none():
    with capture() as records:
        with mlobs.run("youtube", "v1") as run:
            assert dict(run.labels) == {}
    assert _run_of(records, run.run_id).labels == {}


@pytest.mark.parametrize("labels, message", [
    (["release"], r"labels must be a mapping of str keys to str values \(a dict\)"),
    ({f"k{i}": "v" for i in range(33)}, "labels must hold at most 32 labels, got 33"),
    ({"": "v"}, "labels key '' must be a letter"),
    ({"1st": "v"}, "labels key '1st' must be a letter"),
    ({"has space": "v"}, "labels key 'has space' must be a letter"),
    ({"k" * 65: "v"}, "must be a letter followed by at most 63 letters"),
    ({"ключ": "v"}, "labels key 'ключ' must be a letter"),
    ({3: "v"}, "labels key 3 must be a letter"),
    ({"release": 2}, r"labels\['release'\] must be a string, got 2"),
    ({"release": None}, r"labels\['release'\] must be a string, got None"),
    ({"release": "x" * 257}, r"labels\['release'\] must be at most 256 characters, got 257"),
    ({"release": "a\x00b"}, r"labels\['release'\] must be valid Unicode text without NUL"),
])
def test_bad_labels_are_refused_at_the_call_naming_the_problem(labels, message):
    with capture() as records:
        with pytest.raises(mlobs.ConfigError, match=message):
            mlobs.run("youtube", "v1", labels=labels)
    assert records.runs == []


def test_the_bounds_themselves_are_accepted():
    labels = {f"k{i}": "v" for i in range(30)}
    labels["K" + "a_.-9" * 12 + "abc"] = "x" * 256   # 64 characters, every allowed kind
    labels["empty"] = ""
    assert len(labels) == 32
    with capture():
        with mlobs.run("youtube", "v1", labels=labels) as run:
            assert dict(run.labels) == labels


def test_the_environment_variable_is_merged_and_the_call_wins(monkeypatch):
    monkeypatch.setenv(LABELS_ENV, " release = rc-1 ,ci=yes,, ")
    with capture() as records:
        with mlobs.run("youtube", "v1", labels={"release": "rc-2", "team": "asr"}) as run:
            pass
        with mlobs.run("youtube", "v2") as plain:
            pass
    assert _run_of(records, run.run_id).labels == {"ci": "yes", "release": "rc-2", "team": "asr"}
    assert _run_of(records, plain.run_id).labels == {"ci": "yes", "release": "rc-1"}


def test_the_environment_is_read_at_each_run(monkeypatch):
    with capture() as records:
        monkeypatch.setenv(LABELS_ENV, "side=baseline")
        with mlobs.run("youtube", "v1") as first:
            pass
        monkeypatch.setenv(LABELS_ENV, "side=candidate")
        with mlobs.run("youtube", "v1") as second:
            pass
    assert _run_of(records, first.run_id).labels == {"side": "baseline"}
    assert _run_of(records, second.run_id).labels == {"side": "candidate"}


@pytest.mark.parametrize("text, message", [
    ("release", r"MLOBS_RUN_LABELS: 'release' is not KEY=VALUE"),
    ("a=1,=2", r"MLOBS_RUN_LABELS: '=2' is not KEY=VALUE"),
    ("9lives=x", r"MLOBS_RUN_LABELS key '9lives' must be a letter"),
    ("a=" + "x" * 300, r"MLOBS_RUN_LABELS\['a'\] must be at most 256 characters, got 300"),
    (",".join(f"k{i}=v" for i in range(33)), "MLOBS_RUN_LABELS must hold at most 32"),
])
def test_a_malformed_environment_variable_fails_the_run_naming_it(monkeypatch, text,
                                                                  message):
    monkeypatch.setenv(LABELS_ENV, text)
    with capture() as records:
        with pytest.raises(mlobs.ConfigError, match=message):
            mlobs.run("youtube", "v1", labels={"release": "rc-2"})
    assert records.runs == []


def test_together_at_most_32_labels(monkeypatch):
    monkeypatch.setenv(LABELS_ENV, ",".join(f"env{i}=v" for i in range(20)))
    with pytest.raises(mlobs.ConfigError, match="together hold 40 labels"):
        run_labels({f"own{i}": "v" for i in range(20)})
    # the same keys overlap: 20 in all
    assert len(run_labels({f"env{i}": "own" for i in range(20)})) == 20


def test_parse_labels():
    assert parse_labels("") == {}
    assert parse_labels(" , ") == {}
    assert parse_labels("a=1") == {"a": "1"}
    assert parse_labels(" a = x y , b=c=d,") == {"a": "x y", "b": "c=d"}
    assert parse_labels("a=") == {"a": ""}
    # appended text overrides: the later value wins
    assert list(parse_labels("side=warmup,repeat=0,side=candidate").items()) == [
        ("repeat", "0"), ("side", "candidate")]
    with pytest.raises(mlobs.ConfigError, match="--label: 'x' is not KEY=VALUE"):
        parse_labels("x", source="--label")
    with pytest.raises(mlobs.ConfigError, match="must be text"):
        parse_labels(None)  # type: ignore[arg-type]


def test_labels_from_env_reads_the_given_environment():
    assert labels_from_env({}) == {}
    assert labels_from_env({LABELS_ENV: "  "}) == {}
    assert labels_from_env({LABELS_ENV: "b=2,a=1"}) == {"b": "2", "a": "1"}
    with pytest.raises(mlobs.ConfigError, match=LABELS_ENV):
        labels_from_env({LABELS_ENV: "oops"})


def test_labels_are_in_the_manifest(isolated_root, monkeypatch):
    monkeypatch.setenv(LABELS_ENV, "ci=yes")
    mlobs.configure(sinks=["manifest"])
    with mlobs.run("youtube", "v1", labels={"release": "rc-2"}) as run:
        with run.component("asr", producer_version="1"):
            pass
    document = json.loads(run.manifest_path.read_text())
    assert document["labels"] == {"ci": "yes", "release": "rc-2"}
    record, _ = read_manifest(run.manifest_path)
    assert record.labels == {"ci": "yes", "release": "rc-2"}


def test_a_manifest_older_than_labels_reads_with_none(isolated_root):
    mlobs.configure(sinks=["manifest"])
    with mlobs.run("youtube", "v1", labels={"release": "rc-2"}) as run:
        pass
    document = json.loads(run.manifest_path.read_text())
    del document["labels"]
    record, _ = parse_manifest(document)
    assert record.labels == {}
    document["labels"] = ["release=rc-2"]
    with pytest.raises(ManifestError, match="labels must be an object"):
        parse_manifest(document)

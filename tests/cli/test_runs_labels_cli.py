"""``mlobs runs list --label KEY=VALUE``, the labels column, and labels in ``runs show``."""

from __future__ import annotations

import json
import re

import pytest

from mlobs.cli.formatting import labels_text
from mlobs.cli.main import main
from mlobs.warehouse.store import WarehouseStore


@pytest.fixture
def labelled(db_url, make_run):
    """Runs a (rc-2, baseline), b (rc-2, candidate), c (rc-1, candidate), d (none)."""
    ids = {}
    with WarehouseStore(db_url, manage_schema=True) as store:
        for name, labels in (("a", {"release": "rc-2", "side": "baseline"}),
                             ("b", {"release": "rc-2", "side": "candidate"}),
                             ("c", {"release": "rc-1", "side": "candidate"}),
                             ("d", {})):
            run, components = make_run(video_id=name)
            run.labels = labels
            store.write([run], components)
            ids[name] = run.run_id
    return ids


def _listed(capsys, db_url: str, *extra: str) -> set[str]:
    assert main(["runs", "list", "--json", "--db-url", db_url, *extra]) == 0
    return {run["video_id"] for run in json.loads(capsys.readouterr().out)}


def test_runs_list_filters_by_every_label_given(labelled, db_url, capsys):
    assert _listed(capsys, db_url) == {"a", "b", "c", "d"}
    assert _listed(capsys, db_url, "--label", "release=rc-2") == {"a", "b"}
    assert _listed(capsys, db_url, "--label", "release=rc-2", "--label",
                   "side=candidate") == {"b"}
    assert _listed(capsys, db_url, "--label", " side = candidate ") == {"b", "c"}
    assert _listed(capsys, db_url, "--label", "release=rc-2,side=baseline") == {"a"}
    assert _listed(capsys, db_url, "--label", "release=rc-9") == set()
    # the same label twice is fine
    assert _listed(capsys, db_url, "--label", "release=rc-1", "--label",
                   "release=rc-1") == {"c"}


def test_runs_list_json_carries_the_labels(labelled, db_url, capsys):
    assert main(["runs", "list", "--json", "--db-url", db_url, "--label", "side=baseline"]) == 0
    [run] = json.loads(capsys.readouterr().out)
    assert run["labels"] == {"release": "rc-2", "side": "baseline"}


@pytest.mark.parametrize("argument, message", [
    ("release", "argument --label: 'release' is not KEY=VALUE"),
    ("=rc-2", "argument --label: '=rc-2' is not KEY=VALUE"),
    ("", "argument --label: expected KEY=VALUE, got ''"),
    ("9=x", "argument --label: label key '9' must be a letter"),
    ("k=" + "x" * 257, r"argument --label: label\['k'\] must be at most 256 characters"),
])
def test_a_bad_label_argument_is_an_argparse_error(sqlite_url, capsys, argument, message):
    with pytest.raises(SystemExit) as caught:
        main(["runs", "list", "--db-url", sqlite_url, "--label", argument])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "usage: mlobs runs list" in err
    assert re.search(message, err), err


def test_one_key_with_two_values_is_an_argparse_error(sqlite_url, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["runs", "list", "--db-url", sqlite_url, "--label", "side=a", "--label",
              "side=b"])
    assert caught.value.code == 2
    assert "argument --label: label 'side' given twice, as 'a' and 'b'" in \
        capsys.readouterr().err


def test_the_table_has_a_labels_column(labelled, db_url, capsys):
    assert main(["runs", "list", "--db-url", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "labels"
    by_run = {line.split()[0]: line for line in lines[2:]}
    assert by_run[labelled["a"]].endswith(" release=rc-2,side=baseline")
    assert by_run[labelled["d"]].rstrip().endswith(" -")


def test_labels_text_is_compact_sorted_escaped_and_cut():
    assert labels_text({}) == "-"
    assert labels_text({"b": "2", "a": "1"}) == "a=1,b=2"
    assert labels_text({"note": "two\nlines"}) == "note=two\\nlines"
    long = {f"key{i}": "value" for i in range(10)}
    cut = labels_text(long, 40)
    assert len(cut) == 40 and cut.endswith("...") and cut.startswith("key0=value,key1=")
    assert labels_text(long) == ",".join(f"key{i}=value" for i in range(10))


def test_runs_show_shows_the_labels(labelled, db_url, capsys):
    assert main(["runs", "show", labelled["b"], "--db-url", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines if line.startswith("labels ")] == [
        ["labels", "release=rc-2,side=candidate"]]
    assert main(["runs", "show", labelled["d"], "--db-url", db_url]) == 0
    assert [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("labels ")] == [["labels", "-"]]
    assert main(["runs", "show", labelled["b"], "--json", "--db-url", db_url]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["labels"] == {
        "release": "rc-2", "side": "candidate"}

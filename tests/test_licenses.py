"""The model license inventory (mlobs.analysis.licenses): the table's parser, the per-model
rules, and the repository's own MODEL_LICENSES.md against a demo warehouse."""

from __future__ import annotations

from pathlib import Path

import pytest

import mlobs
from mlobs.analysis import licenses
from mlobs.analysis.licenses import check_licenses, denied_by, read_inventory, split_row
from mlobs.core.errors import ConfigError, WarehouseError
from support.demo_warehouse import recorded_models

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "MODEL_LICENSES.md"
HEADER = "| model_name | source | license | link | restrictions |\n|---|---|---|---|---|\n"


@pytest.fixture
def demo_warehouse(demo_warehouse_db: Path) -> tuple[str, Path]:
    return f"sqlite:///{demo_warehouse_db}", demo_warehouse_db


def write(tmp_path: Path, body: str, name: str = "MODEL_LICENSES.md") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def edited_inventory(tmp_path: Path, edits: dict) -> Path:
    """A copy of the repository's inventory with the row of each model of ``edits``
    passed through its ``edit(cells) -> cells | None`` (None drops the row)."""
    lines, found = [], set()
    for line in INVENTORY.read_text(encoding="utf-8").splitlines():
        cells = split_row(line) if line.startswith("|") else None
        if cells and cells[0] in edits:
            found.add(cells[0])
            cells = edits[cells[0]](cells)
            if cells is None:
                continue
            line = "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
        lines.append(line)
    assert found == set(edits), f"rows missing from {INVENTORY}: {set(edits) - found}"
    return write(tmp_path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- the table

def test_table_parses_case_insensitive_headers_escapes_backticks_and_link_forms(tmp_path):
    path = write(tmp_path, "# Inventory\n\nSome text | with a pipe.\n\n"
                 "```\n| model_name | not | the | table |\n```\n\n"
                 "| License | MODEL_NAME | Source | `link` | Restrictions | owner |\n"
                 "|:---|---|---:|:-:|---|---|\n"
                 "| MIT | `org/a` | hub \\| mirror | <https://example.org/a> | none | ml |\n"
                 "| Apache-2.0 | b | local | [card](https://example.org/b) | - | ml |\n"
                 "\nAfter the table.\n")
    rows = read_inventory(path)
    assert [r.model_name for r in rows] == ["org/a", "b"]
    a, b = rows
    assert (a.license, a.source, a.restrictions, a.extra) == (
        "MIT", "hub | mirror", "none", {"owner": "ml"})
    assert a.line == 11 and b.line == 12
    assert licenses.link_url(a.link) == "https://example.org/a"
    assert licenses.link_url(b.link) == "https://example.org/b"
    report = check_licenses(path, models=["org/a", "b"])
    assert [(r.model, r.verdict) for r in report.results] == [("b", "ok"), ("org/a", "ok")]


def test_split_row_keeps_escaped_pipes_and_optional_outer_pipes():
    assert split_row("| a | b \\| c | d |") == ["a", "b | c", "d"]
    assert split_row("a | b") == ["a", "b"]
    assert split_row("| a | \\|") == ["a", "|"]


@pytest.mark.parametrize("body, line, words", [
    (HEADER.replace("|---|---|---|---|---|", "| a | b | c | d | e |")
     + "| m | s | MIT | https://x.org | none |\n", 2, "separator row"),
    (HEADER + "| m | s | MIT | https://x.org |\n", 3, "4 cell(s), the header has 5"),
    (HEADER + "| m | s | MIT | https://x.org | a | b |\n", 3, "6 cell(s)"),
    (HEADER + "| m | s | MIT | https://x.org | none |\n| m | t | MIT | https://y.org | - |\n",
     4, "'m' appears twice (first at line 3)"),
    (HEADER + "|  | s | MIT | https://x.org | none |\n", 3, "empty model_name"),
    ("intro\n\n| model_name | source | link |\n|---|---|---|\n| m | s | https://x.org |\n",
     3, "lacks column(s) license, restrictions"),
    (HEADER + "| m | s | MIT | https://x.org | none |\n\n" + HEADER, 5, "a second table"),
])
def test_a_malformed_table_is_a_config_error_naming_file_and_line(tmp_path, body, line,
                                                                   words):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        read_inventory(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert words in message


def test_no_inventory_table_or_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no table with a model_name column"):
        read_inventory(write(tmp_path, "# nothing here\n\n| a | b |\n|---|---|\n"))
    with pytest.raises(ConfigError, match="no such file"):
        read_inventory(tmp_path / "missing.md")


# --------------------------------------------------------------------------- the rules

@pytest.mark.parametrize("license_text, link, reason", [
    ("", "https://x.org/m", "license missing"),
    ("unknown", "https://x.org/m", "license missing ('unknown')"),
    ("CC-BY-NC-4.0", "https://x.org/m", "license 'CC-BY-NC-4.0' is denied"),
    ("cc-by-nc-sa-4.0", "https://x.org/m", "is denied"),
    ("Llama research-only license", "https://x.org/m", "is denied"),
    ("MIT", "", "link missing"),
    ("MIT", "-", "link missing"),
    ("MIT", "ftp://x.org/m", "not an http(s) URL"),
    ("MIT", "see the vendor", "not an http(s) URL"),
    ("MIT", "https://", "not an http(s) URL"),
])
def test_a_row_that_does_not_clear_its_model_fails_with_the_reason(tmp_path, license_text,
                                                                   link, reason):
    path = write(tmp_path, HEADER + f"| m | hub | {license_text} | {link} | none |\n"
                 "| other | hub | MIT | https://x.org/o | none |\n")
    report = check_licenses(path, models=["m", "other"])
    verdicts = {r.model: r for r in report.results}
    assert verdicts["other"].verdict == "ok"
    assert verdicts["m"].verdict == "fail"
    assert reason in verdicts["m"].reason and "line 3" in verdicts["m"].reason
    assert [r.model for r in report.failed] == ["m"] and not report.ok


def test_deny_patterns_are_case_insensitive_globs_and_replaceable(tmp_path):
    assert denied_by("CC-BY-NC-ND-4.0", licenses.DEFAULT_DENY) == "CC-BY-NC*"
    assert denied_by("MIT OR cc-by-nc-4.0", licenses.DEFAULT_DENY) == "*-NC-*"
    assert denied_by("Apache-2.0", licenses.DEFAULT_DENY) is None
    assert denied_by("CC-BY-4.0", licenses.DEFAULT_DENY) is None
    path = write(tmp_path, HEADER + "| m | hub | CC-BY-NC-4.0 | https://x.org | - |\n"
                 "| n | hub | GPL-3.0-only | https://x.org | - |\n")
    assert check_licenses(path, models=["m"], deny=()).ok
    report = check_licenses(path, models=["m", "n"], deny=["gpl-*"])
    assert {r.model: r.verdict for r in report.results} == {"m": "ok", "n": "fail"}
    assert "pattern 'gpl-*'" in report.failed[0].reason
    with pytest.raises(ConfigError, match="deny patterns"):
        check_licenses(path, models=["m"], deny=[""])


def test_declared_models_without_a_row_fail_and_unused_rows_are_informational(tmp_path):
    path = write(tmp_path, HEADER + "| Org/Model | hub | MIT | https://x.org | - |\n"
                 "| spare | hub | CC-BY-NC-4.0 | https://x.org | - |\n")
    report = check_licenses(path, models=["org/model", "org/model"])
    (result,) = report.results
    assert (result.model, result.verdict, result.sources) == ("org/model", "fail",
                                                             ("declared",))
    assert "no row for model 'org/model'" in result.reason
    assert "a row names 'Org/Model'" in result.reason
    assert [(r.model, r.verdict) for r in report.unused] == [("Org/Model", "unused"),
                                                              ("spare", "unused")]
    assert "would fail: license 'CC-BY-NC-4.0' is denied" in report.unused[1].reason
    assert not check_licenses(path).results  # nothing seen nor declared: nothing checked
    with pytest.raises(ConfigError, match="declared model name"):
        check_licenses(path, models=[""])


def test_a_missing_warehouse_file_is_an_error_not_an_empty_database(tmp_path):
    missing = tmp_path / "none.db"
    with pytest.raises(WarehouseError, match="no warehouse at"):
        check_licenses(INVENTORY, db_url=f"sqlite:///{missing}")
    assert not missing.exists()


# --------------------------------------------------------------------------- profiles

def test_a_profile_declares_its_models_as_a_frozenset():
    profile = mlobs.AnalysisProfile("p", optional={"summary"}, models=["a/b", "c", "a/b"])
    assert profile.models == frozenset({"a/b", "c"})
    assert mlobs.AnalysisProfile("p").models == frozenset()
    with pytest.raises(ConfigError, match="collection of model names"):
        mlobs.AnalysisProfile("p", models="a/b")
    with pytest.raises(ConfigError, match="model name"):
        mlobs.AnalysisProfile("p", models=["a", ""])


# --------------------------------------------------------------------------- the demo

def test_the_repository_inventory_clears_every_model_the_demo_records(demo_warehouse):
    db_url, db_path = demo_warehouse
    recorded = recorded_models(db_path)
    assert recorded  # the demo records models at all
    report = check_licenses(INVENTORY, db_url=db_url)
    assert {r.model for r in report.results} == recorded
    assert all(r.sources == ("warehouse",) for r in report.results)
    assert report.ok, [(r.model, r.reason) for r in report.failed]
    assert report.warehouse == db_url
    # every row of the inventory is a model the demo uses: no stale rows
    assert not report.unused


def test_the_demo_profiles_declare_the_models_their_pipelines_record(demo_warehouse):
    from mlobs.demo import text_pipeline, visual_pipeline

    declared = text_pipeline.PROFILE.models | visual_pipeline.PROFILE.models
    assert declared == recorded_models(demo_warehouse[1])


def test_removing_a_models_row_fails_that_model_by_name(demo_warehouse, tmp_path):
    db_url, db_path = demo_warehouse
    victim = sorted(recorded_models(db_path))[0]
    path = edited_inventory(tmp_path, {victim: lambda cells: None})
    report = check_licenses(path, db_url=db_url)
    assert [r.model for r in report.failed] == [victim]
    assert report.failed[0].reason == f"no row for model {victim!r} in {path.name}"
    assert all(r.verdict == "ok" for r in report.results if r.model != victim)


def test_a_denied_license_or_a_missing_link_fails_the_demo_model(demo_warehouse, tmp_path):
    db_url, db_path = demo_warehouse
    first, second = sorted(recorded_models(db_path))[:2]
    path = edited_inventory(tmp_path, {
        first: lambda c: [c[0], c[1], "CC-BY-NC-4.0", *c[3:]],
        second: lambda c: [*c[:3], "", c[4]]})
    report = check_licenses(path, db_url=db_url)
    reasons = {r.model: r.reason for r in report.failed}
    assert set(reasons) == {first, second}
    assert "license 'CC-BY-NC-4.0' is denied" in reasons[first]
    assert "link missing" in reasons[second]


"""`mlobs licenses check` as CI meets it: exit codes, the table, the JUnit report, the
default warehouse, and profiles imported by name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped

from mlobs.cli.main import main
from support.demo_warehouse import recorded_models

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "MODEL_LICENSES.md"
HEADER = "| model_name | source | license | link | restrictions |\n|---|---|---|---|---|\n"


@pytest.fixture
def demo_db(demo_warehouse_db: Path) -> Path:
    return demo_warehouse_db


@pytest.fixture(autouse=True)
def _no_configured_warehouse(monkeypatch, tmp_path):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path / "no-root"))


def without_row(tmp_path: Path, model: str, replacement: str | None = None) -> Path:
    lines = [line for line in INVENTORY.read_text().splitlines()
             if not line.startswith(f"| {model} |")]
    assert len(lines) == len(INVENTORY.read_text().splitlines()) - 1, model
    if replacement:
        lines.append(replacement)
    path = tmp_path / "MODEL_LICENSES.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def junit_cases(path: Path) -> dict[str, object]:
    (suite,) = list(JUnitXml.fromfile(str(path)))
    cases = {case.name: case for case in suite}
    assert {case.classname for case in cases.values()} == {"mlobs.licenses"}
    assert suite.tests == len(cases)
    return suite, cases


def test_the_repository_inventory_passes_on_a_demo_warehouse(demo_db, tmp_path, capsys):
    report = tmp_path / "reports" / "licenses.xml"
    code = main(["licenses", "check", "--file", str(INVENTORY), "--db-url",
                 f"sqlite:///{demo_db}", "--junit", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    models = recorded_models(demo_db)
    lines = out.splitlines()
    for model in models:
        (row,) = [line for line in lines if line.startswith(model + " ")]
        assert row.split()[1:3] == ["Apache-2.0", "ok"], row
    assert f"{len(models)} model(s) checked" in out and "0 failed" in out
    suite, cases = junit_cases(report)
    assert set(cases) == models
    assert suite.failures == 0 and all(case.is_passed for case in cases.values())


def test_a_model_without_a_row_fails_and_the_junit_report_names_it(demo_db, tmp_path,
                                                                   capsys):
    victim = sorted(recorded_models(demo_db))[-1]
    inventory = without_row(tmp_path, victim)
    report = tmp_path / "licenses.xml"
    code = main(["licenses", "check", "--file", str(inventory), "--db-url",
                 f"sqlite:///{demo_db}", "--junit", str(report)])
    out = capsys.readouterr().out
    assert code == 1
    first = out.splitlines()[2]  # failures come first, under the header
    assert first.startswith(victim) and " fail " in first
    assert f"no row for model {victim!r}" in first
    suite, cases = junit_cases(report)
    assert suite.failures == 1
    (failure,) = cases[victim].result
    assert isinstance(failure, Failure)
    assert failure.message == f"no row for model {victim!r} in MODEL_LICENSES.md"
    assert all(case.is_passed for name, case in cases.items() if name != victim)


def test_a_denied_license_fails_unless_the_default_deny_list_is_off(demo_db, tmp_path,
                                                                    capsys):
    victim = sorted(recorded_models(demo_db))[0]
    inventory = without_row(tmp_path, victim, f"| {victim} | vendor | CC-BY-NC-4.0 | "
                                              f"https://example.org/{victim} | non-commercial |")
    args = ["licenses", "check", "--file", str(inventory), "--db-url", f"sqlite:///{demo_db}"]
    assert main(args) == 1
    assert "license 'CC-BY-NC-4.0' is denied" in capsys.readouterr().out
    assert main([*args, "--no-default-deny"]) == 0
    assert main([*args, "--no-default-deny", "--deny", "apache-*"]) == 1
    out = capsys.readouterr().out
    assert out.count(" fail ") == len(recorded_models(demo_db)) - 1


def test_json_output_and_a_missing_link(demo_db, tmp_path, capsys):
    victim = sorted(recorded_models(demo_db))[0]
    inventory = without_row(tmp_path, victim, f"| {victim} | here | MIT |  | none |")
    code = main(["licenses", "check", "--file", str(inventory), "--db-url",
                 f"sqlite:///{demo_db}", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    failed = [r for r in data["results"] if r["verdict"] == "fail"]
    assert [r["model"] for r in failed] == [victim]
    assert failed[0]["reason"].startswith("link missing")
    assert all(r["sources"] == ["warehouse"] for r in data["results"])


def test_without_a_default_warehouse_only_declared_models_are_checked(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["licenses", "check"]) == 2
    captured = capsys.readouterr()
    assert "no warehouse at" in captured.err and "nothing to check" in captured.err
    assert not (tmp_path / "no-root").exists()  # reading never creates the warehouse
    junit = tmp_path / "declared.xml"
    assert main(["licenses", "check", "--model", "tfidf-svd", "--model", "acme/secret",
                 "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "no row for model 'acme/secret'" in out
    suite, cases = junit_cases(junit)
    assert isinstance(cases["acme/secret"].result[0], Failure)
    assert cases["tfidf-svd"].is_passed
    # the inventory's other rows are informational: skipped, never failures
    assert suite.failures == 1 and suite.skipped == len(cases) - 2
    assert all(isinstance(c.result[0], Skipped) for n, c in cases.items()
               if n not in ("tfidf-svd", "acme/secret"))


def test_an_explicit_missing_warehouse_is_an_error(tmp_path, capsys):
    code = main(["licenses", "check", "--file", str(INVENTORY), "--db-url",
                 f"sqlite:///{tmp_path / 'none.db'}", "--model", "tfidf-svd"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("mlobs: error: no warehouse at") and err.count("\n") == 1


def test_a_profile_imported_by_name_adds_its_models(tmp_path, capsys, monkeypatch):
    module = "licenses_test_profiles_mod"
    (tmp_path / f"{module}.py").write_text(
        "import mlobs\n"
        "class Profiles:\n"
        "    ASR = mlobs.AnalysisProfile('asr', models={'openai/whisper-small'})\n"
        "TEXT = mlobs.AnalysisProfile('text', models=['tfidf-svd'])\n"
        "NOT_A_PROFILE = 3\n")
    (tmp_path / "MODEL_LICENSES.md").write_text(
        HEADER + "| openai/whisper-small | Hugging Face | Apache-2.0 | "
        "https://huggingface.co/openai/whisper-small | none |\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    assert main(["licenses", "check", "--profile", f"{module}:Profiles.ASR"]) == 0
    assert "openai/whisper-small  Apache-2.0  ok" in capsys.readouterr().out
    assert main(["licenses", "check", "--profile", f"{module}:Profiles.ASR",
                 "--profile", f"{module}:TEXT"]) == 1
    assert "no row for model 'tfidf-svd'" in capsys.readouterr().out
    for spec, words in [(f"{module}:NOT_A_PROFILE", "expected an AnalysisProfile, got int"),
                        (f"{module}:MISSING", "has no attribute MISSING"),
                        ("no_such_module_xyz:P", "cannot import no_such_module_xyz"),
                        (module, "expected MODULE:ATTRIBUTE")]:
        assert main(["licenses", "check", "--profile", spec]) == 1
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err


def test_a_malformed_inventory_is_one_line_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "MODEL_LICENSES.md"
    bad.write_text(HEADER + "| m | s | MIT | https://x.org |\n")
    assert main(["licenses", "check", "--file", str(bad), "--model", "m"]) == 1
    err = capsys.readouterr().err
    assert err == f"mlobs: error: {bad}:3: 4 cell(s), the header has 5 (write a | inside " \
                  "a cell as \\|)\n"
    assert main(["licenses", "check", "--file", str(tmp_path / "nope.md"),
                 "--model", "m"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["licenses", "check", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out and "nothing could be checked" in out
    assert "CC-BY-NC*" in out

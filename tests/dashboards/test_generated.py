"""The committed dashboards: fresh (what the code generates), at least the five the
docs describe, loadable by the SDK (``Dashboard.from_json`` round trip) and free of
lint problems."""

import json

import pytest

pytest.importorskip("mlobs_dashboards")

from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.cog.plugins import register_default_plugins  # noqa: E402
from grafana_foundation_sdk.cog.runtime import UnknownDataquery  # noqa: E402
from grafana_foundation_sdk.models.dashboard import Dashboard  # noqa: E402

from mlobs_dashboards import generate, lint, postgres  # noqa: E402
from mlobs_dashboards.__main__ import PROVISIONING, main  # noqa: E402
from mlobs_dashboards.postgres import PostgresQuery  # noqa: E402

COMMITTED = sorted(generate.GENERATED_DIR.glob("*.json"))
DOCUMENTED = {"mlobs-overview", "mlobs-component", "mlobs-memory", "mlobs-cache",
              "mlobs-quality"}


def test_the_committed_json_is_what_the_code_generates():
    assert generate.differences(generate.GENERATED_DIR) == []
    assert main(["check"]) == 0


def test_check_reports_a_stale_missing_or_extra_file(tmp_path, capsys):
    generate.write(tmp_path)
    (tmp_path / "mlobs-cache.json").write_text("{}\n")
    (tmp_path / "mlobs-memory.json").unlink()
    (tmp_path / "mlobs-old.json").write_text("{}\n")
    problems = generate.differences(tmp_path)
    assert len(problems) == 3, problems
    assert main(["check", "--dir", str(tmp_path)]) == 1
    assert "make dashboards" in capsys.readouterr().err


def test_generate_writes_every_dashboard_and_removes_only_its_stale_files(tmp_path):
    (tmp_path / "mlobs-gone.json").write_text("{}\n")
    (tmp_path / "someone-elses.json").write_text("{}\n")
    assert main(["generate", "--dir", str(tmp_path)]) == 0
    assert {p.stem for p in tmp_path.glob("*.json")} == DOCUMENTED | {"someone-elses"}
    assert generate.differences(tmp_path) == []


def test_at_least_the_five_documented_dashboards_are_committed():
    assert {path.stem for path in COMMITTED} >= DOCUMENTED
    for path in COMMITTED:
        board = generate.load(path)
        assert board["uid"] == path.stem
        assert len(list(lint.panels(board))) >= 5, path.name


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_dashboard_round_trips_through_the_sdk(path):
    register_default_plugins()
    postgres.register()
    data = generate.load(path)
    board = Dashboard.from_json(data)
    assert json.loads(JSONEncoder().encode(board)) == data
    # every query decodes as a typed variant (PostgreSQL: the registered one), none as
    # the SDK's untyped fallback
    targets = [t for p in board.panels or [] for t in getattr(p, "targets", None) or []]
    assert targets and not any(isinstance(t, UnknownDataquery) for t in targets)
    assert any(isinstance(t, PostgresQuery) for t in targets)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_dashboard_has_no_lint_problems(path):
    assert lint.lint(generate.load(path), lint.provisioned_datasources(PROVISIONING)) == []


def test_lint_command_passes_on_the_committed_dashboards(capsys):
    assert main(["lint"]) == 0
    assert f"{len(COMMITTED)} dashboards, 0 problems" in capsys.readouterr().out

"""``mlobs gate`` and ``mlobs gate run`` over a real warehouse (SQLite and PostgreSQL), its
reports (JUnit, Markdown, JSON, ``gate_results``) and pytest-benchmark input."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from junitparser import Failure, JUnitXml
from sqlalchemy import func, select

from mlobs.analysis.gate import evaluate_gate
from mlobs.analysis.gate_inputs import RunSet, load_benchmark_json, load_run_set
from mlobs.analysis.gate_reports import RESULTS
from mlobs.cli.main import main
from mlobs.core.errors import ConfigError
from mlobs.core.records import ComponentRecord, ModelRef, RunRecord
from mlobs.core.signature import model_signature
from mlobs.warehouse.engine import create_warehouse_engine
from mlobs.warehouse.migrate import upgrade
from mlobs.warehouse.store import WarehouseStore

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
MODELS = [ModelRef(name="openai/whisper-small", version="1", engine="torch", device="cpu")]
SIG = model_signature(MODELS)


def _record(db_url, release, samples_ms, *, start, calls=1):
    """One run per sample, labelled release=<release>; each run invokes every component
    ``calls`` times with that sample's duration (component → list of durations)."""
    runs, records = [], []
    n = len(next(iter(samples_ms.values())))
    for i in range(n):
        at = start + timedelta(minutes=i)
        run = RunRecord(run_id=str(uuid.uuid4()), platform_id="yt", video_id=f"v{i}",
                        status="ok", started_at=at, pipeline_version=release,
                        profile="baseline", labels={"release": release})
        runs.append(run)
        for name, durations in samples_ms.items():
            for _ in range(calls):
                records.append(ComponentRecord(
                    component_run_id=str(uuid.uuid4()), run_id=run.run_id, component=name,
                    attempt=1, required=True, status="ok", started_at=at,
                    finished_at=at + timedelta(milliseconds=durations[i]),
                    duration_ms=durations[i], models_used=list(MODELS), model_signature=SIG,
                    peak_rss_bytes=100_000_000))
    with WarehouseStore(db_url) as store:
        store.write(runs, records)


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    """Away from the repository's own perf-budgets.toml, which ``mlobs gate`` would read."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def releases(db_url):
    upgrade(db_url)
    rng = np.random.default_rng(11)
    noisy = lambda n, s=1.0: [float(v) for v in 100 * s * np.exp(0.02 * rng.standard_normal(n))]  # noqa: E731,E501
    _record(db_url, "rc-1", {"asr": noisy(10), "ocr": noisy(10)}, start=T0, calls=3)
    _record(db_url, "rc-2", {"asr": noisy(10, 1.2), "ocr": noisy(10)},
            start=T0 + timedelta(days=1), calls=3)
    return db_url


def test_gate_finds_the_regression_and_writes_every_report(releases, tmp_path, capsys):
    budgets = tmp_path / "perf-budgets.toml"
    budgets.write_text('[[budget]]\ncomponent = "ocr"\nmax_p95_duration_ms = 50\n')
    junit, markdown = tmp_path / "gate.xml", tmp_path / "gate.md"
    code = main(["gate", "--baseline-label", "release=rc-1", "--candidate-label",
                 "release=rc-2", "--budgets", str(budgets), "--junit", str(junit),
                 "--markdown", str(markdown), "--db-url", releases])
    out = capsys.readouterr()
    assert code == 1
    assert "regression" in out.out and "breach" in out.out
    assert "1 regression, 1 breach" in out.err

    xml = JUnitXml.fromfile(str(junit))
    cases = [case for suite in xml for case in suite]
    failed = {(c.classname, c.name) for c in cases
              if any(isinstance(r, Failure) for r in c.result)}
    assert failed == {(f"mlobs.gate.asr [{SIG[:12]}]", "duration_ms (computed)"),
                      (f"mlobs.gate.ocr [{SIG[:12]}]", "budget: p95_duration_ms")}
    assert sum(s.failures for s in xml) == 2
    assert sum(s.tests for s in xml) == len(cases) > 2

    text = markdown.read_text()
    assert text.startswith("## mlobs gate: failed")
    table = [line for line in text.splitlines() if line.startswith("| asr |")]
    assert table and "regression" in table[0]
    lines = text.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| component |")))
    columns = lines[header].count(" | ") + 1
    assert lines[header + 1] == "|" + "---|" * columns  # a GitHub table: header, rule, rows
    for row in lines[header + 2:]:
        if not row.startswith("|"):
            break
        assert row.replace("\\|", "").count(" | ") + 1 == columns

    engine = create_warehouse_engine(releases)
    with engine.connect() as conn:
        rows = conn.execute(select(RESULTS.c.component, RESULTS.c.check, RESULTS.c.verdict,
                                   RESULTS.c.gate_id)).all()
    engine.dispose()
    assert ("asr", "duration_ms", "regression") in {r[:3] for r in rows}
    assert ("ocr", "p95_duration_ms", "breach") in {r[:3] for r in rows}
    assert len({r.gate_id for r in rows}) == 1


def test_json_output_and_version_selectors_agree_with_labels(releases, capsys):
    code = main(["gate", "--baseline-version", "rc-1", "--candidate-version", "rc-2",
                 "--json", "--no-write", "--db-url", releases])
    document = json.loads(capsys.readouterr().out)
    assert code == document["exit_code"] == 1
    assert {(c["component"], c["verdict"]) for c in document["components"]} == {
        ("asr", "regression"), ("ocr", "pass")}
    by_label = evaluate_gate(load_run_set(releases, RunSet(labels={"release": "rc-1"})),
                             load_run_set(releases, RunSet(labels={"release": "rc-2"})))
    assert {(c["component"], c["check"], c["verdict"]) for c in document["checks"]} == {
        (c.component, c.check, c.verdict) for c in by_label.checks}
    engine = create_warehouse_engine(releases)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RESULTS)).scalar_one() == 0
    engine.dispose()


def test_a_run_set_that_matches_nothing_is_an_error_not_a_pass(releases, capsys):
    code = main(["gate", "--baseline-label", "release=rc-1", "--candidate-label",
                 "release=typo", "--no-write", "--db-url", releases])
    assert code == 1
    assert "candidate run set (label release=typo) matched no run" in capsys.readouterr().err


def test_a_component_on_one_side_only_is_unknown_and_needs_no_more_runs(releases, capsys):
    rng = np.random.default_rng(16)
    _record(releases, "rc-3", {"asr": [float(v) for v in 100 * np.exp(
        0.02 * rng.standard_normal(10))], "summary": [50.0] * 10},
        start=T0 + timedelta(days=2))
    code = main(["gate", "--baseline-label", "release=rc-1", "--candidate-label",
                 "release=rc-3", "--no-write", "--json", "--db-url", releases])
    checks = json.loads(capsys.readouterr().out)["checks"]
    summary = [c for c in checks if c["component"] == "summary" and c["kind"] == "comparison"]
    ocr = [c for c in checks if c["component"] == "ocr" and c["check"] == "duration_ms"]
    assert code == 2 and summary and ocr
    assert all(c["verdict"] == "unknown" and c["runs_needed"] is None for c in summary + ocr)
    assert "only in the candidate" in summary[0]["message"]
    assert "only in the baseline" in ocr[0]["message"]


def test_the_same_runs_both_sides_pass_and_json_follows_unknown_exit(releases, capsys):
    code = main(["gate", "--baseline-label", "release=rc-1", "--candidate-label",
                 "release=rc-1", "--no-write", "--json", "--unknown-exit", "0",
                 "--db-url", releases])
    document = json.loads(capsys.readouterr().out)
    assert code == document["exit_code"] == 0
    assert {c["verdict"] for c in document["checks"]} == {"pass"}


def test_per_run_values_are_the_median_of_the_runs_invocations(releases):
    side = load_run_set(releases, RunSet(labels={"release": "rc-1"}))
    asr = side.groups[("asr", SIG)]
    assert len(asr.per_run[("computed", "duration_ms")]) == 10  # 10 runs, 30 invocations
    assert asr.pooled().total == 30 and asr.pooled("baseline").total == 30
    assert side.runs == 10


def _benchmark_json(path, samples_s, *, raw=True):
    benchmarks = []
    for name, data in samples_s.items():
        stats = {"mean": float(np.mean(data)), "stddev": float(np.std(data, ddof=1)),
                 "rounds": len(data), "min": min(data), "max": max(data)}
        if raw:
            stats["data"] = list(data)
        benchmarks.append({"name": name, "fullname": f"tests/test_b.py::{name}",
                           "stats": stats, "extra_info": {"ratio": 0.5, "note": "text"}})
    path.write_text(json.dumps({"benchmarks": benchmarks, "version": "5.1.0"}))
    return path


def test_pytest_benchmark_files_give_the_verdicts_of_the_same_samples_in_the_warehouse(
        sqlite_url, tmp_path):
    rng = np.random.default_rng(12)
    base = {"asr": list(0.1 * np.exp(0.02 * rng.standard_normal(9))),
            "ocr": list(0.05 * np.exp(0.02 * rng.standard_normal(9)))}
    cand = {"asr": list(0.1 * 1.08 * np.exp(0.02 * rng.standard_normal(9))),
            "ocr": list(0.05 * np.exp(0.02 * rng.standard_normal(9)))}
    from_files = evaluate_gate(load_benchmark_json(_benchmark_json(tmp_path / "a.json", base)),
                               load_benchmark_json(_benchmark_json(tmp_path / "b.json", cand)))
    upgrade(sqlite_url)
    to_ms = lambda side: {k: [float(v) * 1000 for v in vs] for k, vs in side.items()}  # noqa: E731
    _record(sqlite_url, "rc-1", to_ms(base), start=T0)
    _record(sqlite_url, "rc-2", to_ms(cand), start=T0 + timedelta(days=1))
    from_warehouse = evaluate_gate(load_run_set(sqlite_url, RunSet(labels={"release": "rc-1"})),
                                   load_run_set(sqlite_url, RunSet(labels={"release": "rc-2"})))

    def duration_checks(report):  # the warehouse adds error-rate and memory checks: the
        # adjusted p differs by their count, the raw p and the verdict do not
        return {c.component: (c.verdict, round(c.change, 9), round(c.p_value, 9))
                for c in report.checks if c.check == "duration_ms"}

    assert duration_checks(from_files) == duration_checks(from_warehouse)
    assert duration_checks(from_files)["asr"][0] == "regression"
    assert load_benchmark_json(tmp_path / "a.json").figures == {("asr", "ratio"): 0.5,
                                                                ("ocr", "ratio"): 0.5}


def test_pytest_benchmark_summaries_without_raw_data_use_welch(tmp_path, capsys):
    rng = np.random.default_rng(13)
    a = _benchmark_json(tmp_path / "a.json", {"asr": list(0.1 + 0.001 * rng.standard_normal(20))},
                        raw=False)
    b = _benchmark_json(tmp_path / "b.json", {"asr": list(0.12 + 0.001 * rng.standard_normal(20))},
                        raw=False)
    code = main(["gate", "--baseline-json", str(a), "--candidate-json", str(b), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    check = next(c for c in document["checks"] if c["check"] == "duration_ms")
    assert check["verdict"] == "regression" and check["n_baseline"] == 20
    assert check["change"] == pytest.approx(0.2, abs=0.02)


@pytest.mark.parametrize("content, message", [
    ("not json", "cannot read the benchmark file"),
    ('{"benchmarks": {}}', "not a pytest-benchmark JSON file"),
    ('{"benchmarks": [{"name": "x"}]}', "has no 'stats' object"),
    ('{"benchmarks": [{"name": "x", "stats": {"data": [0.1, "slow"]}}]}', "not a duration"),
    ('{"benchmarks": [{"name": "x", "stats": {"mean": 0.1}}]}', "neither raw 'data'"),
])
def test_malformed_benchmark_files_are_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_benchmark_json(path)


def test_gate_arguments_are_checked(sqlite_url, tmp_path, capsys):
    upgrade(sqlite_url)
    assert main(["gate", "--baseline-version", "1", "--db-url", sqlite_url]) == 1
    assert "name the candidate" in capsys.readouterr().err
    assert main(["gate", "--candidate-version", "1", "--db-url", sqlite_url]) == 1
    assert "only the budgets" in capsys.readouterr().err
    path = _benchmark_json(tmp_path / "a.json", {"asr": [0.1, 0.2]})
    assert main(["gate", "--candidate-json", str(path), "--candidate-version", "1",
                 "--baseline-json", str(path)]) == 1
    assert "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gate", "--candidate-label", "no-equals-sign"])
    assert "--candidate-label" in capsys.readouterr().err


PIPELINE = textwrap.dedent("""
    import sys, time
    import mlobs
    factor = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    with mlobs.run("test", "gate") as run:
        for name in ("tokenize", "embed"):
            with run.component(name):
                deadline = time.perf_counter() + 0.002 * factor
                while time.perf_counter() < deadline:
                    pass
""")


def test_gate_run_alternates_labelled_commands_and_gates_them(sqlite_url, tmp_path,
                                                               monkeypatch, capsys):
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path / "root"))
    upgrade(sqlite_url)
    command = f"{sys.executable} {script}"
    code = main(["gate", "run", "--baseline-cmd", command, "--candidate-cmd", command,
                 "-n", "3", "--warmup", "1", "--db-url", sqlite_url, "--json"])
    out = capsys.readouterr()
    document = json.loads(out.out)
    assert code == 2  # 3 runs a side: below the 6 the gate needs
    assert {c["verdict"] for c in document["checks"] if c["check"] == "duration_ms"} == {
        "unknown"}
    assert "round 3/3" in out.err and "warm-up round 1/1" in out.err
    engine = create_warehouse_engine(sqlite_url)
    from mlobs.warehouse.labels import LABELS
    with engine.connect() as conn:
        sides = dict(conn.execute(select(LABELS.c.value, func.count())
                                  .where(LABELS.c.key == "mlobs.gate.side")
                                  .group_by(LABELS.c.value)).all())
        stored = conn.execute(select(func.count()).select_from(RESULTS)).scalar_one()
    engine.dispose()
    assert sides == {"baseline": 3, "candidate": 3, "warmup": 2}
    assert stored == len(document["checks"])


def test_gate_run_says_when_a_command_fails_or_records_nothing(sqlite_url, tmp_path,
                                                              monkeypatch, capsys):
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path / "root"))
    upgrade(sqlite_url)
    code = main(["gate", "run", "--baseline-cmd", "echo broken; exit 3", "--candidate-cmd",
                 "true", "-n", "2", "--warmup", "0", "--db-url", sqlite_url])
    err = capsys.readouterr().err
    assert code == 1 and "exited 3" in err and "broken" in err
    code = main(["gate", "run", "--baseline-cmd", "true", "--candidate-cmd", "true",
                 "-n", "2", "--warmup", "0", "--db-url", sqlite_url])
    err = capsys.readouterr().err
    assert code == 1 and "recorded no run" in err and "MLOBS_RUN_LABELS" in err
    marker = tmp_path / "child-survived"
    code = main(["gate", "run", "--baseline-cmd", f"(sleep 3; touch {marker}) & sleep 30",
                 "--candidate-cmd", "true", "-n", "2", "--warmup", "0", "--timeout-s", "0.5",
                 "--db-url", sqlite_url])
    assert code == 1 and "ran past 0.5 s" in capsys.readouterr().err
    import time
    time.sleep(3.5)
    assert not marker.exists()  # the command's children were stopped with it

"""``mlobs runs show`` prints a run's configuration, environment and resolved models as
key/value blocks a person reads; ``--json`` keeps the records whole."""

from __future__ import annotations

import json

from mlobs.cli.main import main
from mlobs.cli.run_details import block
from mlobs.warehouse.store import WarehouseStore


def test_environment_is_a_block_of_dotted_keys(sqlite_url, make_run, capsys):
    run, components = make_run()
    run.environment["libs"] = ["library-number-%02d" % n for n in range(12)]
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        store.write([run], components)
    assert main(["runs", "show", run.run_id, "--db-url", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert '{"' not in out  # no JSON line
    lines = out.splitlines()
    fields = lines[:next(i for i, line in enumerate(lines) if line.startswith("component "))]
    assert max(len(line) for line in fields) <= 89  # config_hash's 64 characters + names
    env = lines[lines.index("environment:") + 1:]
    env = env[:env.index("")]
    pairs = dict(line.split(None, 1) for line in env if not line.startswith("    "))
    assert pairs["packages.torch"] == "2.5.1" and pairs["host"] == "gpu-07"
    assert pairs["gpus"] == "NVIDIA A10G, NVIDIA A10G" and pairs["seed"] == "1234"
    # a long list wraps under its value column
    at = next(i for i, line in enumerate(env) if line.split()[0] == "libs")
    column = env[at].index("library-number-00")
    assert env[at + 1].startswith(" " * column + "library-number-")
    config = lines[lines.index("config:") + 1:]
    config = dict(line.split() for line in config[:config.index("")])
    assert config == {"asr.beam_size": "5", "asr.language": "null",
                      "chunking.max_tokens": "512", "sample_fps": "0.5"}
    assert "resolved_models:" in lines
    assert any(line.split() == ["embedding", "BAAI/bge-reranker-base:2cfc18c9,",
                                "intfloat/e5-base-v2:1c644c92"] for line in lines)

    assert main(["runs", "show", run.run_id, "--json", "--db-url", sqlite_url]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["environment"] == run.environment


def test_block_numbers_lists_of_mappings_and_marks_empty_values():
    text = block("environment", {"gpus": [{"name": "A10G"}, {"name": "T4"}], "none": [],
                                 "flags": {"a": True}})
    assert text.splitlines() == ["environment:", "  gpus.0.name  A10G", "  gpus.1.name  T4",
                                 "  none         -", "  flags.a      true"]

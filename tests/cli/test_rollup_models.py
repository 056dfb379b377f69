"""The rollup's model column names the models behind each model_signature."""

from __future__ import annotations

from mlobs.cli.main import main
from mlobs.warehouse.store import WarehouseStore


def test_the_model_column_shows_names_and_a_short_signature(sqlite_url, make_run, capsys):
    run, components = make_run()
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        store.write([run], components)
    by_name = {c.component: c for c in components}
    assert main(["rollup", "--no-write", "--db-url", sqlite_url]) == 0
    rows = {line.split()[0]: line.split()[1] for line in
            capsys.readouterr().out.splitlines()[2:]}
    asr = by_name["asr"].model_signature
    embedding = by_name["embedding"].model_signature
    assert rows["asr"] == f"openai/whisper-small@{asr[:8]}"
    # two models: both names, sorted
    assert rows["embedding"] == f"BAAI/bge-reranker-base+intfloat/e5-base-v2@{embedding[:8]}"
    assert rows["cleaning"] == "-"  # no model

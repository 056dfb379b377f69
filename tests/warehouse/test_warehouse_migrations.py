"""Alembic migrations: up/down/up, schema equal to the models, and the schema check."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from mlobs.errors import SchemaOutOfDateError, WarehouseError
from mlobs.warehouse import migrate
from mlobs.warehouse.engine import create_warehouse_engine
from mlobs.warehouse.models import TABLE_NAMES, Base
from mlobs.warehouse.store import WarehouseStore


def _tables(db_url: str) -> set[str]:
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names()) - {migrate.VERSION_TABLE}
    finally:
        engine.dispose()


def test_head_is_the_initial_revision_and_scripts_are_found():
    assert migrate.head_revision() == "0001"
    assert (migrate.migrations_dir() / "env.py").is_file()


def test_migrations_do_not_import_the_live_models():
    directory = migrate.migrations_dir()
    for path in [directory / "env.py", *sorted((directory / "versions").glob("*.py"))]:
        source = path.read_text()
        assert "warehouse.models" not in source, path
        assert "target_metadata=None" in source or path.name != "env.py"


def test_upgrade_downgrade_upgrade(db_url):
    assert migrate.current_revision(db_url) is None
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()
    assert _tables(db_url) == set(TABLE_NAMES)

    migrate.downgrade(db_url, "base")
    assert migrate.current_revision(db_url) is None
    assert _tables(db_url) == set()

    migrate.upgrade(db_url, "head")
    assert migrate.current_revision(db_url) == "0001"
    assert _tables(db_url) == set(TABLE_NAMES)


def test_migrated_schema_matches_the_models(db_url):
    migrate.upgrade(db_url)
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_opening_an_empty_database_says_what_to_run(db_url):
    with pytest.raises(SchemaOutOfDateError) as caught:
        WarehouseStore(db_url)
    message = str(caught.value)
    assert "mlobs db upgrade" in message
    assert "revision None (empty)" in message
    assert "needs 0001" in message


def test_opening_a_downgraded_database_is_refused(sqlite_url):
    migrate.upgrade(sqlite_url)
    migrate.downgrade(sqlite_url, "base")
    with pytest.raises(SchemaOutOfDateError, match="mlobs db upgrade"):
        WarehouseStore(sqlite_url)


def test_unknown_newer_revision_is_refused_with_its_own_advice(sqlite_url):
    migrate.upgrade(sqlite_url)
    engine = create_warehouse_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        with pytest.raises(SchemaOutOfDateError, match="does not know"):
            migrate.check_schema(engine)
    finally:
        engine.dispose()


def test_init_if_new_creates_the_schema_of_an_empty_database(db_url):
    store = WarehouseStore(db_url, init_if_new=True)
    store.close()
    assert migrate.current_revision(db_url) == "0001"


def test_init_if_new_leaves_a_foreign_database_alone(sqlite_url):
    engine = create_warehouse_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE something_else (id INTEGER)"))
    engine.dispose()
    with pytest.raises(SchemaOutOfDateError, match="tables but no mlobs revision"):
        WarehouseStore(sqlite_url, init_if_new=True)
    assert _tables(sqlite_url) == {"something_else"}


@pytest.mark.postgres
def test_password_is_hidden_in_schema_errors(pg_url):
    with_password = pg_url.replace("postgres@", "postgres:s3cret@", 1)
    with pytest.raises(SchemaOutOfDateError) as caught:
        WarehouseStore(with_password)
    assert "s3cret" not in str(caught.value)
    assert "***" in str(caught.value)


def test_unknown_revision_is_a_warehouse_error(sqlite_url):
    with pytest.raises(WarehouseError, match="0042"):
        migrate.upgrade(sqlite_url, "0042")


def test_alembic_config_from_url_runs_env_with_its_own_engine(sqlite_url):
    from alembic import command

    command.upgrade(migrate.alembic_config(sqlite_url), "head")
    assert migrate.current_revision(sqlite_url) == "0001"

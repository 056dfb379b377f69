"""Engine setup: SQLite pragmas, PostgreSQL driver choice, unsupported URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from mlobs.core.errors import WarehouseError
from mlobs.warehouse.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_warehouse_engine,
    db_url_option,
    display_url,
    normalize_url,
)


def test_sqlite_creates_its_directory_and_sets_wal_busy_timeout_and_foreign_keys(sqlite_url):
    engine = create_warehouse_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()
    assert Path(sqlite_url.removeprefix("sqlite:///")).is_file()


def test_sqlite_transactions_are_real(sqlite_url):
    # SQLAlchemy emits BEGIN itself, so DDL rolls back too.
    engine = create_warehouse_engine(sqlite_url)
    try:
        with pytest.raises(RuntimeError):
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE t (x INTEGER)"))
                raise RuntimeError("roll back")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 't'")
                                ).scalar() == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["postgresql://u:pw@db:5432/mlobs",
                                 "postgres://u:pw@db/mlobs",
                                 "postgresql+psycopg://u:pw@db/mlobs"])
def test_postgresql_urls_use_psycopg(url):
    assert normalize_url(url).drivername == "postgresql+psycopg"
    engine = create_warehouse_engine(url)  # no connection is made yet
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping is True
        assert engine.pool._recycle == 1800
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "oracle://h/db", "not a url"])
def test_unsupported_urls_are_refused_clearly(url):
    with pytest.raises(WarehouseError, match="warehouse URL"):
        create_warehouse_engine(url)


def test_display_url_hides_the_password():
    assert display_url("postgresql+psycopg://u:secret@db/mlobs") == \
        "postgresql+psycopg://u:***@db/mlobs"


@pytest.mark.parametrize("db_url, option", [
    ("postgresql+psycopg://mlobs:s3cret@db:5432/mlobs",
     "--db-url 'postgresql+psycopg://mlobs:<password>@db:5432/mlobs'"),
    ("postgresql+psycopg://mlobs@db/mlobs", "--db-url 'postgresql+psycopg://mlobs@db/mlobs'"),
    ("sqlite:////tmp/x y/w.db", "--db-url 'sqlite:////tmp/x y/w.db'"),
])
def test_commands_suggested_in_messages_never_carry_a_masked_password(db_url, option):
    """A hint pasted as printed must not try the password '***'; the real one is never
    printed."""
    assert db_url_option(db_url) == option

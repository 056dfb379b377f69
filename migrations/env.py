"""Alembic environment of the mlobs warehouse.

Run through ``mlobs db upgrade`` (``mlobs.warehouse.migrate``), which hands over an open
connection in ``config.attributes["connection"]``; the ``alembic`` command line works too,
with the URL in the ``sqlalchemy.url`` option.

The migrations are hand-written and never import the live models (``target_metadata`` is
None): each revision describes the schema as it was at that revision. On SQLite, ALTERs go
through batch mode (table copy), with foreign keys off so that copying a parent table does
not cascade-delete its children; all revisions of one command run in one transaction.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from mlobs.warehouse.engine import create_warehouse_engine

config = context.config


def _run_online(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if connection.in_transaction():
        # The caller owns the transaction (and the foreign-key setting).
        _configure_and_run(connection, sqlite)
        return
    # PRAGMA foreign_keys is ignored inside a transaction: set it on the raw connection.
    raw = connection.connection.driver_connection if sqlite else None
    if raw is not None:
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        with connection.begin():
            _configure_and_run(connection, sqlite)
    finally:
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=ON")


def _configure_and_run(connection: Connection, sqlite: bool) -> None:
    context.configure(connection=connection, target_metadata=None, render_as_batch=sqlite)
    context.run_migrations()


def run_migrations() -> None:
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=None,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    engine = create_warehouse_engine(url)
    try:
        with engine.connect() as conn:
            _run_online(conn)
    finally:
        engine.dispose()


run_migrations()

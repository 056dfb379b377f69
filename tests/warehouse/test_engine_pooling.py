"""Connection pooling for worker processes: pre-ping, recycle, fork-safe engines."""

from __future__ import annotations

import multiprocessing
import os

import pytest
from sqlalchemy import text

from mlobs.warehouse.engine import PG_POOL_RECYCLE_S, create_warehouse_engine


def _backend_pid_sql(engine) -> str:
    return ("SELECT pg_backend_pid()" if engine.dialect.name == "postgresql"
            else "SELECT 1")


def _child_uses_engine(engine, queue) -> None:
    try:
        with engine.connect() as conn:
            value = conn.execute(text(_backend_pid_sql(engine))).scalar_one()
        queue.put(("ok", value))
    except BaseException as exc:  # noqa: BLE001
        queue.put(("error", repr(exc)))
    finally:
        engine.dispose()


def test_a_forked_child_gets_its_own_connections_and_the_parents_keep_working(db_url):
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            parent_value = conn.execute(text(_backend_pid_sql(engine))).scalar_one()
            parent_connection_id = id(conn.connection.driver_connection)
        # The connection is back in the pool (checked in) when the fork happens.
        assert engine.pool.checkedin() == 1
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        children = [context.Process(target=_child_uses_engine,
                                    args=(engine, queue))
                    for _ in range(3)]
        for child in children:
            child.start()
        results = [queue.get(timeout=60) for _ in children]
        for child in children:
            child.join(timeout=60)
        assert [child.exitcode for child in children] == [0, 0, 0]
        assert all(status == "ok" for status, _ in results), results
        if engine.dialect.name == "postgresql":
            # Each child talked to the server through a session of its own.
            assert parent_value not in {value for _, value in results}
        # The parent's pooled connection survived the children (not closed by them).
        with engine.connect() as conn:
            assert id(conn.connection.driver_connection) == parent_connection_id
            assert conn.execute(text(_backend_pid_sql(engine))).scalar_one() == parent_value
    finally:
        engine.dispose()


def test_a_connection_from_another_process_is_never_handed_out(db_url):
    """The checkout guard: a pooled connection opened under another pid is replaced."""
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            first = conn.connection.driver_connection
        # Pretend the pooled connection was opened by another process.
        record = engine.pool._pool.queue[0]  # type: ignore[attr-defined]
        record.info["mlobs_pid"] = os.getpid() + 1
        with engine.connect() as conn:
            assert conn.connection.driver_connection is not first
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgresql_engine_pre_pings_and_recycles(pg_url):
    engine = create_warehouse_engine(pg_url)
    try:
        assert engine.pool._pre_ping is True
        assert engine.pool._recycle == PG_POOL_RECYCLE_S
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # The server drops the pooled connection: pre-ping replaces it at checkout.
        admin = create_warehouse_engine(pg_url)
        try:
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        finally:
            admin.dispose()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()

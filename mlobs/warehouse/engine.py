"""Creating the SQLAlchemy engine of a warehouse URL (ARCHITECTURE §6).

Supported URLs:

* ``sqlite:///<path>`` — the embedded default. The parent directory is created; every
  connection gets ``journal_mode=WAL`` (readers do not block the writer),
  ``busy_timeout`` (a writer waits for the lock instead of failing at once) and
  ``foreign_keys=ON`` (cascades work). SQLAlchemy emits ``BEGIN`` itself so that DDL and
  reads are transactional too (the ``sqlite3`` module's legacy mode skips them).
* ``postgresql+psycopg://...`` (``postgresql://`` and ``postgres://`` are rewritten to
  psycopg 3) — pooled with ``pool_pre_ping`` (a connection the server or a proxy dropped
  is replaced at checkout instead of failing the write) and ``pool_recycle``
  (:data:`PG_POOL_RECYCLE_S`).

Engines are fork-safe (SQLAlchemy, "Using Connection Pools with Multiprocessing or
os.fork()"): a connection belongs to the process that opened it. In a forked child,
every engine made here drops the parent's pooled connections without closing them
(``engine.dispose(close=False)`` from an ``os.register_at_fork`` hook), so the child
opens its own and the parent's keep working; as a second guard, a connection checked
out in another process than the one that opened it is discarded (never closed, which
would end the parent's session) and replaced.
"""

from __future__ import annotations

import functools
import json
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from mlobs.core.errors import ConfigError, WarehouseError

#: How long a SQLite writer waits for the database lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Recycle pooled PostgreSQL connections older than this (servers and proxies drop idle ones).
PG_POOL_RECYCLE_S = 1800

# JSON columns refuse NaN and infinity on every backend (PostgreSQL's json type rejects
# them, SQLite would store them as text): the same record is valid everywhere or nowhere.
json_dumps = functools.partial(json.dumps, allow_nan=False)


def normalize_url(db_url: str | URL) -> URL:
    """Parse a warehouse URL and pick the driver mlobs uses.

    Args:
        db_url: e.g. ``"sqlite:////var/lib/mlobs/warehouse.db"`` or
            ``"postgresql://user:pw@host:5432/mlobs"``.

    Returns:
        The URL with ``postgresql``/``postgres`` mapped to ``postgresql+psycopg``.

    Raises:
        WarehouseError: the URL cannot be parsed, or names another database or driver.
    """
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise WarehouseError(f"invalid warehouse URL {db_url!r}: {exc}") from exc
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url
    raise WarehouseError(
        f"unsupported warehouse URL {url.render_as_string(hide_password=True)!r}: mlobs "
        "supports sqlite:///<path> and postgresql+psycopg://user@host/db")


def check_sink_url(db_url: str) -> None:
    """Refuse a warehouse URL a sink could never write to, when the sink is configured
    (its records would otherwise wait in the spool for ever).

    Raises:
        ConfigError: ``db_url`` is not a SQLite or PostgreSQL URL (:func:`normalize_url`).
    """
    try:
        normalize_url(db_url)
    except WarehouseError as exc:
        raise ConfigError(str(exc)) from None


def create_warehouse_engine(db_url: str | URL, **engine_kwargs: Any) -> Engine:
    """Create the engine for a warehouse URL (see the module docstring for the settings).

    Args:
        db_url: a SQLite or PostgreSQL URL (:func:`normalize_url`).
        **engine_kwargs: extra ``sqlalchemy.create_engine`` arguments (tests, tuning).

    Returns:
        A new :class:`sqlalchemy.Engine`; the caller disposes of it.

    Raises:
        WarehouseError: unsupported URL, or the SQLite directory cannot be created.
    """
    url = normalize_url(db_url)
    engine_kwargs.setdefault("json_serializer", json_dumps)
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, engine_kwargs)
    else:
        engine_kwargs.setdefault("pool_pre_ping", True)
        engine_kwargs.setdefault("pool_recycle", PG_POOL_RECYCLE_S)
        engine = create_engine(url, **engine_kwargs)
    _make_fork_safe(engine)
    return engine


# -- fork safety ---------------------------------------------------------------------------

#: Engines made by create_warehouse_engine that are still alive (see _after_fork_in_child).
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _make_fork_safe(engine: Engine) -> None:
    _ENGINES.add(engine)

    @event.listens_for(engine, "connect")
    def _remember_pid(_dbapi_connection: Any, connection_record: Any) -> None:
        connection_record.info["mlobs_pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _refuse_foreign(_dbapi_connection: Any, connection_record: Any,
                        connection_proxy: Any) -> None:
        pid = os.getpid()
        if connection_record.info.get("mlobs_pid", pid) != pid:
            # Opened by another process: forget it without closing it (closing would end
            # that process's session); the pool retries with a new connection.
            connection_record.dbapi_connection = connection_proxy.dbapi_connection = None
            raise DisconnectionError(
                f"connection opened in process {connection_record.info['mlobs_pid']}, "
                f"checked out in process {pid}")


def _after_fork_in_child() -> None:
    for engine in list(_ENGINES):
        try:
            engine.dispose(close=False)
        except Exception:  # noqa: BLE001 - never break a fork over a pool
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _sqlite_engine(url: URL, engine_kwargs: dict[str, Any]) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory and not database.startswith("file:"):
        try:
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseError(f"cannot create the directory of {database!r}: {exc}") from exc
    engine = create_engine(url, **engine_kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: SQLAlchemy's "begin" hook below issues BEGIN,
        # and PRAGMAs (which must run outside a transaction) take effect here.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def display_url(engine_or_url: Engine | URL | str) -> str:
    """The URL as safe to print: password replaced by ``***``."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.render_as_string(hide_password=True)


def db_url_option(engine_or_url: Engine | URL | str) -> str:
    """``--db-url '<url>'`` for a command to paste into a shell: a password, never
    printed, appears as ``<password>``, so the command cannot be run with ``***``."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    if url.password is not None:
        url = url.set(password="PASSWORD")
    text = url.render_as_string(hide_password=False).replace(":PASSWORD@", ":<password>@", 1)
    return f"--db-url '{text}'"


def missing_sqlite_file(db_url: str) -> Path | None:
    """The SQLite file of ``db_url`` when it does not exist (reading must not create it)."""
    url = normalize_url(db_url)
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") \
            or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return None if path.exists() else path


def require_sqlite_file(db_url: str) -> None:
    """Refuse a SQLite URL whose file does not exist: reading must not create an empty
    database. The one rule and message of every command that only reads.

    Raises:
        WarehouseError: ``no warehouse at <path>: ...``, with the command that creates it.
    """
    missing = missing_sqlite_file(db_url)
    if missing is not None:
        raise WarehouseError(f"no warehouse at {missing}: record a run, or create it with "
                             f"`mlobs db upgrade {db_url_option(db_url)}`")


def warehouse_schema(engine: Engine) -> str | None:
    """The PostgreSQL schema the warehouse's tables are in: the one ``component_runs``
    resolves to through the connection's ``search_path`` (as SQLAlchemy and Alembic find
    it; e.g. ``?options=-csearch_path%3Dobs`` in the URL), not ``current_schema()``, which
    may be an empty ``$user`` schema. None for SQLite, or when there is no such table.

    Raises:
        WarehouseError: the database cannot be reached.
    """
    if engine.dialect.name != "postgresql":
        return None
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.oid = to_regclass('component_runs')"
            ).scalar_one_or_none()
    except SQLAlchemyError as exc:
        raise WarehouseError(f"cannot read the schema of {display_url(engine)}: {exc}") from exc


def ingestion_clock(dialect_name: str) -> ColumnElement[Any]:
    """The database's own clock as a SQL expression: what ``component_runs.ingested_at``
    is set to, and what an incremental rollup reads its watermark from, so writers on
    several hosts and the rollup share one clock.

    PostgreSQL: ``clock_timestamp()`` (the time of each call, per row, not the
    transaction's start, so a row's time is close to its commit). SQLite: the UTC time
    with microsecond digits, in the text form SQLAlchemy's SQLite ``DateTime`` reads
    (``strftime('%f')`` has millisecond precision; three zeros pad it).
    """
    if dialect_name == "postgresql":
        return func.clock_timestamp()
    return func.strftime("%Y-%m-%d %H:%M:%f000", "now")


@contextmanager
def engine_for(db: str | URL | Engine) -> Iterator[Engine]:
    """``db`` itself when it is an engine, else a warehouse engine disposed at the end."""
    if isinstance(db, Engine):
        yield db
        return
    engine = create_warehouse_engine(db)
    try:
        yield engine
    finally:
        engine.dispose()


class ReadingConnection:
    """``with engine.connect()`` that turns driver errors into WarehouseError."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    def __enter__(self) -> Connection:
        try:
            self._conn = self._engine.connect()
        except SQLAlchemyError as exc:
            raise WarehouseError(f"cannot read the warehouse at {display_url(self._engine)}: "
                                 f"{exc}") from exc
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        assert self._conn is not None
        self._conn.close()
        if isinstance(exc, SQLAlchemyError):
            raise WarehouseError(f"cannot read the warehouse at {display_url(self._engine)}: "
                                 f"{exc}") from exc

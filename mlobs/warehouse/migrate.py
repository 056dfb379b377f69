"""Schema revisions of the warehouse: Alembic upgrade/downgrade and the schema check.

Migrations run only when asked (``mlobs db upgrade``, or ``WarehouseStore(...,
manage_schema=True)`` for the embedded default warehouse), never on import (ARCHITECTURE §6).
The store calls :func:`check_schema` when it opens and refuses any other revision than
:func:`head_revision`, with a message saying what to run.

Every function taking ``db_url`` also accepts an :class:`sqlalchemy.Engine` made by
:func:`mlobs.warehouse.engine.create_warehouse_engine` (used as is, not disposed).
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from mlobs.core.errors import SchemaOutOfDateError, WarehouseError
from mlobs.warehouse.engine import db_url_option, display_url, engine_for, normalize_url

#: Alembic's bookkeeping table; not part of the mlobs schema proper.
VERSION_TABLE = "alembic_version"


def migrations_dir() -> Path:
    """The Alembic script directory shipped with this mlobs.

    Returns:
        ``<package>/_migrations`` in an installed wheel (hatch force-include), else the
        repository's ``migrations/`` next to the package (editable install, checkout).

    Raises:
        WarehouseError: neither exists (a broken installation).
    """
    package_dir = Path(__file__).resolve().parents[1]  # mlobs/
    for candidate in (package_dir / "_migrations", package_dir.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise WarehouseError(f"mlobs migrations not found next to {package_dir} "
                         "(expected _migrations/ inside the package or migrations/ beside it)")


def alembic_config(url_or_connection: str | URL | Connection) -> Config:
    """An Alembic :class:`~alembic.config.Config` for the mlobs migrations.

    Args:
        url_or_connection: a warehouse URL (``sqlalchemy.url``; ``env.py`` opens its own
            engine) or an open connection (``config.attributes["connection"]``; it must not
            be inside a transaction unless the caller wants to own it).
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if isinstance(url_or_connection, Connection):
        cfg.attributes["connection"] = url_or_connection
    else:
        url = normalize_url(url_or_connection).render_as_string(hide_password=False)
        # ConfigParser interpolation: a literal % must be doubled.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@functools.lru_cache(maxsize=1)
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory(str(migrations_dir()))


def head_revision() -> str:
    """The revision this mlobs needs (the single head of the migrations), e.g. ``"0001"``."""
    head = _script_directory().get_current_head()
    if head is None:
        raise WarehouseError("the mlobs migrations have no revision")
    return head


def _run_command(db_url: str | URL | Engine, action: str, revision: str) -> None:
    with engine_for(db_url) as engine:
        try:
            with engine.connect() as conn:
                getattr(command, action)(alembic_config(conn), revision)
        except CommandError as exc:
            raise WarehouseError(f"{action} of {display_url(engine)} to {revision!r} "
                                 f"failed: {exc}") from exc
        except SQLAlchemyError as exc:
            raise WarehouseError(f"{action} of {display_url(engine)} to {revision!r} "
                                 f"failed: {exc}") from exc


def upgrade(db_url: str | URL | Engine, revision: str = "head") -> None:
    """Upgrade the warehouse schema to ``revision`` (all steps in one transaction).

    Raises:
        WarehouseError: unknown revision, unreachable database, or a failing migration
            (nothing of that command is kept).
    """
    _run_command(db_url, "upgrade", revision)


def downgrade(db_url: str | URL | Engine, revision: str) -> None:
    """Downgrade the warehouse schema to ``revision`` (``"base"`` drops every table).

    Raises:
        WarehouseError: as :func:`upgrade`.
    """
    _run_command(db_url, "downgrade", revision)


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current_revision(db_url: str | URL | Engine) -> str | None:
    """The warehouse's revision, or ``None`` when no mlobs migration was applied.

    Raises:
        WarehouseError: the database cannot be reached.
    """
    with engine_for(db_url) as engine:
        try:
            with engine.connect() as conn:
                return _current(conn)
        except SQLAlchemyError as exc:
            raise WarehouseError(f"cannot read the revision of {display_url(engine)}: "
                                 f"{exc}") from exc


def needs_managed_upgrade(engine: Engine) -> bool:
    """True when a managed warehouse should be upgraded: it holds no table at all (new),
    or it is at an older revision this mlobs knows. A database with tables but no mlobs
    revision, or at a revision from a newer mlobs, is left alone."""
    with engine.connect() as conn:
        if not inspect(conn).get_table_names():
            return True
        current = _current(conn)
    known = {script.revision for script in _script_directory().walk_revisions()}
    return current is not None and current != head_revision() and current in known


def check_schema(engine: Engine) -> None:
    """Refuse a warehouse whose schema is not at :func:`head_revision`.

    Raises:
        SchemaOutOfDateError: the revision differs; the message names the current and
            needed revisions and the command to run.
        WarehouseError: the database cannot be reached.
    """
    head = head_revision()
    try:
        with engine.connect() as conn:
            current = _current(conn)
            tables = set(inspect(conn).get_table_names()) - {VERSION_TABLE}
    except SQLAlchemyError as exc:
        raise WarehouseError(f"cannot open the warehouse at {display_url(engine)}: "
                             f"{exc}") from exc
    if current == head:
        return
    url = display_url(engine)
    option = db_url_option(engine)
    upgrade_hint = f"run `mlobs db upgrade {option}`"
    if current is None:
        state = "empty" if not tables else "tables but no mlobs revision"
        raise SchemaOutOfDateError(f"warehouse at {url} is at revision None ({state}), "
                                   f"mlobs needs {head}: {upgrade_hint}")
    known = {script.revision for script in _script_directory().walk_revisions()}
    if current not in known:
        raise SchemaOutOfDateError(
            f"warehouse at {url} is at revision {current}, which this mlobs does not know "
            f"(it needs {head}): install the mlobs that wrote it, or downgrade the warehouse "
            f"with that mlobs (`mlobs db downgrade {head} {option}`)")
    raise SchemaOutOfDateError(f"warehouse at {url} is at revision {current}, mlobs needs "
                               f"{head}: {upgrade_hint}")

"""``mlobs db``: manage the warehouse schema (Alembic migrations).

Subcommands::

    mlobs db upgrade [--revision head] [--root DIR] [--db-url URL]   create / migrate
    mlobs db downgrade REVISION [--root DIR] [--db-url URL]          ``base`` drops all
    mlobs db current [--root DIR] [--db-url URL]             exit 0 at head, 1 otherwise

``--db-url`` defaults to ``$MLOBS_DB_URL``, else the embedded SQLite file under the mlobs
root (``--root``, else ``$MLOBS_ROOT`` or ./mlobs-data). Errors print one line on stderr
and exit 1.

The helpers here are shared by the other commands; like them, this module imports the
warehouse (SQLAlchemy, Alembic) only inside the functions that use it, so that building
the parser (``mlobs --help``, ``mlobs --version``) does not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlobs.core.errors import MlobsError, SchemaOutOfDateError

if TYPE_CHECKING:
    from mlobs.warehouse.store import WarehouseStore

DB_URL_HELP = ("warehouse URL (default: $MLOBS_DB_URL, else sqlite:///ROOT/warehouse.db "
               "with ROOT from --root)")
ROOT_HELP = ("the mlobs data directory, ROOT: manifests (ROOT/runs), the cache "
             "(ROOT/cache), the spool and the default warehouse ROOT/warehouse.db "
             "(default: $MLOBS_ROOT, else ./mlobs-data)")


def add_db_url_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--db-url`` (resolved lazily by :func:`resolve_db_url`)."""
    parser.add_argument("--db-url", default=None, metavar="URL", help=DB_URL_HELP)


def add_root_argument(parser: argparse.ArgumentParser, uses: str = "") -> None:
    """Add ``--root DIR``, the same on every command; ``uses`` says what this command
    reads there (appended to the help)."""
    parser.add_argument("--root", default=None, metavar="DIR",
                        help=ROOT_HELP + (f"; {uses}" if uses else ""))


def add_location_arguments(parser: argparse.ArgumentParser, uses: str = "") -> None:
    """``--root DIR`` and ``--db-url URL``: where the data is, for every command that
    reads the warehouse."""
    add_root_argument(parser, uses)
    add_db_url_argument(parser)


def resolve_db_url(args: argparse.Namespace) -> str:
    """``--db-url`` if given, else ``$MLOBS_DB_URL``, else the SQLite file of the root
    (``--root``, else ``$MLOBS_ROOT`` or ./mlobs-data), as
    :func:`mlobs.core.config.resolve_settings` derives it.

    Raises:
        ConfigError: an ``MLOBS_*`` variable is invalid.
    """
    if args.db_url:
        return str(args.db_url)
    from mlobs.core.config import resolve_settings

    return resolve_settings(root=getattr(args, "root", None)).db_url


def open_existing_store(db_url: str) -> WarehouseStore:
    """The warehouse at ``db_url`` for a command that reads or loads records; a missing
    SQLite file is never created (that is ``mlobs db upgrade``'s or the first run's job).

    Raises:
        MlobsError: no such SQLite file, the database is unreachable, or its schema is
            not at this mlobs's revision (the message says which command to run).
    """
    from mlobs.warehouse.engine import require_sqlite_file
    from mlobs.warehouse.store import WarehouseStore

    require_sqlite_file(db_url)
    return WarehouseStore(db_url)


def fail(message: str) -> int:
    """Print ``mlobs: error: <message>`` on stderr and return exit code 1."""
    print(f"mlobs: error: {message}", file=sys.stderr)
    return 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``db`` command and its subcommands to the ``mlobs`` parser."""
    db = subparsers.add_parser("db", help="manage the warehouse schema (migrations)",
                               description="Manage the warehouse schema with Alembic migrations: "
                               "upgrade, downgrade, or show the current revision. Each "
                               "subcommand takes --root DIR or --db-url URL after it: "
                               "mlobs db current --root DIR.")
    commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)

    up = commands.add_parser("upgrade", help="create or migrate the schema to a revision")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    add_location_arguments(up)
    up.set_defaults(func=upgrade_command)

    down = commands.add_parser("downgrade", help="migrate the schema back to a revision "
                                                  "('base' drops every mlobs table)")
    down.add_argument("revision", help="target revision, e.g. 0001 or base")
    add_location_arguments(down)
    down.set_defaults(func=downgrade_command)

    current = commands.add_parser("current", help="print the schema revision "
                                                   "(exit 0 at head, 1 otherwise)")
    add_location_arguments(current)
    current.set_defaults(func=current_command)


def upgrade_command(args: argparse.Namespace) -> int:
    """``mlobs db upgrade``: returns 0, or 1 with a message on stderr."""
    from mlobs.warehouse import migrate

    return _migrate(args, migrate.upgrade, "upgraded")


def downgrade_command(args: argparse.Namespace) -> int:
    """``mlobs db downgrade REVISION``: returns 0, or 1 with a message on stderr."""
    from mlobs.warehouse import migrate

    return _migrate(args, migrate.downgrade, "downgraded")


def _migrate(args: argparse.Namespace, action: Callable[[str, str], None], verb: str) -> int:
    from mlobs.warehouse import migrate
    from mlobs.warehouse.engine import display_url

    try:
        url = resolve_db_url(args)
        before = migrate.current_revision(url)
        action(url, args.revision)
        after = migrate.current_revision(url)
    except MlobsError as exc:
        return fail(str(exc))
    if before == after:
        print(f"{display_url(url)} already at revision {after}")
    else:
        # "base": Alembic's name (and downgrade's argument) for no mlobs schema at all.
        print(f"{verb} {display_url(url)} from {before or 'base'} to {after or 'base'}")
    return 0


def current_command(args: argparse.Namespace) -> int:
    """``mlobs db current``: prints ``<revision> (head)`` or what to run; 0 only at head."""
    from mlobs.warehouse import migrate
    from mlobs.warehouse.engine import (
        create_warehouse_engine,
        db_url_option,
        missing_sqlite_file,
    )

    try:
        url = resolve_db_url(args)
        missing = missing_sqlite_file(url)
        if missing is not None:
            print(f"no revision (no warehouse file at {missing}; run `mlobs db upgrade "
                  f"{db_url_option(url)}`)")
            return 1
        engine = create_warehouse_engine(url)
        try:
            current = migrate.current_revision(engine)
            migrate.check_schema(engine)
        finally:
            engine.dispose()
    except SchemaOutOfDateError as exc:
        print(f"{current} (not head: {exc})")
        return 1
    except MlobsError as exc:
        return fail(str(exc))
    print(f"{current} (head)")
    return 0

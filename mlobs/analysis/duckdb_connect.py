"""Open DuckDB offline and attach the SQL warehouse read-only (ARCHITECTURE §7).

DuckDB reads the warehouse for rollups and exports; it never sits in the pipeline's write
path. It must work without internet access, so:

* :func:`connect_duckdb` turns off DuckDB's automatic extension install and autoload (both
  would fetch from extensions.duckdb.org on first use of ``ATTACH ... (TYPE sqlite)``);
* :func:`attach_warehouse` loads the scanner extension from the PyPI extension wheel pinned
  next to ``duckdb`` (``duckdb-extension-sqlite-scanner`` / ``duckdb-extension-postgres-scanner``,
  same version), which ships ``extensions/v<duckdb version>/<name>.duckdb_extension`` beside
  its ``__init__.py``.

Supported warehouse URLs (SQLAlchemy spelling, as in ``MLOBS_DB_URL``):

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``
* ``postgresql[+driver]://user[:password]@host[:port]/dbname[?libpq_option=value...]``
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import duckdb
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from mlobs.core.errors import ConfigError, WarehouseError

#: DuckDB extension name → (importable package, pip distribution) of its PyPI wheel.
EXTENSION_WHEELS: dict[str, tuple[str, str]] = {
    "sqlite_scanner": ("duckdb_extension_sqlite_scanner", "duckdb-extension-sqlite-scanner"),
    "postgres_scanner": ("duckdb_extension_postgres_scanner",
                         "duckdb-extension-postgres-scanner"),
}

#: SQLAlchemy backend name → (DuckDB extension, ATTACH TYPE).
_BACKENDS: dict[str, tuple[str, str]] = {
    "sqlite": ("sqlite_scanner", "sqlite"),
    "postgresql": ("postgres_scanner", "postgres"),
    "postgres": ("postgres_scanner", "postgres"),  # the libpq URI spelling
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def connect_duckdb(database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that never downloads or autoloads extensions.

    Args:
        database: DuckDB database path; the default is a private in-memory database,
            which is all rollups need (the warehouse is attached, not copied).

    Returns:
        A connection with ``autoinstall_known_extensions``, ``autoload_known_extensions``
        and ``allow_community_extensions`` off, and the session time zone set to UTC so
        that casts of zone-less timestamp text and ``date_trunc`` buckets are in UTC.
    """
    con = duckdb.connect(database, config={
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
    })
    # TimeZone belongs to the built-in ICU extension, so it cannot go in the config dict.
    con.execute("SET TimeZone = 'UTC'")
    # A library writes nothing to the caller's stderr.
    con.execute("SET enable_progress_bar = false")
    return con


def extension_path(name: str, duckdb_version: str | None = None) -> Path:
    """Path of a DuckDB extension file inside its PyPI extension wheel.

    Args:
        name: ``"sqlite_scanner"`` or ``"postgres_scanner"``.
        duckdb_version: DuckDB version the file must be built for; defaults to the running
            ``duckdb.__version__`` (DuckDB refuses extensions built for another version).

    Returns:
        ``<site-packages>/<package>/extensions/v<version>/<name>.duckdb_extension``.

    Raises:
        ConfigError: ``name`` is not one of the extensions mlobs uses.
        WarehouseError: the wheel is not installed, or holds no build for this version;
            the message names the pip requirement to install.
    """
    if name not in EXTENSION_WHEELS:
        raise ConfigError(
            f"unknown DuckDB extension {name!r}; known: {sorted(EXTENSION_WHEELS)}")
    package, distribution = EXTENSION_WHEELS[name]
    version = duckdb_version or duckdb.__version__
    hint = f"install it with: pip install '{distribution}=={version}'"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError(f"DuckDB extension {name} is not installed; {hint}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
        if candidate.is_file():
            return candidate
    found = sorted(p.name for loc in spec.submodule_search_locations
                   for p in (Path(loc) / "extensions").glob("v*"))
    raise WarehouseError(
        f"DuckDB extension {name} for duckdb {version} not found in package {package} "
        f"(it holds builds for: {', '.join(found) or 'none'}); {hint}")


def libpq_conninfo(url: URL) -> str:
    """libpq ``key=value`` connection string for a SQLAlchemy PostgreSQL URL.

    Args:
        url: e.g. ``make_url("postgresql+psycopg://postgres@127.0.0.1:5432/mlobs")``; query
            parameters (``sslmode``, ``host`` for a Unix socket, ...) pass through as libpq
            keywords.

    Returns:
        e.g. ``"host=127.0.0.1 port=5432 user=postgres dbname=mlobs"``; values are quoted
        and escaped per the libpq rules where needed.
    """
    parts: dict[str, str] = {}
    for key, value in (("host", url.host), ("port", url.port), ("user", url.username),
                       ("password", url.password), ("dbname", url.database)):
        if value is not None and value != "":
            parts[key] = str(value)
    for key, value in url.query.items():
        # A repeated query key (multi-host URLs) maps to libpq's comma-separated list.
        parts[key] = ",".join(value) if isinstance(value, tuple) else str(value)
    return " ".join(f"{key}={_libpq_quote(value)}" for key, value in parts.items())


def _libpq_quote(value: str) -> str:
    # libpq: a value with spaces, quotes or backslashes (or an empty one) is single-quoted,
    # with ' and \ escaped by a backslash.
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def attach_warehouse(con: duckdb.DuckDBPyConnection, db_url: str, alias: str = "wh",
                     read_only: bool = True) -> str:
    """Load the right scanner extension and ``ATTACH`` the warehouse as ``alias``.

    Args:
        con: a connection from :func:`connect_duckdb`.
        db_url: the warehouse's SQLAlchemy URL (module docstring lists the accepted forms).
        alias: catalog name for the attached database; tables are then ``<alias>.<table>``.
        read_only: attach ``READ_ONLY`` (the default; rollups write back through
            SQLAlchemy, not DuckDB).

    Returns:
        The ATTACH type used: ``"sqlite"`` or ``"postgres"``. For SQLite the connection is
        also switched to ``sqlite_all_varchar`` so that every column arrives as the text
        SQLite holds; callers cast explicitly (the scanner's own DATETIME parsing drops UTC
        offsets).

    Raises:
        ConfigError: ``alias`` is not a plain identifier.
        WarehouseError: the URL cannot be parsed, names an unsupported backend or an
            in-memory SQLite database (the same class :mod:`mlobs.warehouse.engine` uses
            for URLs); the SQLite file does not exist; the extension is missing; or DuckDB
            cannot attach the database (the password is redacted from the message).
    """
    if not _IDENTIFIER.match(alias):
        raise ConfigError(f"DuckDB alias must be a plain identifier, got {alias!r}")
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise WarehouseError(f"cannot parse warehouse URL {db_url!r}: {exc}") from exc
    backend = url.get_backend_name()
    if backend not in _BACKENDS:
        raise WarehouseError(
            f"DuckDB cannot read warehouse URL {url.render_as_string(hide_password=True)!r}: "
            f"supported backends are sqlite:/// and postgresql://")
    extension, attach_type = _BACKENDS[backend]

    if attach_type == "sqlite":
        if not url.database or url.database == ":memory:":
            raise WarehouseError("an in-memory SQLite warehouse cannot be read from another "
                              "connection; use a file URL sqlite:///path")
        path = Path(url.database).expanduser().resolve()
        if not path.is_file():
            raise WarehouseError(f"no warehouse database at {path}; create it with "
                                 f"`mlobs db upgrade` (or run a pipeline with mlobs first)")
        target = str(path)
    else:
        target = libpq_conninfo(url)

    con.load_extension(str(extension_path(extension)))
    if attach_type == "sqlite":
        con.execute("SET sqlite_all_varchar = true")
    options = f"TYPE {attach_type}" + (", READ_ONLY" if read_only else "")
    try:
        con.execute(f"ATTACH {_sql_string(target)} AS {alias} ({options})")
    except duckdb.Error as exc:
        message = str(exc)
        if url.password:
            message = message.replace(str(url.password), "***")
        raise WarehouseError(
            f"DuckDB cannot attach warehouse {url.render_as_string(hide_password=True)}: "
            f"{message}") from exc
    return attach_type

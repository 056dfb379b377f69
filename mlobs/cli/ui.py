"""``mlobs ui``: serve the admin views (needs the ``web`` extra).

Binds 127.0.0.1:8765 by default. Another address needs an access token in
``MLOBS_UI_TOKEN`` (then every request must carry it); the views read the warehouse
read-only and change one thing, the current version of a cached result.
"""

from __future__ import annotations

import argparse
import os
import sys

from mlobs.cli.argtypes import port
from mlobs.cli.db import add_location_arguments, fail

DESCRIPTION = """\
Serve the admin views: runs, a run's timeline, components, model signatures, cache
versions (set the current one), drift checks and gate results, and a JSON API.

Binds 127.0.0.1:8765 by default. Another address needs an access token in
$MLOBS_UI_TOKEN (16+ characters; then every request must carry it). The warehouse is
read read-only; the one change the views make is a cached result's current version.
"""

EPILOG = """\
examples:
  mlobs ui                                   http://127.0.0.1:8765 on the configured warehouse
  mlobs ui --db-url postgresql+psycopg://mlobs@db/mlobs --port 9000
  MLOBS_UI_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') \\
      mlobs ui --host 0.0.0.0                then open http://HOST:8765/login?token=...
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ui", help="serve the admin views (runs, components, signatures, cache, drift)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s; another needs "
                             "MLOBS_UI_TOKEN)")
    parser.add_argument("--port", type=port, default=8765,
                        help="port (default: %(default)s)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a further Host header name to accept (a reverse proxy's); "
                             "repeatable")
    add_location_arguments(parser, "the cache pages show ROOT/cache")
    parser.set_defaults(func=ui_command)


def ui_command(args: argparse.Namespace) -> int:
    """Serve until interrupted; 1 on a configuration error, 2 without the web extra."""
    try:
        import uvicorn

        from mlobs.web.app import create_app
        from mlobs.web.security import TOKEN_ENV, check_bind, check_token
    except ImportError as exc:
        print(f"mlobs ui needs the web extra: pip install 'mlobs[web]' ({exc})",
              file=sys.stderr)
        return 2
    from mlobs.core.errors import MlobsError
    from mlobs.warehouse.engine import require_sqlite_file

    try:
        token = check_token(os.environ.get(TOKEN_ENV))
        check_bind(args.host, token)
        from mlobs.cli.db import resolve_db_url

        db_url = resolve_db_url(args)
        require_sqlite_file(db_url)
        app = create_app(db_url, args.root, token=token, host=args.host,
                         allowed_hosts=tuple(args.allowed_host))
    except MlobsError as exc:
        return fail(str(exc))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"mlobs ui: http://{shown}:{args.port}/runs  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

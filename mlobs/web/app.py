"""The admin views' ASGI app: :func:`create_app` for ``mlobs ui`` or for mounting.

Pages (HTML, :mod:`mlobs.web.pages`) and a JSON API (:mod:`mlobs.web.api`) over the
warehouse, read through a read-only engine (:func:`mlobs.web.data.readonly_engine`), and
the component cache of the mlobs root (ADR-005), whose current version is the one thing
that can be changed. Security: :mod:`mlobs.web.security`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from mlobs.cache.store import ArtifactStore
from mlobs.core.config import resolve_settings
from mlobs.core.errors import ConfigError, MlobsError
from mlobs.web import api, pages
from mlobs.web.data import readonly_engine
from mlobs.web.formatting import FILTERS
from mlobs.web.security import SecurityMiddleware, check_token

HERE = Path(__file__).parent
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass
class Context:
    """What the handlers share (``request.app.state.mlobs``)."""

    engine: Engine
    store: ArtifactStore
    templates: Jinja2Templates
    token: str | None
    db_url: str


def create_app(db_url: str | None = None, root: str | Path | None = None, *,
               token: str | None = None, host: str = DEFAULT_HOST,
               allowed_hosts: tuple[str, ...] = ()) -> Starlette:
    """The admin views as an ASGI app.

    Args:
        db_url: the warehouse (default: mlobs's configured one, ``$MLOBS_DB_URL`` or the
            root's SQLite file).
        root: the mlobs root whose ``cache/`` the cache pages show (default: configured).
        token: the access token every request must present (None: none needed; then
            serve on loopback only, see :func:`mlobs.web.security.check_bind`).
        host: the address served, accepted in ``Host`` headers besides ``localhost``,
            ``127.0.0.1`` and ``::1``.
        allowed_hosts: further host names accepted in ``Host`` headers (a reverse proxy's).

    Raises:
        ConfigError: an unusable token or database URL.
    """
    settings = resolve_settings(root=root, db_url=db_url)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(FILTERS)
    context = Context(engine=readonly_engine(settings.db_url),
                      store=ArtifactStore(settings.cache_dir), templates=templates,
                      token=check_token(token), db_url=settings.db_url)
    app = Starlette(
        routes=[*pages.ROUTES, *api.ROUTES,
                Route("/healthz", lambda request: Response("ok")),
                Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")],
        exception_handlers={HTTPException: _http_error, ConfigError: _bad_request,
                            MlobsError: _unavailable, SQLAlchemyError: _unavailable,
                            OSError: _unavailable})
    app.state.mlobs = context
    hosts = {"localhost", "127.0.0.1", "::1", host, *allowed_hosts}
    app.add_middleware(SecurityMiddleware, allowed_hosts=hosts, token=context.token)
    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return _error_page(request, exc.status_code, str(exc.detail))


async def _bad_request(request: Request, exc: Exception) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": str(exc)}, status_code=400)
    return _error_page(request, 400, str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    # the database went away, a corrupt cache file: say so, keep serving
    message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=503)
    return _error_page(request, 503, message)


def _error_page(request: Request, status: int, message: str) -> Response:
    templates = request.app.state.mlobs.templates
    return templates.TemplateResponse(request, "error.html",
                                      {"status": status, "message": message},
                                      status_code=status)

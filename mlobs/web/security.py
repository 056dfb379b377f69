"""What keeps the admin views safe by default: loopback binds, an access token, Host
checks against DNS rebinding, strict response headers and CSRF tokens.

Rules (issue "admin web views", after the anchors' failures):

* Binding anything but a loopback address needs an access token (``MLOBS_UI_TOKEN``);
  :func:`check_bind` refuses otherwise.
* With a token, every request must carry it (``Authorization: Bearer <token>``, or the
  ``mlobs_ui_token`` cookie that ``/login?token=...`` sets); it is compared with
  :func:`hmac.compare_digest`, never ``==``.
* The ``Host`` header must name the bound address, ``localhost`` or an allowed host: a
  page of another site that rebinds its DNS name to 127.0.0.1 is refused.
* Every response: ``Content-Security-Policy: default-src 'self'`` (no inline script),
  ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
  no-referrer``; no CORS headers are ever sent.
* The one write (setting a cache version current) needs the token when one is set and a
  CSRF token (a cookie and the same value in the form or an ``X-CSRF-Token`` header)
  even on loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mlobs.core.errors import ConfigError

TOKEN_ENV = "MLOBS_UI_TOKEN"
TOKEN_COOKIE = "mlobs_ui_token"
CSRF_COOKIE = "mlobs_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
#: the shortest access token accepted (a guessable one would defeat the point).
MIN_TOKEN_CHARS = 16

HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(token: str | None) -> str | None:
    """``token`` if usable (None: no token).

    Raises:
        ConfigError: shorter than :data:`MIN_TOKEN_CHARS` or with whitespace.
    """
    if token is None or token == "":
        return None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(f"{TOKEN_ENV} must be at least {MIN_TOKEN_CHARS} characters "
                          f"without spaces (e.g. `python -c 'import secrets; "
                          f"print(secrets.token_urlsafe(32))'`)")
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token.

    Raises:
        ConfigError: ``host`` is not loopback and ``token`` is None.
    """
    if token is None and not is_loopback(host):
        raise ConfigError(f"refusing to serve on {host}: anyone who can reach it could "
                          f"read the warehouse. Set {TOKEN_ENV} to an access token (16+ "
                          f"characters), or bind 127.0.0.1 (the default)")


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def presented_token(request: Request) -> str | None:
    """The access token a request carries: a Bearer header, else the cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(TOKEN_COOKIE)


class SecurityMiddleware:
    """Host check, token check and the response headers, for every request.

    Args:
        app: the wrapped ASGI app.
        allowed_hosts: host names (without port) the ``Host`` header may carry.
        token: the access token, or None (loopback only, no token needed).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str],
                 token: str | None) -> None:
        self.app = app
        self.allowed_hosts = {host.lower() for host in allowed_hosts}
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if not k.lower().startswith(b"access-control-")]
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, request: Request) -> Response | None:
        host = (request.headers.get("host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.strip("[]") not in self.allowed_hosts and name not in self.allowed_hosts:
            return _with_headers(PlainTextResponse(
                f"host {host!r} is not served here (DNS rebinding protection); "
                f"allowed: {', '.join(sorted(self.allowed_hosts))}", status_code=421))
        if self.token is None or request.url.path in ("/login", "/healthz"):
            return None
        if not same_secret(presented_token(request), self.token):
            return _with_headers(PlainTextResponse(
                "401: an access token is required (Authorization: Bearer <token>, or "
                "open /login?token=<token> once)", status_code=401,
                headers={"www-authenticate": "Bearer"}))
        return None


def _with_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers[name] = value
    return response


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """The double-submit check: the CSRF cookie equals the submitted token."""
    cookie = request.cookies.get(CSRF_COOKIE)
    return cookie is not None and same_secret(submitted, cookie)

"""The admin views (``mlobs ui``): runs, components, model signatures, cache versions,
drift checks and gate results, as pages and a JSON API; read-only but for setting a
cache version current, bound to loopback unless an access token is set.

Needs the ``web`` extra. :func:`create_app` builds the ASGI app for mounting elsewhere.
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """:func:`mlobs.web.app.create_app` (imported on first use: Starlette is optional)."""
    from mlobs.web.app import create_app as create

    return create(*args, **kwargs)

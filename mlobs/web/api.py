"""The JSON API beside the pages (docs/web.md lists it): runs, components, model
signatures, and ADR-005's cache endpoints.

``GET /api/cache/{video_id}`` and ``GET /api/cache/{video_id}/{stage}`` take
``?platform_id=`` when a video id is cached under more than one platform; ``POST
/api/cache/version`` (JSON ``{platform_id, video_id, component, version}``) sets the
current version and needs the CSRF token (header ``X-CSRF-Token``, equal to the
``mlobs_csrf`` cookie a page set) besides the access token when one is configured.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlobs.cache.entries import VideoCacheIndex
from mlobs.core.errors import ConfigError
from mlobs.web import data
from mlobs.web.params import run_query, text
from mlobs.web.security import CSRF_HEADER, csrf_ok


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


def reply(payload: Any, status_code: int = 200) -> Response:
    return JSONResponse(_plain(payload), status_code=status_code)


def _ctx(request: Request):
    return request.app.state.mlobs


def runs(request: Request) -> Response:
    rows, cursor = data.list_runs(_ctx(request).engine, run_query(request.query_params))
    return reply({"runs": rows, "next": cursor})


def run(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    found = data.get_run(_ctx(request).engine, run_id)
    if found is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return reply(found)


def components(request: Request) -> Response:
    ctx = _ctx(request)
    rows, stored = data.list_components(ctx.engine, ctx.db_url)
    return reply({"components": rows, "stored_rollup": stored})


def component(request: Request) -> Response:
    return reply(data.component_detail(_ctx(request).engine,
                                       request.path_params["component"]))


def signature(request: Request) -> Response:
    sig = request.path_params["signature"]
    found = data.signature_detail(_ctx(request).engine, sig)
    if found is None:
        raise HTTPException(404, f"no model signature {sig!r}")
    return reply(found)


def _video(request: Request) -> VideoCacheIndex:
    """The cache index of ``{video_id}``, under ``?platform_id=`` or the only platform
    that has it."""
    store, video_id = _ctx(request).store, request.path_params["video_id"]
    platform = text(request.query_params, "platform_id")
    if platform is not None:
        index = store.info(platform, video_id)
        found = [] if index is None else [index]
    else:
        found = [i for i in (store.info(p.name, video_id) for p in _platform_dirs(store))
                 if i is not None]
    if not found:
        raise HTTPException(404, f"nothing cached for video {video_id!r}")
    if len(found) > 1:
        raise HTTPException(409, f"video {video_id!r} is cached under several platforms "
                                 f"({', '.join(i.platform_id for i in found)}): pass "
                                 f"?platform_id=")
    return found[0]


def _platform_dirs(store):
    return sorted(p for p in store.root.iterdir() if p.is_dir()) if store.root.is_dir() \
        else []


def cache_video(request: Request) -> Response:
    index = _video(request)
    return reply({"platform_id": index.platform_id, "video_id": index.video_id,
                  "components": {name: [e.to_dict() for e in entries]
                                 for name, entries in sorted(index.entries.items())}})


def cache_stage(request: Request) -> Response:
    index, stage = _video(request), request.path_params["stage"]
    if stage not in index.entries:
        raise HTTPException(404, f"no cached {stage!r} for video {index.video_id!r}")
    current = index.current(stage)
    return reply({"platform_id": index.platform_id, "video_id": index.video_id,
                  "component": stage, "current": current.version if current else None,
                  "versions": [e.to_dict() for e in index.entries[stage]]})


async def set_version(request: Request) -> Response:
    if not csrf_ok(request, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, "missing or wrong X-CSRF-Token header (it must equal the "
                                 "mlobs_csrf cookie a page set)")
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ConfigError("the body must be JSON") from None
    if not isinstance(body, dict):
        raise ConfigError("the body must be a JSON object")
    fields = {name: body.get(name) for name in ("platform_id", "video_id", "component")}
    if not all(isinstance(v, str) and v for v in fields.values()):
        raise ConfigError("platform_id, video_id and component must be non-empty strings")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError("version must be an integer")
    store = _ctx(request).store
    if store.info(fields["platform_id"], fields["video_id"]) is None:
        raise HTTPException(404, f"nothing cached for {fields['platform_id']}/"
                                 f"{fields['video_id']}")
    entry = await run_in_threadpool(store.set_current, fields["platform_id"],
                                    fields["video_id"], fields["component"], version)
    return reply({"current": entry.to_dict()})


ROUTES = [
    Route("/api/runs", runs), Route("/api/runs/{run_id}", run),
    Route("/api/components", components), Route("/api/components/{component}", component),
    Route("/api/signatures/{signature}", signature),
    Route("/api/cache/version", set_version, methods=["POST"]),
    Route("/api/cache/{video_id}", cache_video),
    Route("/api/cache/{video_id}/{stage}", cache_stage),
]

"""The HTML pages: runs, a run, components, model signatures, cache versions, drift and
gates. Handlers are plain functions (Starlette runs them in its thread pool: the
warehouse reads block)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mlobs.cache.versions import diff_versions, list_videos
from mlobs.core.errors import ConfigError
from mlobs.core.manifest import in_finishing_order, manifest_document
from mlobs.warehouse.reading import read_run
from mlobs.web import data
from mlobs.web.params import integer, run_query, text
from mlobs.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    TOKEN_COOKIE,
    csrf_ok,
    new_csrf_token,
    same_secret,
)

#: cache videos listed on the cache index page.
MAX_VIDEOS = 500


def _context(request: Request):
    return request.app.state.mlobs


def render(request: Request, template: str, values: dict[str, Any],
           status_code: int = 200) -> Response:
    """``template`` with ``values``, the CSRF token for its forms, and the cookie that
    carries it (set once per browser)."""
    csrf = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
    response = _context(request).templates.TemplateResponse(
        request, template, {**values, "csrf_token": csrf}, status_code=status_code)
    if request.cookies.get(CSRF_COOKIE) != csrf:
        response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
    return response


def home(request: Request) -> Response:
    return RedirectResponse("/runs", status_code=302)


def login(request: Request) -> Response:
    """``/login?token=...``: keeps the access token in an HttpOnly cookie."""
    token = _context(request).token
    given = request.query_params.get("token")
    if token is None:
        return RedirectResponse("/runs", status_code=302)
    if not same_secret(given, token):
        raise HTTPException(401, "wrong or missing token")
    response = RedirectResponse("/runs", status_code=302)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return response


def runs(request: Request) -> Response:
    ctx = _context(request)
    query = run_query(request.query_params)
    rows, cursor = data.list_runs(ctx.engine, query)
    params = {k: v for k, v in request.query_params.items() if k != "after"}
    values = {"runs": rows, "cursor": cursor, "params": params,
              "filters": query.filters, "query": query}
    if request.headers.get("hx-request"):  # htmx asks for the next page's rows only
        return render(request, "_runs_rows.html", values)
    values["choices"] = {name: data.filter_values(ctx.engine, column)
                         for name, column in data.RUN_FILTERS.items()
                         if name in ("status", "platform", "profile", "version")}
    return render(request, "runs.html", values)


def timeline(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bars of a Gantt chart: each invocation's start and length in percent of the run's
    span (at least 0.3 % wide, so a 1 ms component stays visible)."""
    if not components:
        return []
    start = min(c["started_at"] for c in components)
    end = max(c["finished_at"] for c in components)
    span = max((end - start).total_seconds(), 1e-6)
    bars = []
    for row, c in enumerate(components):
        offset = (c["started_at"] - start).total_seconds() / span * 100
        width = max(c["duration_ms"] / 1000 / span * 100, 0.3)
        bars.append({"row": row, "x": round(offset, 3), "width": round(min(width, 100 - offset
                                                                              + 0.3), 3),
                     "component": c})
    return bars


def run(request: Request) -> Response:
    ctx = _context(request)
    run_id = request.path_params["run_id"]
    found = data.get_run(ctx.engine, run_id)
    if found is None:
        candidates = data.runs_with_prefix(ctx.engine, run_id)
        if len(candidates) == 1:
            return RedirectResponse(f"/runs/{candidates[0]}", status_code=302)
        message = (f"{len(candidates)} runs start with {run_id!r}: " + ", ".join(candidates)
                   if candidates else f"no run {run_id!r} in the warehouse")
        raise HTTPException(404, message)
    return render(request, "run.html", {"run": found, "bars": timeline(found["components"]),
                                        "environment": json.dumps(found["environment"],
                                                                  indent=2, sort_keys=True)})


def manifest(request: Request) -> Response:
    """The run's manifest.json as the warehouse holds it, as a download."""
    run_id = request.path_params["run_id"]
    with _context(request).engine.connect() as conn:
        found = read_run(conn, run_id)
    if found is None:
        raise HTTPException(404, f"no run {run_id!r} in the warehouse")
    record, components = found
    attachment = f'attachment; filename="{run_id}.manifest.json"'
    return Response(manifest_document(record, in_finishing_order(components)),
                    media_type="application/json",
                    headers={"content-disposition": attachment})


def components(request: Request) -> Response:
    ctx = _context(request)
    rows, stored = data.list_components(ctx.engine, ctx.db_url)
    return render(request, "components.html", {"rows": rows, "stored": stored})


def component(request: Request) -> Response:
    name = request.path_params["component"]
    detail = data.component_detail(_context(request).engine, name)
    if not detail["series"] and not detail["statuses"]:
        raise HTTPException(404, f"no component {name!r} in the rollups or the last "
                                 f"{data.RECENT.days} days")
    chart = _duration_chart(detail["series"])
    return render(request, "component.html", {"detail": detail, "chart": json.dumps(chart)})


def _duration_chart(series: list[dict[str, Any]]) -> dict[str, Any]:
    """uPlot data: x = bucket start (Unix s), one p50/p95/p99 line per signature."""
    times = sorted({row["bucket_start"] for row in series if row["bucket_start"]})
    index = {moment: i for i, moment in enumerate(times)}
    lines: dict[str, list[float | None]] = {}
    for row in series:
        if row["bucket_start"] is None:
            continue
        sig = (row["model_signature"] or "none")[:12]
        for q in ("p50", "p95", "p99"):
            values = lines.setdefault(f"{q} {sig}", [None] * len(times))
            values[index[row["bucket_start"]]] = row[f"{q}_duration_ms"]
    return {"x": [_epoch(t) for t in times], "series": lines}


def _epoch(moment: datetime) -> float:
    return data.as_utc(moment).timestamp()


def signatures(request: Request) -> Response:
    return render(request, "signatures.html",
                  {"rows": data.list_signatures(_context(request).engine)})


def signature(request: Request) -> Response:
    sig = request.path_params["signature"]
    detail = data.signature_detail(_context(request).engine, sig)
    if detail is None:
        raise HTTPException(404, f"no model signature {sig!r}")
    return render(request, "signature.html", {"sig": detail})


def cache_index(request: Request) -> Response:
    ctx = _context(request)
    platform = text(request.query_params, "platform")
    videos = []
    for index in list_videos(ctx.store, platform_id=platform):
        videos.append(index)
        if len(videos) >= MAX_VIDEOS:
            break
    return render(request, "cache_index.html", {"videos": videos, "limit": MAX_VIDEOS})


def _video_index(request: Request):
    platform, video = request.path_params["platform"], request.path_params["video"]
    index = _context(request).store.info(platform, video)
    if index is None:
        raise HTTPException(404, f"nothing cached for {platform}/{video}")
    return index


def cache_video(request: Request) -> Response:
    index = _video_index(request)
    diff = None
    component_name = text(request.query_params, "component")
    if component_name is not None:
        v1 = integer(request.query_params, "v1", 0, 1, 10**9)
        v2 = integer(request.query_params, "v2", 0, 1, 10**9)
        diff = diff_versions(_context(request).store, index.platform_id, index.video_id,
                             component_name, v1, v2) or "(the two versions are equal)"
    return render(request, "cache_video.html", {"index": index, "diff": diff,
                                                "diff_component": component_name})


async def cache_set_current(request: Request) -> Response:
    """POST a form (component, version, csrf_token): make that version current."""
    form = await request.form()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and retry")
    index = _video_index(request)
    try:
        version = int(str(form.get("version", "")))
    except ValueError:
        raise ConfigError("version: not an integer") from None
    await run_in_threadpool(_context(request).store.set_current, index.platform_id,
                            index.video_id, str(form.get("component", "")), version)
    return RedirectResponse(f"/cache/{index.platform_id}/{index.video_id}", status_code=303)


def quality(request: Request) -> Response:
    engine = _context(request).engine
    return render(request, "quality.html", {"drift": data.latest_drift(engine),
                                            "gates": data.latest_gates(engine)})


def drift_check(request: Request) -> Response:
    check_id = integer(request.path_params, "check_id", 0, 1, 2**62)
    check = data.drift_check(_context(request).engine, check_id)
    if check is None:
        raise HTTPException(404, f"no drift check {check_id}")
    chart = data.ecdf(check["samples"])
    return render(request, "drift_check.html", {"check": check, "chart": json.dumps(chart)})


ROUTES = [
    Route("/", home), Route("/login", login),
    Route("/runs", runs), Route("/runs/{run_id}", run),
    Route("/runs/{run_id}/manifest.json", manifest),
    Route("/components", components), Route("/components/{component}", component),
    Route("/signatures", signatures), Route("/signatures/{signature}", signature),
    Route("/cache", cache_index), Route("/cache/{platform}/{video}", cache_video),
    Route("/cache/{platform}/{video}/current", cache_set_current, methods=["POST"]),
    Route("/quality", quality), Route("/quality/drift/{check_id}", drift_check),
]

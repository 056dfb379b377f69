"""The JSON API: keyset pages that cover every run once, newest first; filters; one run;
ADR-005's cache endpoints; and bad input of any shape answered with a 4xx, never a 5xx."""

import string

import pytest

pytest.importorskip("starlette")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from mlobs.web.app import create_app  # noqa: E402
from support.web_app import fill  # noqa: E402

BASE = "http://127.0.0.1:8765"
#: the client fixture is module-scoped: reusing it across examples is intended.
RELAXED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@pytest.fixture(scope="module")
def web(tmp_path_factory, run_builder):
    return fill(tmp_path_factory.mktemp("web-api"), run_builder)


@pytest.fixture(scope="module")
def client(web):
    return TestClient(create_app(web.db_url, web.root), base_url=BASE)


def all_pages(client, query=""):
    seen, cursor = [], None
    while True:
        params = f"?limit=5{query}" + (f"&after={cursor}" if cursor else "")
        page = client.get(f"/api/runs{params}").json()
        seen += page["runs"]
        cursor = page["next"]
        if cursor is None:
            return seen


def test_keyset_pages_cover_every_run_once_newest_first(client, web):
    runs = all_pages(client)
    assert sorted(r["run_id"] for r in runs) == sorted(web.run_ids)
    keys = [(r["started_at"], r["run_id"]) for r in runs]
    assert keys == sorted(keys, reverse=True)


def test_filters_narrow_the_pages(client):
    errors = all_pages(client, "&status=error")
    assert len(errors) == 3 and {r["status"] for r in errors} == {"error"}
    vimeo = all_pages(client, "&platform=vimeo&status=error")
    assert {(r["platform_id"], r["status"]) for r in vimeo} == {("vimeo", "error")}
    window = all_pages(client, "&since=2026-05-09T14:00:00&until=2026-05-09T17:00:00")
    assert len(window) == 3


def test_a_run_id_prefix_finds_the_run(client, web):
    run_id = web.run_ids[5]
    [found] = client.get(f"/api/runs?q={run_id[:8]}").json()["runs"]
    assert found["run_id"] == run_id
    detail = client.get(f"/api/runs/{run_id}").json()
    assert [c["component"] for c in detail["components"]] == [
        "asr", "cleaning", "embedding", "faces", "summarization"]
    assert {e["kind"] for e in detail["events"]} == {"oom", "retry"}
    assert client.get("/api/runs/not-a-run").status_code == 404


def test_cache_endpoints_list_versions_and_the_current_one(client):
    video = client.get("/api/cache/abc").json()
    assert video["platform_id"] == "youtube"
    assert [e["version"] for e in video["components"]["cleaning"]] == [1, 2, 3]
    stage = client.get("/api/cache/abc/cleaning").json()
    assert stage["current"] in (1, 2, 3) and len(stage["versions"]) == 3
    assert client.get("/api/cache/abc/summary").status_code == 404
    assert client.get("/api/cache/nope").status_code == 404


@pytest.mark.parametrize("query, message", [
    ("limit=0", "limit"), ("limit=abc", "limit"), ("since=yesterday", "since"),
    ("after=%%%", "cursor"), ("since=2026-05-10&until=2026-05-09", "before until"),
    ("status=" + "x" * 300, "status"),
])
def test_bad_parameters_are_a_400_that_names_them(client, query, message):
    answer = client.get(f"/api/runs?{query}")
    assert answer.status_code == 400 and message in answer.json()["error"]


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
               max_size=300)
PARAMS = st.dictionaries(st.sampled_from(["status", "platform", "video", "profile",
                                          "version", "since", "until", "q", "after",
                                          "limit", "platform_id"]), TEXT, max_size=4)
SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", min_size=1,
                  max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=RELAXED)
@given(params=PARAMS, segment=SEGMENT,
       path=st.sampled_from(["/api/runs", "/api/runs/{}", "/api/components/{}",
                             "/api/signatures/{}", "/api/cache/{}", "/api/cache/abc/{}",
                             "/runs", "/runs/{}", "/components/{}", "/signatures/{}",
                             "/cache/youtube/{}", "/cache/youtube/abc"]))
def test_no_input_makes_the_api_or_a_page_fail(client, params, segment, path):
    answer = client.get(path.format(segment), params=params)
    assert answer.status_code in (200, 302, 400, 404, 409), (path, params, answer.text[:300])
    if path.startswith("/api/"):
        answer.json()


@settings(max_examples=60, deadline=None, suppress_health_check=RELAXED)
@given(body=st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8).map(lambda v: __import__("json").dumps(v).encode())))
def test_no_body_makes_the_set_version_endpoint_fail(client, body):
    client.get("/cache/youtube/abc")
    csrf = client.cookies["mlobs_csrf"]
    answer = client.post("/api/cache/version", content=body,
                         headers={"x-csrf-token": csrf, "content-type": "application/json"})
    assert answer.status_code in (200, 400, 404), answer.text[:300]


def test_a_drift_check_page_plots_the_two_windows_it_compared(client, web):
    import re

    quality = client.get("/quality").text
    ids = re.findall(r'href="/quality/drift/(\d+)"', quality)
    assert ids, "the quality page links its drift checks"
    pages = {i: client.get(f"/quality/drift/{i}") for i in ids}
    assert all(page.status_code == 200 for page in pages.values())
    plotted = [page.text for page in pages.values() if 'id="ecdf-data"' in page.text]
    assert plotted, "a distribution check has the ECDF data"
    data = __import__("json").loads(re.search(
        r'<script type="application/json" id="ecdf-data">(.*?)</script>', plotted[0],
        re.S).group(1))
    assert set(data["series"]) == {"baseline", "current"}
    for side in data["series"].values():  # an ECDF rises to 1 and never falls
        assert side == sorted(side) and side[-1] == 1.0
    assert client.get("/quality/drift/999999").status_code == 404
    assert client.get("/quality/drift/abc").status_code == 400


def test_ecdf_of_two_samples_on_shared_points():
    from mlobs.web.data import ecdf

    chart = ecdf({"baseline": [1.0, 2.0, 3.0, 4.0], "current": [3.0, 4.0]}, points=10)
    assert chart["x"] == [1.0, 2.0, 3.0, 4.0]
    assert chart["series"] == {"baseline": [0.25, 0.5, 0.75, 1.0],
                               "current": [0.0, 0.0, 0.5, 1.0]}
    assert ecdf({"baseline": [], "current": []}) == {"x": [], "series": {}}


def test_components_are_computed_when_no_rollup_is_stored(client):
    # the fixture stores no rollup, as right after `make demo`
    answer = client.get("/api/components").json()
    assert answer["stored_rollup"] is False
    rows = {row["component"]: row for row in answer["components"]}
    assert set(rows) == {"asr", "cleaning", "embedding", "faces", "summarization"}
    assert rows["asr"]["invocations"] == 12
    assert "computed now" in client.get("/components").text

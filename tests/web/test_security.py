"""The admin views are safe by default: loopback unless a token, the token checked in
constant time on every request, Host checks, strict headers, CSRF on the one write, and a
database connection that cannot write."""

import subprocess
import sys

import pytest

pytest.importorskip("starlette")

from sqlalchemy import text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from mlobs.cache.store import ArtifactStore  # noqa: E402
from mlobs.core.errors import ConfigError  # noqa: E402
from mlobs.web import security  # noqa: E402
from mlobs.web.app import create_app  # noqa: E402
from mlobs.web.data import readonly_engine  # noqa: E402
from support.web_app import fill  # noqa: E402

TOKEN = "s3cret-token-of-32-characters-xx"
BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def web(tmp_path_factory, run_builder):
    return fill(tmp_path_factory.mktemp("web"), run_builder)


@pytest.fixture
def client(web):
    return TestClient(create_app(web.db_url, web.root), base_url=BASE)


@pytest.fixture
def guarded(web):
    return TestClient(create_app(web.db_url, web.root, token=TOKEN), base_url=BASE)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_binds_need_no_token(host):
    security.check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_other_binds_need_a_token(host):
    with pytest.raises(ConfigError, match="MLOBS_UI_TOKEN"):
        security.check_bind(host, None)
    security.check_bind(host, TOKEN)


@pytest.mark.parametrize("token", ["short", "has a space in it here"])
def test_weak_tokens_are_refused(token):
    with pytest.raises(ConfigError, match="at least 16 characters"):
        security.check_token(token)


def test_mlobs_ui_on_a_public_address_without_a_token_exits_with_a_message(web):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(web.root)}
    done = subprocess.run([sys.executable, "-c", "from mlobs.cli.main import main; "
                           "raise SystemExit(main())", "ui", "--host", "0.0.0.0",
                           "--db-url", web.db_url], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "refusing to serve on 0.0.0.0" in done.stderr and "MLOBS_UI_TOKEN" in done.stderr


@pytest.mark.parametrize("path", ["/runs", "/api/runs", "/static/app.css", "/nope"])
def test_with_a_token_requests_without_it_get_401(guarded, path):
    answer = guarded.get(path)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert guarded.get(path, headers={"authorization": "Bearer wrong-token-xxxxxxxx"}
                       ).status_code == 401


def test_the_token_opens_every_page_by_header_or_by_login_cookie(guarded):
    assert guarded.get("/runs", headers={"authorization": f"Bearer {TOKEN}"}
                       ).status_code == 200
    assert guarded.get("/login?token=wrong", follow_redirects=False).status_code == 401
    login = guarded.get(f"/login?token={TOKEN}", follow_redirects=False)
    assert login.status_code == 302 and "httponly" in login.headers["set-cookie"].lower()
    assert guarded.get("/api/runs").status_code == 200  # the cookie is kept
    assert guarded.get("/healthz").status_code == 200


def test_the_token_is_compared_in_constant_time(guarded, monkeypatch):
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest",
                        lambda a, b: calls.append((a, b)) or real(a, b))
    guarded.get("/runs", headers={"authorization": f"Bearer {TOKEN}"})
    assert (TOKEN.encode(), TOKEN.encode()) in calls


def test_a_foreign_host_header_is_refused(client):
    answer = client.get("/runs", headers={"host": "attacker.example:8765"})
    assert answer.status_code == 421 and "DNS rebinding" in answer.text
    assert client.get("/runs", headers={"host": "localhost:8765"}).status_code == 200


@pytest.mark.parametrize("path", ["/runs", "/api/runs", "/runs/nope", "/api/runs?limit=x"])
def test_every_response_has_the_security_headers_and_no_cors(client, path):
    answer = client.get(path, headers={"origin": "https://attacker.example"})
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert not [h for h in answer.headers if h.lower().startswith("access-control-")]


def current(web, component="cleaning"):
    return ArtifactStore(web.root / "cache").info("youtube", "abc").current(component).version


def test_set_current_without_a_csrf_token_is_refused(client, web):
    before = current(web)
    for headers, data in [({}, {"component": "cleaning", "version": "1"}),
                          ({}, {"component": "cleaning", "version": "1",
                                "csrf_token": "forged"})]:
        answer = client.post("/cache/youtube/abc/current", data=data, headers=headers,
                             follow_redirects=False)
        assert answer.status_code == 403
    api = client.post("/api/cache/version", json={"platform_id": "youtube",
                                                  "video_id": "abc", "component": "cleaning",
                                                  "version": 1})
    assert api.status_code == 403 and "X-CSRF-Token" in api.json()["error"]
    assert current(web) == before


def test_set_current_with_the_page_csrf_token_works(client, web):
    client.get("/cache/youtube/abc")  # sets the CSRF cookie, as a browser visit does
    csrf = client.cookies[security.CSRF_COOKIE]
    answer = client.post("/cache/youtube/abc/current", follow_redirects=False,
                         data={"component": "cleaning", "version": "1", "csrf_token": csrf})
    assert answer.status_code == 303 and current(web) == 1
    api = client.post("/api/cache/version", headers={"x-csrf-token": csrf},
                      json={"platform_id": "youtube", "video_id": "abc",
                            "component": "cleaning", "version": 2})
    assert api.status_code == 200 and api.json()["current"]["version"] == 2
    assert current(web) == 2
    bad = client.post("/api/cache/version", headers={"x-csrf-token": csrf},
                      json={"platform_id": "youtube", "video_id": "abc",
                            "component": "cleaning", "version": 99})
    assert bad.status_code == 400 and current(web) == 2


def test_the_sqlite_connection_cannot_write(web):
    engine = readonly_engine(web.db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 12
        with pytest.raises(OperationalError, match="readonly"):
            conn.execute(text("DELETE FROM runs"))
    engine.dispose()


@pytest.mark.postgres
def test_the_postgresql_connection_cannot_write(pg_url):
    from mlobs.warehouse.migrate import upgrade

    upgrade(pg_url)
    engine = readonly_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 0
        with pytest.raises(Exception, match="read-only transaction"):
            conn.execute(text("DELETE FROM runs"))
    engine.dispose()


def test_mlobs_ui_without_the_web_extra_says_what_to_install(monkeypatch, capsys, web):
    from mlobs.cli.main import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["ui", "--db-url", web.db_url]) == 2
    assert "pip install 'mlobs[web]'" in capsys.readouterr().err


def test_mlobs_ui_refuses_a_missing_warehouse_file(tmp_path, capsys):
    from mlobs.cli.main import main

    assert main(["ui", "--db-url", f"sqlite:///{tmp_path / 'none.db'}"]) == 1
    assert "mlobs: error:" in capsys.readouterr().err

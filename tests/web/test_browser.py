"""The admin views in a real browser: Debian's Chromium, driven by Playwright, against the
real ``mlobs ui`` server over a demo root (``ui_root`` and ``ui_server``, conftest.py).

What only a browser shows: links lead where they say, the filter form and the htmx "Older
runs" swap work, app.js draws the uPlot chart, the "Make current" form (CSRF cookie
included) changes the cache, and no page logs a console error or a Content-Security-Policy
violation. Every page is screenshotted (full page, 1400x900) into
``$MLOBS_TEST_ARTIFACTS/screenshots`` (default ``test-artifacts/screenshots``).

Without /usr/bin/chromium (``make browser-tools`` installs it) these tests skip, except
in CI, where they fail.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from mlobs.cache.store import ArtifactStore
from support.ci import unavailable

CHROMIUM = "/usr/bin/chromium"
REPO_ROOT = Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1400, "height": 900}
#: per action and expectation; the server answers in milliseconds, so this only bounds
#: how long a broken page takes to fail.
TIMEOUT_MS = 15_000

# Forwards CSP violations to the console, so they are caught even where Chromium's own
# message would be missed (init scripts run before the page's, and are exempt from CSP).
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`
                + ` at ${e.sourceFile || "?"}:${e.lineNumber}`);
});
"""


# -- browser --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def chromium_browser():
    """Debian's Chromium, headless (never a Playwright download)."""
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing: install Debian's chromium package "
                    "(`make browser-tools` does it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable(f"playwright is not installed ({exc}): pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass
class Browsing:
    """A page, and the console errors, uncaught exceptions and CSP violations it met."""

    page: object
    problems: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture
def browsing(chromium_browser, ui_server: str) -> Iterator[Browsing]:
    """A fresh browser context (own cookies) on ``ui_server``, watching for errors."""
    context = chromium_browser.new_context(base_url=ui_server, viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(CSP_REPORTER)
    page = context.new_page()
    watch = Browsing(page)

    def on_console(msg) -> None:
        source = msg.location.get("url") or ""
        if msg.type != "error":
            return
        watch.problems.append(f"console error on {page.url}: {msg.text} "
                              f"({source}:{msg.location.get('lineNumber')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watch.problems.append(
        f"uncaught exception on {page.url}: {exc}"))
    yield watch
    context.close()


def expect(target):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


# -- what the demo root holds (read with sqlite3 and the cache store, not the views) -------

@dataclass(frozen=True)
class Sample:
    """Paths of one of each page, and what they should show."""

    run_id: str
    component: str
    signature: str
    platform: str
    video: str
    versioned_component: str  # a component of that video with several cache versions


@pytest.fixture(scope="session")
def sample(ui_root) -> Sample:
    with sqlite3.connect(ui_root.root / "warehouse.db") as conn:
        run_id, component, signature = conn.execute(
            "SELECT run_id, component, model_signature FROM component_runs "
            "WHERE component = 'embedding' AND model_signature IS NOT NULL "
            "ORDER BY run_id LIMIT 1").fetchone()
    store = ArtifactStore(ui_root.root / "cache")
    for index in sorted(store.videos(), key=lambda i: (i.platform_id, i.video_id)):
        several = sorted(name for name, entries in index.entries.items() if len(entries) > 1)
        if several:
            return Sample(run_id, component, signature, index.platform_id, index.video_id,
                          several[0])
    pytest.fail("the demo cached no component in several versions")


def all_run_ids(ui_root) -> set[str]:
    with sqlite3.connect(ui_root.root / "warehouse.db") as conn:
        return {row[0] for row in conn.execute("SELECT run_id FROM runs")}


def run_rows(page):
    return page.locator("#runs tbody tr:not(#more)")


# -- navigation -----------------------------------------------------------------------------

def test_click_from_runs_to_a_run_a_component_and_its_signature(browsing: Browsing) -> None:
    page = browsing.page
    page.goto("/runs")
    expect(page.locator("h1")).to_have_text("Runs")

    first = page.locator("a.run-link").first
    run_path = first.get_attribute("href")
    first.click()
    page.wait_for_url(f"**{run_path}")
    run_id = run_path.rsplit("/", 1)[1]
    expect(page.locator("h1")).to_contain_text(f"Run {run_id}")

    # a timeline row whose component used models: it links its signature too
    row = page.locator("#timeline tbody tr").filter(has=page.locator("a.signature-link"))
    row = row.first
    component = row.locator("a.component-link").inner_text().strip()
    signature_path = row.locator("a.signature-link").get_attribute("href")
    row.locator("a.component-link").click()
    page.wait_for_url(f"**/components/{quote(component)}")
    expect(page.locator("h1")).to_have_text(f"Component {component}")

    page.locator(f'#memory a.signature-link[href="{signature_path}"]').click()
    page.wait_for_url(f"**{signature_path}")
    signature = signature_path.rsplit("/", 1)[1]
    expect(page.locator("h1")).to_have_text(f"Model signature {signature}")
    expect(page.locator("#models tbody tr").first).to_be_visible()
    expect(page.locator("#usage a.component-link", has_text=component)).to_have_count(1)
    browsing.assert_clean()


def test_filter_the_runs_by_status_and_version(browsing: Browsing, ui_root) -> None:
    page = browsing.page
    page.goto("/runs")
    statuses = page.locator('select[name="status"] option').all_inner_texts()
    assert "ok" in statuses
    page.select_option('select[name="status"]', "ok")
    page.select_option('select[name="version"]', "1.1.0")
    page.locator('#run-filters button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/runs\?.*status=ok"))

    # the second demo: 3 videos x 2 pipelines, all ok
    expect(run_rows(page)).to_have_count(6)
    for row in run_rows(page).all():
        expect(row.locator(".badge")).to_have_text("ok")
        expect(row.locator("td").nth(4)).to_have_text("1.1.0")
    expect(page.locator('select[name="status"]')).to_have_value("ok")
    expect(page.locator('select[name="version"]')).to_have_value("1.1.0")
    browsing.assert_clean()


def test_older_runs_are_appended_by_htmx(browsing: Browsing, ui_root) -> None:
    page = browsing.page
    page.goto("/runs?limit=5")
    url = page.url
    expect(run_rows(page)).to_have_count(5)

    with page.expect_response(lambda r: "after=" in r.url) as response:
        page.locator("#more a").click()
    assert response.value.request.headers.get("hx-request") == "true"
    expect(run_rows(page)).to_have_count(10)
    assert page.url == url  # swapped in place, not a navigation

    page.locator("#more a").click()
    expect(run_rows(page)).to_have_count(12)
    expect(page.locator("#more")).to_have_count(0)  # no page after the last
    shown = [href.rsplit("/", 1)[1] for href in
             page.locator("#runs a.run-link").evaluate_all("links => links.map(a => a.href)")]
    assert len(shown) == len(set(shown)) == 12
    assert set(shown) == all_run_ids(ui_root)
    browsing.assert_clean()


# -- chart ----------------------------------------------------------------------------------

def test_the_component_page_draws_its_duration_chart(browsing: Browsing,
                                                      sample: Sample) -> None:
    page = browsing.page
    page.goto(f"/components/{sample.component}")
    chart = page.locator('#duration-chart[data-drawn="true"]')
    expect(chart).to_be_visible()
    canvas = chart.locator("canvas")
    expect(canvas).to_have_count(1)
    box = canvas.bounding_box()
    assert box is not None and box["width"] >= 400 and box["height"] > 100
    # one p50/p95/p99 line per signature, in the legend
    expect(chart.locator(".u-legend")).to_contain_text(f"p95 {sample.signature[:12]}")
    browsing.assert_clean()


def test_a_drift_check_plots_both_windows(browsing: Browsing) -> None:
    page = browsing.page
    page.goto("/quality")
    # newest first: the last link is the first check stored, a distribution
    page.locator("a.drift-link").last.click()
    chart = page.locator('#ecdf-chart[data-drawn="true"]')
    expect(chart).to_be_visible()
    expect(chart.locator("canvas")).to_have_count(1)
    expect(chart.locator(".u-legend")).to_contain_text("baseline")
    expect(chart.locator(".u-legend")).to_contain_text("current")
    browsing.assert_clean()


# -- cache ----------------------------------------------------------------------------------

def test_make_an_older_cache_version_current(browsing: Browsing, ui_root,
                                             sample: Sample) -> None:
    store = ArtifactStore(ui_root.root / "cache")
    name = sample.versioned_component
    before = store.info(sample.platform, sample.video)
    current = before.current(name).version
    older = max(e.version for e in before.entries[name] if e.version != current)
    others = {c: before.current(c).version for c in before.entries if c != name}

    page = browsing.page
    page.goto("/cache")
    expect(page.locator("h1")).to_have_text("Cached results (ADR-005)")
    video_path = f"/cache/{quote(sample.platform)}/{quote(sample.video)}"
    page.locator(f'a.video-link[href="{video_path}"]').click()
    page.wait_for_url(f"**{video_path}")
    expect(page.locator("h1")).to_have_text(f"Cache of {sample.platform} / {sample.video}")

    section = page.locator(f"#cache-{name}")
    expect(section.locator("tr.current .current-mark")).to_have_count(1)
    expect(section.locator("tr.current td").first).to_have_text(f"v{current}")
    older_row = section.locator("tbody tr").filter(
        has=page.locator("td.num", has_text=re.compile(rf"^v{older}$")))
    try:
        with page.expect_navigation():
            older_row.locator("button.make-current").click()
        # the POST redirects (303) back to the video's page
        assert page.url.endswith(video_path)
        expect(section.locator("tr.current td").first).to_have_text(f"v{older}")
        expect(section.locator(".current-mark")).to_have_count(1)

        after = store.info(sample.platform, sample.video)
        assert after.current(name).version == older
        assert {c: after.current(c).version for c in after.entries if c != name} == others
        browsing.assert_clean()
    finally:
        # the session's root is shared: put the version back
        store.set_current(sample.platform, sample.video, name, current)


# -- every page: clean console, screenshot --------------------------------------------------

def page_paths(sample: Sample) -> dict[str, tuple[str, str]]:
    """Screenshot name -> (path, the start of its heading)."""
    video = f"/cache/{quote(sample.platform)}/{quote(sample.video)}"
    return {
        "runs": ("/runs", "Runs"),
        "run": (f"/runs/{sample.run_id}", f"Run {sample.run_id}"),
        "components": ("/components", "Components"),
        "component": (f"/components/{sample.component}", f"Component {sample.component}"),
        "signatures": ("/signatures", "Model signatures"),
        "signature": (f"/signatures/{sample.signature}",
                      f"Model signature {sample.signature}"),
        "cache-index": ("/cache", "Cached results"),
        "cache-video": (video, f"Cache of {sample.platform} / {sample.video}"),
        "quality": ("/quality", "Drift checks and release gates"),
        # the first check stored: a distribution (they come before the rates)
        "drift-check": ("/quality/drift/1", "Drift check:"),
    }


PAGES = ["runs", "run", "components", "component", "signatures", "signature", "cache-index",
         "cache-video", "quality", "drift-check"]


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    base = os.environ.get("MLOBS_TEST_ARTIFACTS") or str(REPO_ROOT / "test-artifacts")
    path = Path(base) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("name", PAGES)
def test_page_is_clean_and_screenshotted(browsing: Browsing, sample: Sample,
                                         screenshot_dir: Path, name: str) -> None:
    path, heading = page_paths(sample)[name]
    page = browsing.page
    response = page.goto(path)
    assert response is not None and response.status == 200, f"{path}: {response.status}"
    expect(page.locator("h1")).to_contain_text(heading)
    csp = response.headers.get("content-security-policy", "")
    assert "default-src 'self'" in csp  # the policy the page is held to
    page.wait_for_load_state("networkidle")  # deferred scripts ran, chart drawn
    if name == "component":
        expect(page.locator('#duration-chart[data-drawn="true"] canvas')).to_have_count(1)
    target = screenshot_dir / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    browsing.assert_clean()


def test_the_server_has_a_favicon(browsing: Browsing) -> None:
    page = browsing.page
    page.goto("/runs")
    icon = page.locator('link[rel~="icon"]')
    path = icon.get_attribute("href") if icon.count() else "/favicon.ico"
    assert page.request.get(path).status < 400

"""Real-browser fixtures: Debian's Chromium driven by Playwright.

Without a browser the tests are skipped with a loud message, except under CI=true, where a
missing browser is a failure. A failing test leaves a screenshot in test-artifacts/.
"""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent.parent.parent / "test-artifacts"
HERE = Path(__file__).parent


def _missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")  # Playwright's sync API runs a loop on this thread while open
def browser():
    problem = _missing()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"BROWSER TESTS CANNOT RUN under CI: {problem}")
        pytest.skip(f"!!! BROWSER TESTS SKIPPED: {problem} !!!")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 900, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture
def harness(make_lab):
    """serve(lab) -> base URL of a page running the widget bundle against ``lab`` over HTTP."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from chatkit_lab.transport.http import create_app
    from chatkit_lab.widget import STATIC

    def serve(lab):
        app = Starlette(routes=[
            Route("/", lambda r: FileResponse(HERE / "harness.html")),
            Route("/standin-chatkit.js", lambda r: FileResponse(HERE / "standin-chatkit.js", media_type="text/javascript")),
            Mount("/static", StaticFiles(directory=STATIC)),
            Mount("/", create_app(lab.server, auth=lab.auth)),
        ])
        return lab.runtime.serve_app(app, "127.0.0.1", 0)

    return serve

"""Real-browser tests: Playwright driving Debian's headless Chromium."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
# from here are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


# Every page reports what its Content-Security-Policy refused, as the browser sees it.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(
    `${event.effectiveDirective} refused ${event.blockedURI || "inline"} on ${event.documentURI}`
    + ` (${event.sourceFile || "?"}:${event.lineNumber})`,
  );
});
"""


@pytest.fixture
def csp_violations() -> list[str]:
    """The CSP violations seen by this test's pages: any left at the end fails the test."""
    return []


@pytest.fixture
def new_page(browser, csp_violations: list[str], tmp_path: Path) -> Iterator:
    """Open pages in fresh browser contexts (one per user); close them all afterwards.

    A page that breaks the Content-Security-Policy fails the test, whatever it asserts.
    """
    contexts = []

    def note_violation(description: str) -> None:
        csp_violations.append(description)

    def note_console(message) -> None:
        if "Content Security Policy" in message.text:
            csp_violations.append(message.text)

    def open_page(width: int = 1400, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(20_000)
        context.expose_function("reportCspViolation", note_violation)
        context.add_init_script(CSP_LISTENER)
        context.on("console", note_console)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()
    if csp_violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(csp_violations))


def log_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)

"""Open a `distill view` page in Debian's headless Chromium (driven by playwright) and record what it did.

    with chromium() as browser:            # skips when playwright or /usr/bin/chromium is missing,
        seen = open_page(browser, path)    # unless DISTILL_REQUIRE_BROWSER=1 (CI): then it fails
        seen.page, seen.console, seen.errors, seen.requests
"""

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Never `playwright install` (no internet): Debian's chromium, kept from calling home.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _unavailable(reason: str):
    if os.environ.get("DISTILL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (DISTILL_REQUIRE_BROWSER=1) but {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def chromium():
    """A headless Chromium for a test module (launching one costs about a second)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Seen:
    page: object
    console: list[str] = field(default_factory=list)   # "error: ..." / "warning: ..." messages
    errors: list[str] = field(default_factory=list)    # uncaught exceptions in the page
    requests: list[str] = field(default_factory=list)  # every URL asked for but the page itself and data: URLs


def open_page(browser, path: Path, hash: str = "", timeout_ms: int = 30_000) -> Seen:
    """Open `path` (file://) in a fresh page and wait for the view's first render (body[data-ready=1])."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    url = Path(path).resolve().as_uri()
    seen = Seen(page)
    page.on("console", lambda m: m.type in ("error", "warning") and seen.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda err: seen.errors.append(str(err)))
    page.on("request", lambda r: r.url.split("#")[0] != url and not r.url.startswith("data:")
            and seen.requests.append(r.url))
    page.goto(url + hash)
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=timeout_ms)
    return seen


def settled(page, timeout_ms: int = 30_000) -> None:
    """Wait until the view has finished the paging, filtering or search just started."""
    page.wait_for_selector("body[data-busy='0']", state="attached", timeout=timeout_ms)

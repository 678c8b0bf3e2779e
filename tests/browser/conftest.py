"""Headless Chromium for the admin acceptance tests (Debian's /usr/bin/chromium, no downloads).

Playwright's sync API runs an event loop in the test thread, so Django's async-safety
guard must be relaxed for the ORM calls the tests make beside it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous for a cold admin page on SQLite, far below the suite's ~30 s budget.
TIMEOUT_MS = 10_000


def _unavailable(reason: str) -> None:
    if os.environ.get("GATEHOUSE_REQUIRE_SERVICES"):
        pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[object]:
    """Playwright's sync API runs an event loop in this thread while it lives: kept to one
    module, so that tests after it may run their own loops (asyncio.run, async_to_sync)."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a dev dependency
        _unavailable("playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium_browser, live_server) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh context (no cookies) per test, with relative URLs resolved on the live server."""
    from playwright.sync_api import expect

    context = chromium_browser.new_context(base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


PASSWORD = "browser-pass-123"


def log_in(page: Any, username: str) -> None:
    """Sign in through the admin's login form (the user's password is ``PASSWORD``)."""
    from playwright.sync_api import expect

    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))

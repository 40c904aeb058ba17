"""Headless Chromium for tests, through Playwright's sync API.

Use it from a test module with ``from llm_eval_pipeline_tests.browser import browser,
open_page  # noqa: F401`` and a ``browser`` argument (``# noqa: F811`` on that test: ruff
reads the argument as a redefinition of the import). Chromium is Debian's package at
``/usr/bin/chromium`` (``.ci/run`` installs it); where it is missing, tests using the
fixture fail and say how to install it (nothing is skipped silently).

The fixture is module-scoped, not session-scoped: while Playwright's sync API is running,
its event loop is marked as running on the test thread, so ``asyncio.run()`` in any later
test would fail ("cannot be called from a running event loop"). Keep browser tests in
modules of their own, or after the other tests of a module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
LOCAL_SCHEMES = ("file:", "data:", "about:")
"""URL schemes a page may load from without reaching the network."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module (about a second to start)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    # Chromium refuses its sandbox to root (as in containers); a normal user keeps it.
    args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args
        )
        yield chromium
        chromium.close()


@dataclass
class PageRecord:
    """An open page and what went wrong while it loaded and ran."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    """Requests to anything but file:, data: or about: URLs; those to http(s) are aborted."""


@contextmanager
def open_page(
    browser: Browser, url: str, *, width: int = 1280, height: int = 900
) -> Iterator[PageRecord]:
    """Open ``url`` in a fresh browser context, recording console errors, uncaught page
    errors and network requests; the context is closed afterwards."""
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        context.route(re.compile(r"^(https?|wss?)://"), lambda route: route.abort())
        record = PageRecord(context.new_page())
        record.page.on(
            "console", lambda m: m.type == "error" and record.console_errors.append(m.text)
        )
        record.page.on("pageerror", lambda error: record.page_errors.append(str(error)))
        record.page.on(
            "request",
            lambda r: r.url.startswith(LOCAL_SCHEMES) or record.external_requests.append(r.url),
        )
        record.page.goto(url, wait_until="load")
        yield record
    finally:
        context.close()

"""A headless Chromium to drive the HTTP surface's pages."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (no browser download), for one test file.

    Not for the session: Playwright's sync API runs an asyncio event loop on the main thread for as
    long as its ``with`` block lasts, and ``asyncio.run`` refuses to start in any later test of the
    same test process (tests/support/event_loops.py fails a file that leaves one running)."""
    if CHROMIUM is None:
        pytest.fail("Chromium is required for the indicator tests: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield instance
        instance.close()

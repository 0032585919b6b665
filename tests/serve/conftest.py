"""Fixtures of the serve tests: one headless Chromium (Debian's, driven by Playwright) for every
browser test; a test that asks for it is skipped without Playwright or /usr/bin/chromium."""

from __future__ import annotations

import pytest

from serving import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser extra (playwright) is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()

"""Fixtures the real-browser tests share: Playwright and one Debian chromium per module, whose
fake camera plays the module's own ``y4m`` fixture (see ``browser.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402


@pytest.fixture(scope="module")
def playwright():
    browser.chromium_path()  # skip (or fail under FER_REQUIRE_BROWSER=1) before starting anything
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright, y4m):
    b = browser.launch(playwright, y4m)
    yield b
    b.close()

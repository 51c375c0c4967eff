"""Headless Chromium for the page tests: the system's browser (Debian's `chromium`), driven by Playwright."""

from __future__ import annotations

import shutil

import pytest


def chromium_binary() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


def require_chromium() -> str:
    """The browser binary, or skip the test saying what is missing."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary found (Debian: apt-get install chromium; .ci/run installs it)")
    return binary

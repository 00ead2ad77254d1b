"""Constants and small helpers shared by the browser tests (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
#: Text the widget manager shows when a view cannot be drawn.
WIDGET_ERRORS = ("Error displaying widget", "Loading widget", "Failed to load model class", "No version of module")


def chromium_path() -> str | None:
    """The system Chromium (``$EHREXPLAIN_CHROMIUM``, ``chromium`` on PATH, /usr/bin/chromium), or None."""
    for candidate in (os.environ.get("EHREXPLAIN_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def screenshot(locator_or_page, name: str) -> Path:
    """Save a PNG under ``tests/browser/screenshots/`` (gitignored) and return its path."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    locator_or_page.screenshot(path=str(path))
    return path


def widget_errors(text: str) -> list[str]:
    """The widget-manager error phrases present in ``text``."""
    return [phrase for phrase in WIDGET_ERRORS if phrase in text]


def offline(page) -> list[str]:
    """Abort every request that is not a file:// URL; return the (live) list of aborted URLs."""
    blocked: list[str] = []

    def handle(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", handle)
    return blocked


def new_page(browser):
    """A page in its own context that records page errors in ``page.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page

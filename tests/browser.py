"""The system Chromium driven by Playwright, for tests that read a rendered report page.

Never `playwright install` (it downloads a browser): the Debian `chromium` package is used (`.ci/run` installs it in
CI; locally `apt-get install -y chromium`). Without it (or without the playwright package) a test skips with the
reason, except under CI, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium() -> str | None:
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    return exe if Path(exe).exists() else None


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    return None if chromium() else "no chromium on PATH (apt-get install -y chromium)"


def need_browser() -> None:
    """Skip on a laptop without Chromium / playwright; fail under CI (CI set), which must run the browser tests."""
    missing = missing_browser()
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {missing}")
    if missing:
        pytest.skip(missing)


@contextlib.contextmanager
def open_page(path: Path, width: int = 1280, height: int = 800) -> Iterator[tuple[object, list[str]]]:
    """(the page opened from `path` over file://, the console and page errors seen so far)."""
    need_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            yield page, errors
        finally:
            browser.close()

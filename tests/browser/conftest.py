"""The browser demo under a headless Chromium (Debian's package) driven by Playwright.

Each module gets the whole product as processes on a nats-server of its own, and one browser.
Playwright only drives the system Chromium (``executable_path``); it never downloads one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")  # fixed location of Debian's chromium package
ARTIFACTS = REPO / "test-artifacts" / "browser"
# Without the background-networking flags Chromium keeps dialling out, which a closed
# machine refuses. Playwright adds a fresh temporary --user-data-dir to every launch.
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _install_chromium() -> str | None:
    """None once Chromium is there; otherwise why it is not and could not be installed."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None or (os.geteuid() != 0 and shutil.which("sudo") is None):
        return f"{CHROMIUM} is missing and cannot be installed here (no apt-get, or not root)"
    try:
        done = subprocess.run(["make", "-s", "browser-deps"], cwd=REPO, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{CHROMIUM} is missing and `make browser-deps` could not run: {exc}"
    if done.returncode != 0 or not CHROMIUM.exists():
        return f"{CHROMIUM} is missing and `make browser-deps` failed: {done.stderr[-500:]}"
    return None


@contextlib.contextmanager
def _plain_asyncio() -> Iterator[None]:
    """Playwright's sync API runs its own asyncio loop; trio-asyncio (used by other tests in
    this process) replaces the loop policy with one whose loops cannot host it."""
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is missing: pip install -e '.[dev]'")
    reason = _install_chromium()
    if reason:
        pytest.skip(reason)
    with _plain_asyncio(), sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (``test-artifacts/browser/`` at the repository root, not committed)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS

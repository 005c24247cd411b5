"""Browser tests: a real `nexus serve` and Debian's headless Chromium driven by Playwright.

Chromium is never downloaded (`playwright install` is not used): the tests launch the
system browser at CHROMIUM (``/usr/bin/chromium``, from ``apt-get install chromium``;
``.ci/run`` installs it) and fail, not skip, when it or Playwright is missing. Screenshots
of the main views are saved under ``build/test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.harness import ServerProcess, start_server, token

CHROMIUM = os.environ.get("NEXUS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "browser"
# The machine may have no internet: without these flags Chromium keeps trying to reach
# Google's services (and floods the log with refused connections).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Offline agent replies in parts 0.2 s apart, so a reply is seen while it streams.
SLOW_OFFLINE = json.dumps({"offline": {"type": "offline", "part_delay": 0.2}})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module (there is one); each test opens its own contexts.

    Module scope, not session: Playwright's sync API keeps its event loop marked as
    running in this thread until it stops, and the asyncio tests of later modules need
    it gone."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install '.[test]'")
    if not (Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: apt-get install chromium (or set NEXUS_CHROMIUM); "
            "never `playwright install`"
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pw = sync_playwright().start()
    # launch() gives every run a fresh temporary profile (user data dir).
    chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield chromium
    finally:
        chromium.close()
        pw.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("data"), ai_providers=SLOW_OFFLINE)
    yield srv
    assert srv.stop() == 0, "".join(srv.output)


def app_url(server: ServerProcess, tok: str, room: str | None = None) -> str:
    query = f"?room={room}" if room else ""
    return f"{server.api}/app/{query}#token={tok}"


__all__ = ["ARTIFACTS", "app_url", "token"]

"""SIGUSR1 starts the drain (the Helm chart's preStop hook sends it); SIGTERM then finishes it
without waiting the whole drain_delay again."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from .harness import Client, start_server, token

DRAIN_DELAY = 3.0


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def _wait_status(url: str, status: int) -> dict[str, object]:
    for _ in range(200):
        got, body = await asyncio.to_thread(_get, url)
        if got == status:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never answered {status}")


async def test_sigusr1_drains_while_serving_then_sigterm_stops_at_once(tmp_path: Path) -> None:
    server = start_server(tmp_path, drain_delay=DRAIN_DELAY)
    ready = _get(server.http + "/readyz")
    assert ready == (200, {"status": "ready", "checks": ["store"]})
    client = await Client.connect(server.url, token("ann"))
    await client.join("r")

    started = time.monotonic()
    server.proc.send_signal(signal.SIGUSR1)
    assert await _wait_status(server.http + "/readyz", 503) == {"status": "draining"}
    ws_http = server.url.replace("ws://", "http://").rsplit("/", 1)[0]
    assert _get(ws_http + "/readyz") == (503, {"status": "draining"})
    assert _get(server.http + "/healthz")[0] == 200
    # connected clients are still served; new upgrades are turned away
    assert (await client.say("r", "still here"))["seq"] >= 1
    try:
        await Client.connect(server.url, token("bob"))
    except Exception as exc:  # the upgrade is refused with 503
        assert "503" in str(exc)
    else:
        raise AssertionError("a new WebSocket was accepted while draining")

    await asyncio.sleep(DRAIN_DELAY)  # what the preStop hook sleeps
    server.proc.send_signal(signal.SIGTERM)
    assert await client.closed_code() == 1001
    assert await asyncio.to_thread(server.proc.wait, 20) == 0
    # the drain_delay already passed since SIGUSR1: SIGTERM did not wait it again
    assert time.monotonic() - started < 2 * DRAIN_DELAY

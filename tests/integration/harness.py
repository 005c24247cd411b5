"""Run a real `nexus serve` process on loopback and talk to it with a real WebSocket client."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from nexus.auth import mint_token

SECRET = "integration-test-secret-0123456789"
ISSUER = "nexus-test"
AUDIENCE = "nexus-test-clients"
START_TIMEOUT = 20.0


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int
    data_dir: Path
    output: list[str] = field(default_factory=list)
    api_port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        """Health endpoints on the WebSocket port."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        """The HTTP API's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start_server(
    data_dir: Path, *, env_extra: dict[str, str] | None = None, **settings: Any
) -> ServerProcess:
    """Start `python -m nexus serve` on a free port and wait for its URL line.

    ``settings`` become NEXUS_* variables; ``env_extra`` adds other environment variables
    (e.g. PYTHONPATH for a test extension)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env.update(env_extra or {})
    env.update(
        {
            "NEXUS_AUTH_SECRET": SECRET,
            "NEXUS_AUTH_ISSUER": ISSUER,
            "NEXUS_AUTH_AUDIENCE": AUDIENCE,
            "NEXUS_LOG_LEVEL": "warning",
            "NEXUS_PRINT_DEV_TOKEN": "false",
            "NEXUS_HTTP_PORT": "0",
        }
    )
    for key, value in settings.items():
        if value is None:
            env.pop(f"NEXUS_{key.upper()}", None)
        else:
            env[f"NEXUS_{key.upper()}"] = str(value)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    server = ServerProcess(proc, 0, data_dir)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if line.startswith("nexus listening on "):
            server.port = int(line.rsplit(":", 1)[1].split("/")[0])
        elif line.startswith("nexus http api on "):
            server.api_port = int(line.rsplit(":", 1)[1])
            return server
    proc.kill()
    raise RuntimeError("server did not start:\n" + "".join(server.output))


def module_server(**settings: Any) -> Callable[..., Iterator[ServerProcess]]:
    """A module-scoped fixture: one server with ``settings`` for the module's tests."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        srv = start_server(tmp_path_factory.mktemp("data"), **settings)
        yield srv
        srv.stop()

    return fixture


def token(
    user: str,
    tenant: str = "acme",
    roles: tuple[str, ...] = ("member",),
    kind: str = "human",
    **kw: Any,
) -> str:
    kw.setdefault("issuer", ISSUER)
    kw.setdefault("audience", AUDIENCE)
    return mint_token(kw.pop("key", SECRET), user=user, tenant=tenant, roles=roles, kind=kind, **kw)


class Client:
    """A WebSocket client that reads events in order and can wait for one of a type."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.backlog: list[dict[str, Any]] = []
        self._next_id = 0

    @classmethod
    async def connect(
        cls, url: str, tok: str | None = None, *, header: bool = False, **kw: Any
    ) -> Client:
        headers = {"Authorization": f"Bearer {tok}"} if (tok and header) else None
        ws = await websockets.connect(
            url, additional_headers=headers, max_size=None, max_queue=None, open_timeout=10, **kw
        )
        client = cls(ws)
        if tok and not header:
            ok = await client.request({"type": "auth", "token": tok})
            assert ok["type"] == "auth.ok", ok
        elif tok:
            ok = await client.next("auth.ok")
        return client

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(obj).decode())

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return orjson.loads(raw)

    async def next(self, *types: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of one of ``types``; other events stay queued in order."""
        for i, event in enumerate(self.backlog):
            if event["type"] in types:
                return self.backlog.pop(i)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            raw = await asyncio.wait_for(self.ws.recv(), max(left, 0.001))
            event = orjson.loads(raw)
            if event["type"] in types:
                return event
            self.backlog.append(event)

    async def request(self, obj: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send with a fresh id; return the reply (or error) carrying that id."""
        self._next_id += 1
        rid = f"r{self._next_id}"
        await self.send({**obj, "id": rid})
        deadline = asyncio.get_running_loop().time() + timeout
        for i, event in enumerate(self.backlog):
            if event.get("id") == rid and event["type"] != "message":
                return self.backlog.pop(i)
        while True:
            left = deadline - asyncio.get_running_loop().time()
            event = orjson.loads(await asyncio.wait_for(self.ws.recv(), max(left, 0.001)))
            if event.get("id") == rid and event["type"] != "message":
                return event
            self.backlog.append(event)

    async def barrier(self) -> list[dict[str, Any]]:
        """Round-trip a ping; return every event that arrived before the pong."""
        reply = await self.request({"type": "ping"})
        assert reply["type"] == "pong", reply
        seen, self.backlog = self.backlog, []
        return seen

    async def join(self, room: str, **kw: Any) -> dict[str, Any]:
        reply = await self.request({"type": "room.join", "room": room, **kw})
        assert reply["type"] == "room.joined", reply
        return reply

    async def say(self, room: str, body: str, **kw: Any) -> dict[str, Any]:
        reply = await self.request({"type": "message.send", "room": room, "body": body, **kw})
        assert reply["type"] == "ack", reply
        return reply

    async def closed_code(self, timeout: float = 10.0) -> int | None:
        """Wait for the server to close; return the close code it sent."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

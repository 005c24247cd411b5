"""A load generator that stays out of the way: asyncio protocols over raw sockets.

Clients send pre-built frames masked with the all-zero key (legal per RFC 6455, so a
frame is built once and written many times) and count received frames from the raw
bytes with the Cython frame scanner. Only frames whose payload starts with the
target's message prefix count as deliveries (acks and presence do not).
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nexus._speedups.framing import count_frames, count_messages

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x1, 0x2, 0x8, 0x9


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A masked final frame (TEXT unless ``opcode`` says otherwise) with the zero masking
    key: the payload goes out unchanged."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


def upgrade_request(host: str, path: str, headers: dict[str, str]) -> bytes:
    """The HTTP/1.1 WebSocket upgrade request, ``headers`` added (e.g. Authorization)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: "
        f"{base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    ).encode()


@dataclass
class Stats:
    received: int = 0
    latencies: list[float] = field(default_factory=list)


class WsClient(asyncio.Protocol):
    """One connection. ``on_messages(n, now)`` is called with each batch of deliveries."""

    def __init__(self, host: str, path: str, headers: dict[str, str], prefix: bytes) -> None:
        self.transport: asyncio.Transport | None = None
        self._request = upgrade_request(host, path, headers)
        self._prefix = prefix
        self._buf = bytearray()
        self._upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_messages: Callable[[int, float], None] | None = None
        self.frames = 0
        self.messages = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(buf[:end]).decode(errors="replace")))
                return
            del buf[: end + 4]
            self._upgraded = True
            self.ready.set_result(None)
        frames, messages, offset = count_messages(buf, self._prefix)
        if offset:
            del buf[:offset]
        self.frames += frames
        if messages:
            self.messages += messages
            if self.on_messages is not None:
                self.on_messages(messages, time.perf_counter())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def count(self, prefix: bytes) -> None:
        """Count frames whose payload starts with ``prefix`` as messages from now on (e.g.
        join answers while joining, then deliveries)."""
        self._prefix = prefix

    def send(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect(
    host: str, port: int, path: str, headers: dict[str, str], prefix: bytes
) -> WsClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: WsClient(f"{host}:{port}", path, headers, prefix), host, port
    )
    await asyncio.wait_for(client.ready, 30)
    return client


class CpuClock:
    """CPU seconds used by this process (the generator) and by a server process."""

    def __init__(self, server_pid: int | None) -> None:
        self.pid = server_pid
        self._t0 = time.perf_counter()
        self._self0 = self._self()
        self._server0 = self._server()

    def _self(self) -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def _server(self) -> float:
        if self.pid is None:
            return 0.0
        try:
            fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        total = int(fields[11]) + int(fields[12])
        # include the server's child processes (node peer is run directly, so none)
        return total / ticks

    def seconds(self) -> tuple[float, float, float]:
        """(wall, generator CPU, server CPU) seconds since creation. CPU is user + sys, in
        clock ticks (10 ms on Linux): measure for a second or more."""
        return (
            time.perf_counter() - self._t0,
            self._self() - self._self0,
            self._server() - self._server0,
        )

    def read(self) -> tuple[float, float, float]:
        """(wall seconds, generator CPU %, server CPU %) since creation."""
        wall, gen, server = self.seconds()
        return wall, 100 * gen / wall, 100 * server / wall


def percentiles(
    values: list[float], points: tuple[float, ...] = (0.5, 0.99, 0.999)
) -> dict[str, float]:
    """Latency percentiles in milliseconds (exact, from the sorted samples)."""
    if not values:
        return {f"p{p * 100:g}": float("nan") for p in points}
    ordered = sorted(values)
    return {
        f"p{p * 100:g}": ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000
        for p in points
    }


class SendTimes:
    """Send timestamps of one ordered stream, matched to deliveries by position."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def sent(self) -> None:
        self.times.append(time.perf_counter())

    def delivered(self, n: int, now: float, out: list[float]) -> None:
        times = self.times
        for _ in range(min(n, len(times))):
            out.append(now - times.popleft())


__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_TEXT",
    "CpuClock",
    "SendTimes",
    "Stats",
    "WsClient",
    "client_frame",
    "connect",
    "count_frames",
    "percentiles",
    "upgrade_request",
]

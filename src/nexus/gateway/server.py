"""The gateway listener: HTTP health endpoints and WebSocket upgrades on one port."""

from __future__ import annotations

import asyncio
import logging

import orjson
from picows import (
    WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener, ws_create_server,
)

from .._speedups.router import FlushQueue
from ..auth import TokenVerifier
from ..config import Settings
from ..errors import CloseCode, NexusError, Unauthorized
from ..observability.logging import PICOWS_LOGGER
from ..protocol import Decoder, Limits
from .connection import Connection
from .budget import TickBudgets
from .heartbeat import Heartbeat
from .node import Node

log = logging.getLogger(__name__)

WS_PATHS = (b"/", b"/ws")
JSON = {"Content-Type": "application/json"}


VERSION_HEADER = {"Sec-WebSocket-Version": "13"}


def _json_response(status: int, body: dict[str, object],
                   headers: dict[str, str] | None = None) -> WSUpgradeResponseWithListener:
    payload = orjson.dumps(body)
    extra = JSON if headers is None else {**JSON, **headers}
    if status == 200:
        response = WSUpgradeResponse.create_ok_response(payload, extra)
    else:
        response = WSUpgradeResponse.create_error_response(status, payload, extra)
    return WSUpgradeResponseWithListener(response, None)


class GatewayStats:
    """Plain counters updated by connections, read by the metrics scrape."""

    __slots__ = ("connections", "auth_failures", "bytes_in", "frames_in", "rate_limited",
                 "slow_consumers", "forced_disconnects", "pings_refused", "refused_closes",
                 "floods")

    def __init__(self) -> None:
        self.connections = 0
        self.auth_failures: dict[str, int] = {}
        self.bytes_in = 0
        self.frames_in = 0
        self.rate_limited = 0  # WebSocket requests refused with rate_limited
        self.slow_consumers = 0
        self.forced_disconnects = 0
        self.pings_refused = 0  # WebSocket PINGs over the rate, left unanswered
        self.refused_closes = 0  # connections closed 4004 for refused frames
        self.floods = 0  # connections closed 4004 for too many frames in one read

    def auth_failed(self, reason: str) -> None:
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1


class Gateway:
    def __init__(self, settings: Settings, node: Node, verifier: TokenVerifier,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.node = node
        self.verifier = verifier
        self.loop = loop
        self.decoder = Decoder(Limits(settings.max_body_bytes, settings.max_meta_bytes,
                                      settings.history_max_limit))
        self.flush_queue = FlushQueue(loop)
        self.budgets = TickBudgets(loop)
        self.frames_per_tick = settings.frames_per_tick
        self.connections: set[Connection] = set()
        self.draining = False
        self.server: asyncio.Server | None = None
        self.stats = GatewayStats()
        self.heartbeat = Heartbeat(loop, lambda: self.connections,
                                   interval=settings.heartbeat_interval,
                                   timeout=settings.heartbeat_timeout)

    def _route(self, request: WSUpgradeRequest) -> Connection | WSUpgradeResponseWithListener:
        path = request.path.split(b"?", 1)[0]
        if path == b"/healthz":
            return _json_response(200, {"status": "ok"})
        if path == b"/readyz":
            if self.draining:
                return _json_response(503, {"status": "draining"})
            return _json_response(200, {"status": "ready"})
        if path not in WS_PATHS:
            return _json_response(404, {"error": {"code": "not_found",
                                                  "message": "no such endpoint"}})
        if self.draining:
            return _json_response(503, {"error": {"code": "unavailable",
                                                  "message": "server is shutting down"}})
        headers = request.headers
        if headers.get("Upgrade", "").lower() != "websocket":
            return _json_response(426, {"error": {"code": "bad_request",
                                                  "message": "WebSocket upgrade required"}},
                                  VERSION_HEADER)
        if headers.get("Sec-WebSocket-Version") != "13":
            # RFC 6455 4.4: name the version this server speaks.
            return _json_response(426, {"error": {"code": "bad_request",
                                                  "message": "WebSocket version 13 required"}},
                                  VERSION_HEADER)
        connection = headers.get("Connection", "")
        if connection.lower() != "upgrade" and "upgrade" in (
                token.strip().lower() for token in connection.split(",")):
            # "keep-alive, Upgrade" (Firefox) is a valid upgrade; picows wants it alone.
            headers["Connection"] = "Upgrade"
        header = request.headers.get("Authorization")
        principal = None
        if header is not None:
            scheme, _, token = header.partition(" ")
            try:
                if scheme.lower() != "bearer" or not token:
                    raise Unauthorized("Authorization header must be 'Bearer <token>'")
                principal = self.verifier.verify(token.strip())
            except NexusError as exc:
                self.stats.auth_failed(exc.message)
                return _json_response(401, {"error": {"code": "unauthorized",
                                                      "message": exc.message}})
        return Connection(self, principal)

    async def start(self) -> int:
        s = self.settings
        self.server = await ws_create_server(
            self._route, s.host, s.port,
            max_frame_size=s.max_frame_bytes,
            read_buffer_init_size=s.read_buffer_bytes,
            enable_auto_ping=False,  # one Heartbeat sweep serves all connections
            # Pongs are ours: rate limited and queued in the outbox like any other frame.
            enable_auto_pong=False,
            websocket_handshake_timeout=s.auth_timeout,
            logger_name=logging.getLogger(PICOWS_LOGGER),  # a Logger: no "picows." prefix
            backlog=s.listen_backlog,
            # uvloop's own TCP transport: 12.8 KB per idle authenticated connection against
            # 18.8 KB with aiofastnet's (picows' default when installed), same throughput.
            use_aiofastnet=False,
        )
        self.heartbeat.start()
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def drain(self, timeout: float) -> None:
        """Stop accepting, close every client with 1001, wait for them to go (bounded)."""
        self.draining = True
        self.heartbeat.stop()
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        deadline = self.loop.time() + timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)

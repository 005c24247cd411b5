"""The gateway listener: HTTP health endpoints and WebSocket upgrades on one port.

Also the gateway's face to the rest of the server: it implements ``core.sessions.
LiveSessions`` (what the HTTP API may see and do about live sessions) and runs as a
service (start, graceful stop).
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from picows import (
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from .._speedups.router import FlushQueue
from ..auth import TokenVerifier
from ..config import Settings
from ..core.pipeline import MessagePipeline
from ..core.sessions import SessionInfo
from ..errors import CloseCode, NexusError, Unauthorized
from ..observability.health import Health
from ..observability.logging import PICOWS_LOGGER
from ..protocol import Decoder, Limits
from .budget import TickBudgets
from .connection import Connection
from .context import GatewayContext
from .handlers import RequestHandlers
from .heartbeat import Heartbeat

log = logging.getLogger(__name__)

WS_PATHS = (b"/", b"/ws")
JSON = {"Content-Type": "application/json"}
VERSION_HEADER = {"Sec-WebSocket-Version": "13"}


def _json_response(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> WSUpgradeResponseWithListener:
    payload = orjson.dumps(body)
    extra = JSON if headers is None else {**JSON, **headers}
    if status == 200:
        response = WSUpgradeResponse.create_ok_response(payload, extra)
    else:
        response = WSUpgradeResponse.create_error_response(status, payload, extra)
    return WSUpgradeResponseWithListener(response, None)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> WSUpgradeResponseWithListener:
    return _json_response(status, {"error": {"code": code, "message": message}}, headers)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        handlers: RequestHandlers,
        verifier: TokenVerifier,
        pipeline: MessagePipeline,
        health: Health,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.settings = settings
        self.handlers = handlers
        self._pipeline = pipeline
        self._health = health
        self.loop = loop
        self.flush_queue = FlushQueue(loop)
        self.context = GatewayContext(
            settings,
            loop,
            handlers,
            verifier,
            Decoder(
                Limits(settings.max_body_bytes, settings.max_meta_bytes, settings.history_max_limit)
            ),
            self.flush_queue,
            TickBudgets(loop),
        )
        self.stats = self.context.stats
        self.connections = self.context.connections
        self.server: asyncio.Server | None = None
        self.heartbeat = Heartbeat(
            loop,
            lambda: self.connections,
            interval=settings.heartbeat_interval,
            timeout=settings.heartbeat_timeout,
        )
        self.port = 0

    # -- upgrades ------------------------------------------------------------
    def _route(self, request: WSUpgradeRequest) -> Connection | WSUpgradeResponseWithListener:
        path = request.path.split(b"?", 1)[0]
        if path == b"/healthz":
            return _json_response(*self._health.live())
        if path == b"/readyz":
            return _json_response(*self._health.ready())
        if path not in WS_PATHS:
            return _error(404, "not_found", "no such endpoint")
        if self._health.draining:
            return _error(503, "unavailable", "server is shutting down")
        headers = request.headers
        if headers.get("Upgrade", "").lower() != "websocket":
            return _error(426, "bad_request", "WebSocket upgrade required", VERSION_HEADER)
        if headers.get("Sec-WebSocket-Version") != "13":
            # RFC 6455 4.4: name the version this server speaks.
            return _error(426, "bad_request", "WebSocket version 13 required", VERSION_HEADER)
        connection = headers.get("Connection", "")
        if connection.lower() != "upgrade" and "upgrade" in (
            token.strip().lower() for token in connection.split(",")
        ):
            # "keep-alive, Upgrade" (Firefox) is a valid upgrade; picows wants it alone.
            headers["Connection"] = "Upgrade"
        header = headers.get("Authorization")
        principal = None
        if header is not None:
            scheme, _, token = header.partition(" ")
            try:
                if scheme.lower() != "bearer" or not token:
                    raise Unauthorized("Authorization header must be 'Bearer <token>'")
                principal = self.context.verifier.verify(token.strip())
            except NexusError as exc:
                self.stats.auth_failed(exc.message)
                return _error(401, "unauthorized", exc.message)
        return Connection(self.context, principal)

    # -- service -------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self.server = await ws_create_server(
            self._route,
            s.host,
            s.port,
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
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting, let pending commits finish (their acks go out), then close every
        client with 1001 and wait for them to go (each step bounded)."""
        timeout = self.settings.shutdown_timeout
        if self.server is not None:
            self.server.close()
        try:
            await asyncio.wait_for(self._pipeline.wait_idle(), timeout)
        except TimeoutError:
            log.error("pending commits did not finish within %.1fs", timeout)
        self.flush_queue.flush()
        self.heartbeat.stop()
        for conn in list(self.connections):
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if self.connections:
            self.context.all_closed = self.loop.create_future()
            try:
                await asyncio.wait_for(self.context.all_closed, timeout)
            except TimeoutError:
                log.warning("%d connections still open after %.1fs", len(self.connections), timeout)

    # -- core.sessions.LiveSessions --------------------------------------------
    def sessions_of(self, tenant: str) -> list[SessionInfo]:
        return self.handlers.sessions_of(tenant)

    def online_users(self, tenant: str) -> set[str]:
        return {s.user_id for s in self.handlers.sessions_of(tenant)}

    def disconnect(self, tenant: str, session_id: str, code: int, reason: str) -> bool:
        session = self.handlers.sessions.get(session_id)
        if session is None or session.principal is None or session.principal.tenant != tenant:
            return False
        for conn in self.connections:
            if conn.session is session:
                self.stats.forced_disconnects += 1
                conn.close(code, reason)
                return True
        return False

    def connection_count(self) -> int:
        return len(self.connections)

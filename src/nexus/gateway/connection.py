"""picows listener for one client: frames in -> decoder -> node; errors -> events/close codes."""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from .._speedups.router import Outbox
from ..auth import Principal
from ..errors import BadRequest, CloseCode, Internal, NexusError, RateLimited, Unauthorized
from ..protocol import Auth, events
from ..protocol.requests import RequestId
from .session import Session

if TYPE_CHECKING:
    from .server import Gateway

log = logging.getLogger(__name__)

# After a close frame, give the peer this long to read it before the socket is aborted.
ABORT_AFTER_CLOSE_S = 2.0


class Connection(WSListener):
    __slots__ = ("gateway", "transport", "session", "_preauth", "_auth_timer", "_closing",
                 "last_rx", "ping_sent", "expires_at")

    def __init__(self, gateway: Gateway, preauthenticated: Principal | None) -> None:
        super().__init__()
        self.gateway = gateway
        self._preauth = preauthenticated
        self._auth_timer: object = None
        self._closing = False
        self.last_rx = gateway.loop.time()
        self.ping_sent = 0.0
        self.expires_at = 0.0

    # -- picows callbacks ----------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        gw = self.gateway
        self.transport = transport
        raw = transport.underlying_transport
        outbox = Outbox(raw, gw.flush_queue, gw.settings.outbound_limit_bytes, self._on_overflow)
        peer = raw.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.session = Session(secrets.token_hex(8), outbox, gw.node.new_bucket(), remote)
        outbox.owner = self
        gw.connections.add(self)
        gw.stats.connections += 1
        log.debug("connected", extra=self._log_context())
        if self._preauth is not None:
            self._authenticated(self._preauth, None)
        else:
            self._auth_timer = gw.loop.call_later(gw.settings.auth_timeout, self._auth_timeout)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self._closing:
            return
        gw = self.gateway
        self.last_rx = gw.loop.time()
        self.ping_sent = 0.0
        stats = gw.stats
        stats.frames_in += 1
        stats.bytes_in += frame.payload_size
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            if not frame.fin:
                self.close(CloseCode.UNSUPPORTED_DATA, "fragmented messages are not supported")
                return
            self._on_text(frame.get_payload_as_memoryview())
        elif kind == WSMsgType.CLOSE:
            code = frame.get_close_code()
            # A close without a status code is answered with 1000, never with "0" (RFC 6455).
            transport.send_close(code if code != WSCloseCode.NO_INFO else WSCloseCode.OK,
                                 frame.get_close_message())
            transport.disconnect()
        elif kind == WSMsgType.BINARY:
            self._reply_error(BadRequest("binary frames are not supported; send JSON text"))
        elif kind == WSMsgType.CONTINUATION:
            self.close(CloseCode.UNSUPPORTED_DATA, "fragmented messages are not supported")
        # PONG frames need nothing more: receiving them already counted as life.

    # -- heartbeat (driven by gateway.heartbeat.Heartbeat) -------------------
    def ping(self) -> None:
        self.session.outbox.flush()
        self.transport.send_ping()

    def token_expired(self) -> None:
        self.session.send(events.error(Unauthorized("token expired")))
        self.close(CloseCode.TOKEN_EXPIRED, "token expired")

    def heartbeat_lost(self) -> None:
        self.close(CloseCode.GOING_AWAY, "no pong within the heartbeat timeout", flush=False)

    def pause_writing(self) -> None:
        self.session.pause_writing()

    def resume_writing(self) -> None:
        self.session.resume_writing()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closing = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()  # type: ignore[attr-defined]
        self.session.outbox.close()
        self.gateway.connections.discard(self)
        self.gateway.node.detach(self.session)

    # -- requests ------------------------------------------------------------
    def _on_text(self, payload: memoryview) -> None:
        gw = self.gateway
        session = self.session
        req = None
        try:
            if session.principal is None:
                # Before auth only the connection's own bucket applies (there is no user yet).
                wait_ms = session.bucket.take(time.monotonic())
                if wait_ms:
                    gw.stats.rate_limited_preauth += 1
                    raise RateLimited("request rate limit exceeded", retry_after_ms=wait_ms)
            req = gw.decoder.decode(payload)
            if session.principal is None:
                if not isinstance(req, Auth):
                    raise Unauthorized("authenticate first: send auth", request_id=req.id)
                try:
                    principal = gw.verifier.verify(req.token)
                except NexusError as exc:
                    exc.request_id = req.id
                    raise
                self._authenticated(principal, req.id)
            else:
                gw.node.handle(session, req)
        except NexusError as exc:
            self._reply_error(exc)
        except Exception:
            log.exception("request failed", extra=self._log_context())
            self._reply_error(Internal("internal error",
                                       request_id=req.id if req is not None else None))

    def _reply_error(self, exc: NexusError) -> None:
        if isinstance(exc, Unauthorized):
            self.gateway.stats.auth_failed(exc.message)
        self.session.send(events.error(exc))
        if exc.close_code is not None:
            self.close(exc.close_code, exc.message)

    def _authenticated(self, principal: Principal, rid: RequestId) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()  # type: ignore[attr-defined]
            self._auth_timer = None
        # The same leeway that admitted the token applies to closing the session.
        exp = principal.expires_at
        self.expires_at = exp + self.gateway.settings.auth_leeway if exp else 0.0
        self.gateway.node.attach(self.session, principal)
        self.session.send(events.auth_ok(rid, principal.user_id, principal.tenant,
                                         self.session.session_id, principal.kind,
                                         principal.roles))

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if self.session.principal is None and not self._closing:
            self.gateway.stats.auth_failed("auth timeout")
            self.session.send(events.error(Unauthorized("no auth within the auth timeout")))
            self.close(CloseCode.AUTH_TIMEOUT, "auth timeout")

    def _log_context(self) -> dict[str, str]:
        session = self.session
        who = session.principal
        return {"session_id": session.session_id, "remote": session.remote,
                "user": f"{who.tenant}/{who.user_id}" if who else ""}

    # -- closing -------------------------------------------------------------
    def _on_overflow(self) -> None:
        self.gateway.stats.slow_consumers += 1
        outbox = self.session.outbox
        log.warning("outbound buffer over limit (%d queued, %d in transport, limit %d), "
                    "disconnecting slow consumer", outbox.dropped_bytes,
                    outbox.transport_buffered, outbox.limit, extra=self._log_context())
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer: outbound buffer limit exceeded",
                   flush=False)

    def close(self, code: int, reason: str, *, flush: bool = True) -> None:
        """Send a close frame after what is queued, then drop the socket."""
        if self._closing:
            return
        self._closing = True
        log.info("closing %d: %s", code, reason, extra=self._log_context())
        outbox = self.session.outbox
        if flush:
            outbox.flush()
        outbox.close()
        # The session is over now: leave rooms (presence) without waiting for the socket.
        self.gateway.node.detach(self.session)
        transport = self.transport
        transport.send_close(WSCloseCode(code), reason.encode()[:123])
        if flush:
            transport.disconnect(graceful=True)
        # A peer that does not read would keep the socket (and its buffer) forever.
        self.gateway.loop.call_later(ABORT_AFTER_CLOSE_S, transport.disconnect, False)

"""picows listener for one client: frames in -> decoder -> node; errors -> events/close codes.

RFC 6455 rules picows leaves to its user are enforced here: reserved bits (no extension
is ever negotiated), close codes, fragmented messages (reassembled up to
``max_frame_bytes``), UTF-8 of text messages, pongs. Every byte queued for the peer goes
through its outbox, pongs included, so it counts against ``outbound_limit_bytes``.

Fairness: each frame is charged to the connection's budget for the current loop
iteration (``frames_per_tick`` units: 1 a frame plus 1 per 4 KiB of payload). Past it,
reading pauses and the frames of the current read are held back for the next
iteration; a read holding more than ``flood_backlog_frames`` frames closes the
connection (4004). Every data or ping frame draws from the rate buckets, and every
refusal (an error reply, a ping over the rate) from a per-connection allowance of
``refused_burst`` refilled at ``refused_per_s``; a client that exhausts it is closed (4004).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from .._speedups.framing import frame_ping, frame_pong
from .._speedups.ratelimit import TokenBucket, take_both
from .._speedups.router import Outbox
from ..auth import Principal
from ..errors import BadRequest, CloseCode, Internal, NexusError, RateLimited, Unauthorized
from ..protocol import Auth, MessageSend, events
from ..protocol.requests import RequestId
from .session import Session

if TYPE_CHECKING:
    from .context import GatewayContext

log = logging.getLogger(__name__)

# After a close frame, give the peer this long to read it before the socket is aborted.
ABORT_AFTER_CLOSE_S = 2.0
# Close codes a peer may send (RFC 6455 7.4, IANA registry); 3000-4999 are for applications.
VALID_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
HOLD_BYTES_PER_FRAME_LIMIT = 16  # held-back bytes allowed: this many max-size frames
PING_FRAME = frame_ping(b"")

TEXT = WSMsgType.TEXT
BINARY = WSMsgType.BINARY
CONTINUATION = WSMsgType.CONTINUATION
PING = WSMsgType.PING
CLOSE = WSMsgType.CLOSE

Held = tuple[WSMsgType, bool, bool, bytes]  # (opcode, fin, any rsv bit, payload)


def valid_close_code(code: int) -> bool:
    return code in VALID_CLOSE_CODES or 3000 <= code <= 4999


def _is_utf8(payload: bytes | memoryview) -> bool:
    try:
        bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Connection(WSListener):
    __slots__ = (
        "gateway",
        "transport",
        "session",
        "_preauth",
        "_auth_timer",
        "_closing",
        "last_rx",
        "ping_sent",
        "expires_at",
        "_used",
        "_held",
        "_held_bytes",
        "_fragments",
        "_fragment_kind",
        "_fragment_bytes",
        "_refusals",
    )

    def __init__(self, gateway: GatewayContext, preauthenticated: Principal | None) -> None:
        super().__init__()
        self.gateway = gateway
        self._preauth = preauthenticated
        self._auth_timer: object = None
        self._closing = False
        self.last_rx = gateway.loop.time()
        self.ping_sent = 0.0
        self.expires_at = 0.0
        self._used = 0  # budget spent in this loop iteration
        self._held: list[Held] | None = None  # frames waiting for the next iteration
        self._held_bytes = 0
        self._fragments: list[bytes] | None = None  # a fragmented message in progress
        self._fragment_kind = TEXT
        self._fragment_bytes = 0
        self._refusals: TokenBucket | None = None  # made at the first refusal

    # -- picows callbacks ----------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        gw = self.gateway
        self.transport = transport
        raw = transport.underlying_transport
        outbox = Outbox(raw, gw.flush_queue, gw.settings.outbound_limit_bytes, self._on_overflow)
        self.session = Session(secrets.token_hex(8), outbox, gw.handlers.new_bucket())
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
        if transport.is_close_frame_sent:
            # picows parses one frame ahead and has failed the connection on the next one
            # (bad opcode, oversized): nothing may follow its close frame, queued replies
            # included.
            self._abandon()
            return
        gw = self.gateway
        self.last_rx = gw.loop.time()
        self.ping_sent = 0.0
        size = frame.payload_size
        stats = gw.stats
        stats.frames_in += 1
        stats.bytes_in += size
        rsv = bool(frame.rsv1 | frame.rsv2 | frame.rsv3)
        if self._held is not None:
            self._hold((frame.msg_type, bool(frame.fin), rsv, frame.get_payload_as_bytes()))
            return
        cost = 1 + (size >> 12)
        used = self._used
        if not used:
            gw.budgets.mark(self)
        used += cost
        self._used = used
        if used > gw.frames_per_tick and used != cost:
            # Over budget for this iteration (one frame always passes): stop reading and
            # keep the rest of this read for the next iteration.
            self._held = []
            transport.underlying_transport.pause_reading()
            self._hold((frame.msg_type, bool(frame.fin), rsv, frame.get_payload_as_bytes()))
            return
        kind = frame.msg_type
        if kind == TEXT and frame.fin and not rsv and self._fragments is None:
            self._on_text(frame.get_payload_as_memoryview())  # the common case, directly
        else:
            self._frame(kind, frame.fin, rsv, frame.get_payload_as_memoryview())

    def tick(self) -> None:
        """A new loop iteration: reset the budget and process held-back frames."""
        held = self._held
        if held is None:
            self._used = 0
            return
        budget = self.gateway.frames_per_tick
        used = 0
        done = 0
        for kind, fin, rsv, payload in held:
            if self._closing:
                break
            cost = 1 + (len(payload) >> 12)
            if used and used + cost > budget:
                break
            used += cost
            done += 1
            self._frame(kind, fin, rsv, payload)
        self._used = used
        if self._closing:
            self._held = None
            return
        del held[:done]
        self.gateway.budgets.mark(self)
        if held:
            self._held_bytes = sum(len(h[3]) for h in held)
        else:
            self._held = None
            self._held_bytes = 0
            self.transport.underlying_transport.resume_reading()

    def _abandon(self) -> None:
        self._closing = True
        self._held = None
        self.session.outbox.close()
        self.gateway.handlers.detach(self.session)

    def _hold(self, item: Held) -> None:
        held = self._held
        assert held is not None
        held.append(item)
        self._held_bytes += len(item[3])
        s = self.gateway.settings
        if (
            len(held) > s.flood_backlog_frames
            or self._held_bytes > HOLD_BYTES_PER_FRAME_LIMIT * s.max_frame_bytes
        ):
            self.gateway.stats.floods += 1
            self._held = None
            self.close(CloseCode.TOO_MANY_REFUSED, "flooding: too many frames at once", flush=False)

    # -- frames --------------------------------------------------------------
    def _frame(self, kind: WSMsgType, fin: bool, rsv: bool, payload: bytes | memoryview) -> None:
        if rsv:
            self.close(CloseCode.PROTOCOL_ERROR, "reserved bits set; no extension negotiated")
        elif kind == TEXT:
            if self._fragments is not None:
                self.close(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            elif fin:
                self._on_text(payload)
            else:
                self._start_fragments(kind, payload)
        elif kind == CONTINUATION:
            self._continue_fragments(fin, payload)
        elif kind == PING:
            self._on_ping(payload)
        elif kind == CLOSE:
            self._on_close(payload)
        elif kind == BINARY:
            if self._fragments is not None:
                self.close(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            elif fin:
                self._on_binary()
            else:
                self._start_fragments(kind, payload)
        # PONG frames need nothing more: receiving them already counted as life.

    def _start_fragments(self, kind: WSMsgType, payload: bytes | memoryview) -> None:
        self._fragment_kind = kind
        self._fragment_bytes = len(payload)
        # Binary messages are refused whole: count their size, keep none of it.
        self._fragments = [bytes(payload)] if kind == TEXT else []

    def _continue_fragments(self, fin: bool, payload: bytes | memoryview) -> None:
        parts = self._fragments
        if parts is None:
            self.close(CloseCode.PROTOCOL_ERROR, "continuation frame without a message")
            return
        limit = self.gateway.settings.max_frame_bytes
        self._fragment_bytes += len(payload)
        if self._fragment_bytes > limit:
            self.close(CloseCode.MESSAGE_TOO_BIG, f"message exceeds {limit} bytes")
            return
        if self._fragment_kind == TEXT:
            parts.append(bytes(payload))
        if fin:
            self._fragments = None
            if self._fragment_kind == TEXT:
                self._on_text(b"".join(parts))
            else:
                self._on_binary()

    def _on_binary(self) -> None:
        self._charge()
        self._reply_error(BadRequest("binary frames are not supported; send JSON text"))

    def _on_ping(self, payload: bytes | memoryview) -> None:
        if self._charge():
            self.gateway.stats.pings_refused += 1
            self._refused()  # over the rate: no pong
        else:
            self.session.outbox.push(frame_pong(payload))

    def _on_close(self, payload: bytes | memoryview) -> None:
        # picows has already refused a 1-byte payload and a reason that is not UTF-8.
        if len(payload) < 2:
            code, reason = CloseCode.NORMAL, b""  # no status code: answer 1000, never "0"
        else:
            code, reason = int.from_bytes(payload[:2], "big"), bytes(payload[2:])
            if not valid_close_code(code):
                self.close(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
                return
        self._closing = True
        self.session.outbox.flush()
        self.session.outbox.close()
        self.gateway.handlers.detach(self.session)
        self.transport.send_close(WSCloseCode(code), reason)
        self.transport.disconnect()

    # -- heartbeat (driven by gateway.heartbeat.Heartbeat) -------------------
    def ping(self) -> None:
        self.session.outbox.push(PING_FRAME)

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
        self._held = None
        if self._auth_timer is not None:
            self._auth_timer.cancel()  # type: ignore[attr-defined]
        self.session.outbox.close()
        self.gateway.forget(self)
        self.gateway.handlers.detach(self.session)

    # -- requests ------------------------------------------------------------
    def _charge(self) -> int:
        """Draw one request from the rate buckets; 0, or the ms until one is available."""
        session = self.session
        now = time.monotonic()
        user_bucket = session.user_bucket
        if user_bucket is None:  # before auth only the connection's own bucket applies
            return session.bucket.take(now)
        return take_both(session.bucket, user_bucket, now)

    def _on_text(self, payload: bytes | memoryview) -> None:
        gw = self.gateway
        session = self.session
        wait_ms = self._charge()
        req = None
        try:
            try:
                req = gw.decoder.decode(payload)
            except NexusError as exc:
                # orjson accepts only UTF-8: a text message that is not UTF-8 ends here.
                if not _is_utf8(payload):
                    self.close(CloseCode.INVALID_DATA, "text message is not valid UTF-8")
                    return
                if not wait_ms:
                    raise
                req_id = exc.request_id
            else:
                req_id = req.id
            if wait_ms:
                # Refused frames cost a token too, so a flood of bad frames is rate limited.
                gw.stats.rate_limited += 1
                raise RateLimited(
                    "request rate limit exceeded", retry_after_ms=wait_ms, request_id=req_id
                )
            assert req is not None
            if session.principal is None:
                if not isinstance(req, Auth):
                    raise Unauthorized("authenticate first: send auth", request_id=req.id)
                try:
                    principal = gw.verifier.verify(req.token)
                except NexusError as exc:
                    exc.request_id = req.id
                    raise
                self._authenticated(principal, req.id)
            elif type(req) is MessageSend:
                gw.handlers.send_message(session, req)  # the common request, no dispatch
            else:
                gw.handlers.handle(session, req)
        except NexusError as exc:
            self._reply_error(exc)
        except Exception:
            log.exception("request failed", extra=self._log_context())
            self._reply_error(
                Internal("internal error", request_id=req.id if req is not None else None)
            )

    def _reply_error(self, exc: NexusError) -> None:
        if isinstance(exc, Unauthorized):
            self.gateway.stats.auth_failed(exc.message)
        self.session.send(events.error(exc))
        if exc.close_code is not None:
            self.close(exc.close_code, exc.message)
        else:
            self._refused()

    def _refused(self) -> None:
        """Count one refused frame; close a client that keeps sending them."""
        s = self.gateway.settings
        now = time.monotonic()
        bucket = self._refusals
        if bucket is None:
            bucket = self._refusals = TokenBucket(s.refused_per_s, s.refused_burst, now)
        if bucket.take(now) and not self._closing:
            self.gateway.stats.refused_closes += 1
            self.close(CloseCode.TOO_MANY_REFUSED, "too many refused requests")

    def _authenticated(self, principal: Principal, rid: RequestId) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()  # type: ignore[attr-defined]
            self._auth_timer = None
        # The same leeway that admitted the token applies to closing the session.
        self.expires_at = principal.expires_at + self.gateway.settings.auth_leeway
        self.gateway.handlers.attach(self.session, principal)
        self.session.send(
            events.auth_ok(
                rid,
                principal.user_id,
                principal.tenant,
                self.session.session_id,
                principal.kind,
                principal.roles,
            )
        )

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if self.session.principal is None and not self._closing:
            self.gateway.stats.auth_failed("auth timeout")
            self.session.send(events.error(Unauthorized("no auth within the auth timeout")))
            self.close(CloseCode.AUTH_TIMEOUT, "auth timeout")

    def _log_context(self) -> dict[str, str]:
        session = self.session
        who = session.principal
        return {
            "session_id": session.session_id,
            "remote": session.remote,
            "user": f"{who.tenant}/{who.user_id}" if who else "",
        }

    # -- closing -------------------------------------------------------------
    def _on_overflow(self) -> None:
        self.gateway.stats.slow_consumers += 1
        outbox = self.session.outbox
        log.info(
            "outbound buffer over limit (%d queued, %d in transport, limit %d), "
            "disconnecting slow consumer",
            outbox.dropped_bytes,
            outbox.transport_buffered,
            outbox.limit,
            extra=self._log_context(),
        )
        self.close(
            CloseCode.SLOW_CONSUMER, "slow consumer: outbound buffer limit exceeded", flush=False
        )

    def close(self, code: int, reason: str, *, flush: bool = True) -> None:
        """Send a close frame after what is queued, then drop the socket."""
        if self._closing:
            return
        self._closing = True
        self._held = None
        log.info("closing %d: %s", code, reason, extra=self._log_context())
        outbox = self.session.outbox
        if flush:
            outbox.flush()
        outbox.close()
        # The session is over now: leave rooms (presence) without waiting for the socket.
        self.gateway.handlers.detach(self.session)
        transport = self.transport
        transport.send_close(WSCloseCode(code), reason.encode()[:123])
        if flush:
            transport.disconnect(graceful=True)
        # A peer that does not read would keep the socket (and its buffer) forever.
        self.gateway.loop.call_later(ABORT_AFTER_CLOSE_S, transport.disconnect, False)

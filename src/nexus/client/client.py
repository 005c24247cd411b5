"""The asyncio client: one WebSocket (picows) kept alive across network trouble.

Why picows: it is already the server's WebSocket library (no new dependency), its client
is the fastest Python one, and it has a ping watchdog built in (``enable_auto_ping``: a
connection that stops answering pings is dropped and reconnected). The session's memory
(rooms and their seqs, the outbox, streamed replies) is ``state.SessionState``, sans-I/O.

Reconnects: full-jitter exponential backoff; close codes 4000-4499 (and a broken
connection, 1001, 1006, 1011) reconnect, 4500-4999 stop (docs/protocol.md §11); 4003 (the
token expired) reconnects with a token from the refresh callback. After a reconnect
every joined room is rejoined with ``since`` = its last seq and every unacknowledged send
is sent again with its ``client_msg_id``: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import picows

from .backoff import Backoff
from .closing import may_reconnect, needs_new_token
from .events import Connection, Event, ReplyEnded, ReplyStarted
from .state import SessionState

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], str | Awaitable[str]]
SENDS = frozenset({"message.send", "message.edit", "message.delete"})
QUEUE_MAX = 10_000  # events held for a caller that does not read; the oldest go first
ENDED_KEPT = 256  # replies that ended, by trigger, for an ask() that resumes late
AUTH = "\x00auth"  # the pending slot of the unasked auth.ok


class NexusError(Exception):
    """The server refused a request (its ``error`` event)."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class ConnectionClosed(Exception):
    """The client stopped for good (a 45xx close code, ``close()``, or a refused token)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}")
        self.code = code
        self.reason = reason


class RequestTimeout(TimeoutError):
    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__(f"no answer to {request.get('type')} in time")
        self.request = request


class _Listener(picows.WSListener):
    def __init__(self, client: NexusClient) -> None:
        self.client = client
        self.close_code: int | None = None
        self.close_reason = ""
        self._parts: list[bytes] = []

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind == picows.WSMsgType.CLOSE:
            code = frame.get_close_code()
            self.close_code = int(code.value) if code else None
            self.close_reason = frame.get_close_message().decode("utf-8", "replace")
            transport.send_close(code)
            transport.disconnect()
            return
        if kind == picows.WSMsgType.TEXT and frame.fin and not self._parts:
            self.client._on_text(frame.get_payload_as_bytes())
        elif kind in (picows.WSMsgType.TEXT, picows.WSMsgType.CONTINUATION):
            self._parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                payload, self._parts = b"".join(self._parts), []
                self.client._on_text(payload)


class NexusClient:
    """``async with NexusClient(url, token) as client:`` then ``join``, ``send``,
    ``events()``. ``token`` is a JWT or a callable (sync or async) returning a fresh one,
    called before every connection."""

    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        request_timeout: float = 10.0,
        backoff: Backoff | None = None,
        ping_interval: float = 15.0,
        ping_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        max_attempts: int | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self.request_timeout = request_timeout
        self.backoff = backoff or Backoff()
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connect_timeout = connect_timeout
        self.max_attempts = max_attempts  # reconnect attempts in a row before giving up
        self.state = SessionState()
        self.session: dict[str, Any] = {}  # the last auth.ok
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}  # request id -> answer
        self._sends: dict[str, asyncio.Future[dict[str, Any]]] = {}  # client_msg_id -> ack
        self._send_ids: dict[str, str] = {}  # request id -> client_msg_id
        self._events: asyncio.Queue[Event] = asyncio.Queue(QUEUE_MAX)
        self._replies: dict[str, asyncio.Future[ReplyEnded]] = {}  # trigger id -> reply end
        self._reply_of: dict[str, str] = {}  # reply message_id -> trigger id
        self._transport: picows.WSTransport | None = None
        self._connected = asyncio.Event()
        self._closed: ConnectionClosed | None = None
        self._stopped = asyncio.Event()  # set with _closed
        self._ended: dict[str, ReplyEnded] = {}  # trigger message id -> its reply's end
        self._runner: asyncio.Task[None] | None = None
        self._connection_no = 0
        self._prefix = secrets.token_hex(4)

    # -- lifecycle -----------------------------------------------------------------
    async def connect(self) -> dict[str, Any]:
        """Connect and authenticate (raises if the first attempt fails); from then on the
        client reconnects by itself. Returns the ``auth.ok`` event."""
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runner = asyncio.get_running_loop().create_task(self._run(first))
        await first
        return self.session

    async def close(self) -> None:
        self._stop(ConnectionClosed(1000, "closed by the client"))
        runner, self._runner = self._runner, None
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.send_close(picows.WSCloseCode.OK)
                self._transport.disconnect()
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    async def __aenter__(self) -> NexusClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- what the caller sees ------------------------------------------------------
    async def events(self) -> AsyncIterator[Event]:
        """Every event, in arrival order (logged entries once each, in seq order per
        room); ends when the client stops for good."""
        while True:
            if self._closed is not None and self._events.empty():
                return
            get = asyncio.ensure_future(self._events.get())
            stop = asyncio.ensure_future(self._wait_closed())
            done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                stop.cancel()
                yield get.result()
            else:
                get.cancel()
                while not self._events.empty():
                    yield self._events.get_nowait()
                return

    async def next_event(self, *types: str, timeout: float | None = None) -> Event:
        """The next event (of one of ``types``, when given), skipping others."""
        async with asyncio.timeout(timeout):
            async for event in self.events():
                if not types or event.type in types:
                    return event
        raise ConnectionClosed(*self._close_info())

    # -- requests ------------------------------------------------------------------
    async def request(
        self, type: str, timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send one request and wait for its answer (``NexusError`` for an ``error``)."""
        await self._wait_connected(timeout)
        rid = f"r{next(self._ids)}"
        message = {"type": type, "id": rid, **fields}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            self._write(message)
            async with asyncio.timeout(timeout or self.request_timeout):
                return await future
        except TimeoutError:
            raise RequestTimeout(message) from None
        finally:
            self._pending.pop(rid, None)

    async def join(self, room: str, since: int | None = None) -> dict[str, Any]:
        """Join ``room`` (created if the caller may); with ``since``, every entry after it
        is delivered first. The room is rejoined after each reconnect from its last seq."""
        self.state.joining(room, since)
        fields: dict[str, Any] = {"room": room}
        position = self.state.rooms[room].last_seq
        if position is not None:
            fields["since"] = position
        try:
            joined = await self.request("room.join", **fields)
        except BaseException:
            if since is None and position is None:
                self.state.left(room)
            raise
        self.state.joined(room, int(joined.get("seq", 0)))
        return joined

    async def leave(self, room: str) -> dict[str, Any]:
        self.state.left(room)
        return await self.request("room.leave", room=room)

    async def send(
        self,
        room: str,
        body: str,
        *,
        reply_to: str | None = None,
        meta: dict[str, Any] | None = None,
        client_msg_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Post a message; returns the ``ack`` (``seq``, ``message_id``, ``duplicate``).
        Survives reconnects: sent again with the same ``client_msg_id`` until acked."""
        fields: dict[str, Any] = {"room": room, "body": body}
        if reply_to is not None:
            fields["reply_to"] = reply_to
        if meta is not None:
            fields["meta"] = meta
        return await self._send("message.send", fields, client_msg_id, timeout)

    async def edit(self, room: str, message_id: str, body: str) -> dict[str, Any]:
        return await self._send(
            "message.edit", {"room": room, "message_id": message_id, "body": body}, None, None
        )

    async def delete(self, room: str, message_id: str) -> dict[str, Any]:
        return await self._send(
            "message.delete", {"room": room, "message_id": message_id}, None, None
        )

    async def typing(self, room: str, active: bool = True) -> None:
        await self._wait_connected(None)
        self._write({"type": "typing", "room": room, "active": active})

    async def history(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"room": room, "limit": limit}
        if before is not None:
            fields["before"] = before
        if after is not None:
            fields["after"] = after
        return await self.request("history", **fields)

    async def cancel_reply(self, room: str, message_id: str) -> dict[str, Any]:
        return await self.request("message.cancel", room=room, message_id=message_id)

    async def ask(self, room: str, body: str, timeout: float = 120.0) -> ReplyEnded:
        """Post ``body`` (mention an agent, e.g. ``@helper ...``) and wait for the agent's
        reply to it, assembled: ``ReplyEnded.text`` is the whole reply."""
        waiter: asyncio.Future[ReplyEnded] = asyncio.get_running_loop().create_future()
        cmid = self._new_cmid()
        self._replies[cmid] = waiter
        try:
            ack = await self.send(room, body, client_msg_id=cmid)
            self._replies[ack["message_id"]] = self._replies.pop(cmid)
            ended = self._ended.get(ack["message_id"])  # it may have ended already
            if ended is not None:
                return ended
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._replies.pop(cmid, None)
            for key, value in list(self._replies.items()):
                if value is waiter:
                    del self._replies[key]

    def reply_text(self, message_id: str) -> str | None:
        """The text so far of a reply that is streaming (None once it ended)."""
        return self.state.reply_text(message_id)

    # -- internals -------------------------------------------------------------------
    def _new_cmid(self) -> str:
        return f"{self._prefix}-{secrets.token_hex(8)}"

    async def _send(
        self, kind: str, fields: dict[str, Any], client_msg_id: str | None, timeout: float | None
    ) -> dict[str, Any]:
        if self._closed is not None:
            raise self._closed
        cmid = client_msg_id or self._new_cmid()
        request = {"type": kind, **fields, "client_msg_id": cmid}
        future = self._sends.get(cmid)
        if future is None:
            future = self._sends[cmid] = asyncio.get_running_loop().create_future()
            self.state.sending(cmid, request, 0)
        if self._connected.is_set():
            self._write_send(request)
        try:
            async with asyncio.timeout(timeout or self.request_timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            # Given up: not resent any more (it may still have been stored; a retry with
            # the same client_msg_id is safe).
            self.state.acknowledged(cmid)
            self._sends.pop(cmid, None)
            raise RequestTimeout(request) from None

    def _write_send(self, request: dict[str, Any]) -> None:
        rid = f"s{next(self._ids)}"
        self._send_ids[rid] = request["client_msg_id"]
        pending = self.state.outbox.get(request["client_msg_id"])
        if pending is not None:
            pending.sent_on = self._connection_no
        self._write({**request, "id": rid})

    def _write(self, message: dict[str, Any]) -> None:
        transport = self._transport
        if transport is None or not self._connected.is_set():
            raise ConnectionError("not connected")
        transport.send(picows.WSMsgType.TEXT, orjson.dumps(message))

    async def _wait_connected(self, timeout: float | None) -> None:
        if self._closed is not None:
            raise self._closed
        if not self._connected.is_set():
            waiter = asyncio.ensure_future(self._connected.wait())
            stop = asyncio.ensure_future(self._wait_closed())
            try:
                async with asyncio.timeout(timeout or self.request_timeout):
                    await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stop.cancel()
            if self._closed is not None:
                raise self._closed

    async def _wait_closed(self) -> None:
        await self._stopped.wait()

    def _stop(self, closed: ConnectionClosed) -> None:
        if self._closed is None:
            self._closed = closed
        self._stopped.set()
        self._fail_all(self._closed)

    def _close_info(self) -> tuple[int | None, str]:
        closed = self._closed
        return (closed.code, closed.reason) if closed else (None, "")

    def _emit(self, event: Event) -> None:
        if self._events.full():
            self._events.get_nowait()  # a caller that does not read loses the oldest
        self._events.put_nowait(event)

    def _on_text(self, payload: bytes) -> None:
        try:
            raw = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("a frame that is not JSON from the server")
            return
        if not isinstance(raw, dict):
            return
        kind = raw.get("type")
        rid = raw.get("id")
        auth = self._pending.get(AUTH)
        if auth is not None and rid is None and kind in ("auth.ok", "error"):
            # The upgrade's Authorization header authenticates: auth.ok comes unasked.
            if not auth.done():
                auth.set_result(raw) if kind == "auth.ok" else auth.set_exception(_error(raw))
            return
        if kind in ("ack", "error") and isinstance(rid, str) and rid in self._send_ids:
            self._answer_send(self._send_ids.pop(rid), raw)
            return
        if (
            isinstance(rid, str)
            and rid in self._pending
            and kind not in ("message", "message.edited", "message.deleted")
        ):
            future = self._pending.pop(rid)
            if not future.done():
                if kind == "error":
                    future.set_exception(_error(raw))
                else:
                    future.set_result(raw)
            return
        for event in self.state.receive(raw):
            if isinstance(event, ReplyStarted):
                trigger = event.raw.get("reply_to")
                if isinstance(trigger, str):
                    self._reply_of[event.id] = trigger
            elif isinstance(event, ReplyEnded):
                self._reply_ended(event)
            self._emit(event)

    def _answer_send(self, cmid: str, raw: dict[str, Any]) -> None:
        self.state.acknowledged(cmid)
        future = self._sends.pop(cmid, None)
        if future is None or future.done():
            return
        if raw.get("type") == "error":
            future.set_exception(_error(raw))
        else:
            future.set_result(raw)

    def _reply_ended(self, event: ReplyEnded) -> None:
        trigger = self._reply_of.pop(event.message_id, None)
        if trigger is None:
            return
        self._ended[trigger] = event
        while len(self._ended) > ENDED_KEPT:
            del self._ended[next(iter(self._ended))]
        waiter = self._replies.get(trigger)
        if waiter is not None and not waiter.done():
            waiter.set_result(event)

    def _fail_all(self, exc: BaseException) -> None:
        for future in [*self._pending.values(), *self._sends.values()]:
            if not future.done():
                future.set_exception(exc)
        for waiter in self._replies.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self._pending.clear()
        self._sends.clear()

    async def _token_now(self) -> str:
        token = self._token
        if isinstance(token, str):
            return token
        value = token()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        return str(value)

    async def _open(self) -> _Listener:
        token = await self._token_now()
        # Armed before connecting: auth.ok may be read with the upgrade's response.
        auth: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[AUTH] = auth
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, listener = await picows.ws_connect(
                    lambda: _Listener(self),
                    self.url,
                    websocket_handshake_timeout=self.connect_timeout,
                    enable_auto_ping=True,
                    auto_ping_idle_timeout=self.ping_interval,
                    auto_ping_reply_timeout=self.ping_timeout,
                    extra_headers={"Authorization": f"Bearer {token}"},
                )
                assert isinstance(listener, _Listener)
                self._transport = transport
                self.session = await auth
        finally:
            self._pending.pop(AUTH, None)
        return listener

    async def _resume(self) -> None:
        """After (re)connecting: rejoin every room from its seq, then resend the outbox."""
        for join in self.state.rejoin():
            rid = f"j{next(self._ids)}"
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[rid] = future
            self._write({**join, "id": rid})
            try:
                async with asyncio.timeout(self.request_timeout):
                    joined = await future
            except NexusError as exc:
                log.warning("could not rejoin %s: %s", join["room"], exc)
                self.state.left(join["room"])
                continue
            finally:
                self._pending.pop(rid, None)
            self.state.joined(join["room"], int(joined.get("seq", 0)))
        for request in self.state.resend(self._connection_no):
            self._write_send(request)

    async def _run(self, first: asyncio.Future[None]) -> None:
        failures = 0
        while self._closed is None:
            code: int | None = None
            reason = ""
            listener: _Listener | None = None
            try:
                self._connection_no += 1
                listener = await self._open()
                self._connected.set()
                await self._resume()
                self.backoff.reset()
                failures = 0
                if not first.done():
                    first.set_result(None)
                self._emit(Connection("connection", None, {}, "connected"))
                assert self._transport is not None
                await self._transport.wait_disconnected()
                code, reason = listener.close_code, listener.close_reason
            except asyncio.CancelledError:
                raise
            except picows.WSError as exc:  # the upgrade was refused (401: a bad token)
                code, reason = _upgrade_refusal(exc)
            except NexusError as exc:
                code, reason = (4501 if exc.code == "unauthorized" else None), exc.message
            except (OSError, TimeoutError, ConnectionError) as exc:
                code, reason = None, str(exc) or type(exc).__name__
            finally:
                self._connected.clear()
                if self._transport is not None:
                    self._transport.disconnect()
                self._transport = None
                for rid, future in list(self._pending.items()):
                    if not future.done():
                        future.set_exception(ConnectionError("connection lost"))
                    self._pending.pop(rid, None)
                self._send_ids.clear()
            failures += 1
            stop = not may_reconnect(code) and not (needs_new_token(code) and callable(self._token))
            if stop or (self.max_attempts is not None and failures > self.max_attempts):
                closed = ConnectionClosed(code, reason or "stopped")
                self._emit(Connection("connection", None, {}, "closed", code, reason))
                self._stop(closed)
                if not first.done():
                    first.set_exception(closed)
                return
            delay = self.backoff.next()
            self._emit(Connection("connection", None, {}, "reconnecting", code, reason, delay))
            await asyncio.sleep(delay)


def _error(raw: dict[str, Any]) -> NexusError:
    retry = raw.get("retry_after_ms")
    return NexusError(
        str(raw.get("code")), str(raw.get("message")), retry if isinstance(retry, int) else None
    )


def _upgrade_refusal(exc: Exception) -> tuple[int | None, str]:
    status = getattr(getattr(exc, "response", None), "status", None)
    text = str(exc)
    if status == 401 or " 401" in text:
        return 4501, "token refused at the upgrade"
    if status == 503 or " 503" in text:
        return None, "server draining"
    return None, text

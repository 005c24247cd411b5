"""The node: handles each validated request of a session against rooms, router and pipeline.

Transport-agnostic: it sees ``Session`` objects and request dataclasses, and
answers by queueing encoded events on sessions. Errors are raised as
NexusError and converted by the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from .._speedups.framing import frame_text
from .._speedups.ratelimit import TokenBucket
from .._speedups.router import Router
from ..auth import Principal
from ..config import Settings
from ..core.rate_limits import UserRateLimits
from ..core.rooms import Room, RoomDirectory
from ..errors import BadRequest, Conflict, Forbidden, LimitExceeded, NotFound
from ..protocol import (
    Auth, History, MessageDelete, MessageEdit, MessageSend, Ping, Request, RoomJoin, RoomLeave,
    Typing, events,
)
from ..protocol.decoder import ID_MAX_BYTES
from ..protocol.requests import RequestId
from ..store import LmdbStore
from ..store.keys import log_prefix, user_key
from .caller import Caller
from .pipeline import MessagePipeline
from .session import Session

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"
USER_SEEN_INTERVAL_MS = 60_000
USER_SEEN_CACHE = 100_000


def _ignore_result(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class Node:
    def __init__(self, settings: Settings, rooms: RoomDirectory, router: Router,
                 pipeline: MessagePipeline, store: LmdbStore, user_limits: UserRateLimits,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.rooms = rooms
        self.router = router
        self.pipeline = pipeline
        self.store = store
        self.user_limits = user_limits
        self._monotonic = monotonic
        self.sessions: dict[str, Session] = {}
        self._user_seen: dict[tuple[str, str], int] = {}
        self._handlers: dict[type, Callable[[Session, object], None]] = {
            Ping: self._ping,  # type: ignore[dict-item]
            RoomJoin: self._join,  # type: ignore[dict-item]
            RoomLeave: self._leave,  # type: ignore[dict-item]
            MessageSend: self._send,  # type: ignore[dict-item]
            MessageEdit: self._edit,  # type: ignore[dict-item]
            MessageDelete: self._delete,  # type: ignore[dict-item]
            Typing: self._typing,  # type: ignore[dict-item]
            History: self._history,  # type: ignore[dict-item]
        }

    # -- session lifecycle ---------------------------------------------------
    def new_bucket(self) -> TokenBucket:
        s = self.settings
        return TokenBucket(s.rate_conn_per_s, s.rate_conn_burst, self._monotonic())

    def attach(self, session: Session, principal: Principal) -> None:
        """Bind an authenticated principal to the session."""
        session.principal = principal
        session.user_bucket = self.user_limits.hold((principal.tenant, principal.user_id))
        self.sessions[session.session_id] = session
        self.note_user(principal)

    def detach(self, session: Session) -> None:
        """Forget a closed session: leave its rooms (with presence), release its user bucket."""
        session.closed = True
        principal = session.principal
        if principal is None or self.sessions.pop(session.session_id, None) is None:
            return  # never authenticated, or already detached
        for _, task in session.replaying.values():
            task.cancel()
        session.replaying.clear()
        session.abort_waits()
        for room in list(session.rooms.values()):
            self._leave_room(session, room)
        session.rooms.clear()
        self.user_limits.unhold((principal.tenant, principal.user_id))

    # -- requests ------------------------------------------------------------
    def handle(self, session: Session, req: Request) -> None:
        """Run one request of an authenticated session (already charged to its buckets)."""
        if isinstance(req, Auth):
            raise BadRequest("already authenticated", request_id=req.id)
        try:
            self._handlers[type(req)](session, req)
        except Exception as exc:
            if getattr(exc, "request_id", True) is None:
                exc.request_id = req.id  # type: ignore[attr-defined]
            raise

    def _ping(self, session: Session, req: Ping) -> None:
        session.send(events.pong(req.id, int(time.time() * 1000)))

    def _joined_room(self, session: Session, name: str) -> Room:
        room = session.rooms.get(name)
        if room is None:
            replaying = session.replaying.get(name)
            if replaying is None:
                raise Forbidden(f"join room {name} first")
            room = replaying[0]
        return room

    def _join(self, session: Session, req: RoomJoin) -> None:
        principal = session.principal
        assert principal is not None
        if req.room in session.rooms or req.room in session.replaying:
            room = self._joined_room(session, req.room)
            session.send(self._joined_event(req.id, room))
            return
        if session.room_count() >= self.settings.max_rooms_per_connection:
            raise LimitExceeded(
                f"at most {self.settings.max_rooms_per_connection} rooms per connection")
        room, created = self.rooms.open(principal, req.room)
        if created:
            self.pipeline.persist_room(room)
        elif not self.may_see(principal, room):
            raise NotFound(f"no room {req.room}")
        session.send(self._joined_event(req.id, room))
        if req.since is not None and req.since < room.delivered:
            task = asyncio.get_running_loop().create_task(self._catch_up(session, room, req.since))
            session.replaying[room.name] = (room, task)
        else:
            self._enter(session, room)

    def _joined_event(self, rid: object, room: Room) -> bytes:
        limit = self.settings.presence_list_max
        return events.room_joined(rid, room.name, room.delivered,  # type: ignore[arg-type]
                                  self.store.first_seq(room.key), room.members(limit),
                                  len(room.presence))

    def _presence_broadcast(self, room: Room, including: int = 0) -> bool:
        # In big rooms join/leave events would cost O(members) each, O(members^2) for a
        # crowd arriving; clients there ask for presence instead (HTTP, room.joined).
        # Judged on the room size with the user in it, for joins and leaves alike.
        return len(room.presence) + including <= self.settings.presence_broadcast_max

    def _enter(self, session: Session, room: Room) -> None:
        """Start live delivery of ``room`` to ``session`` and announce its presence."""
        principal = session.principal
        assert principal is not None
        session.rooms[room.name] = room
        self.router.join(room.key, session.outbox)
        if room.add_presence(principal.user_id, principal.kind) and \
                self._presence_broadcast(room):
            self.router.broadcast(
                room.key,
                frame_text(events.presence(room.name, principal.user_id, principal.kind, "join")),
                session.outbox)

    async def _catch_up(self, session: Session, room: Room, since: int) -> None:
        """Stream the entries after ``since`` page by page, then switch to live delivery.

        The session is not in the router while this runs, so live entries are not sent
        twice; each page reads up to ``room.delivered`` (everything committed and already
        fanned out). Once a read finds nothing past it, the switch to live happens in
        the same synchronous step, so no entry falls between replay and live.
        """
        after = since
        page = self.settings.replay_page
        try:
            while True:
                if session.closed:
                    return
                upto = room.delivered
                if after >= upto:
                    break
                records, after = self.store.read_page(room.key, after, upto, page)
                if not records:
                    after = upto  # the rest was trimmed by retention
                    continue
                for record in records:
                    session.send(record)
                # Hand the page to the socket, and wait while the peer is behind on reading.
                session.outbox.flush()
                await session.writable()
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            return
        if session.replaying.pop(room.name, None) is not None and not session.closed:
            self._enter(session, room)

    def _leave(self, session: Session, req: RoomLeave) -> None:
        replaying = session.replaying.pop(req.room, None)
        if replaying is not None:
            replaying[1].cancel()
        else:
            room = session.rooms.pop(req.room, None)
            if room is None:
                raise NotFound(f"not in room {req.room}")
            self._leave_room(session, room)
        session.send(events.room_left(req.id, req.room))

    def _leave_room(self, session: Session, room: Room) -> None:
        principal = session.principal
        assert principal is not None
        self.router.leave(room.key, session.outbox)
        if room.remove_presence(principal.user_id) and self._presence_broadcast(room, 1):
            self.router.broadcast(
                room.key,
                frame_text(events.presence(room.name, principal.user_id, principal.kind, "leave")))

    def _send(self, session: Session, req: MessageSend) -> None:
        self.post_message(session, self._joined_room(session, req.room), req)

    def _edit(self, session: Session, req: MessageEdit) -> None:
        self.edit_message(session, self._joined_room(session, req.room), req)

    def _delete(self, session: Session, req: MessageDelete) -> None:
        self.delete_message(session, self._joined_room(session, req.room), req)

    # -- writes shared by the gateway and the HTTP API ---------------------------------------
    def post_message(self, caller: Caller, room: Room, req: MessageSend) -> None:
        """Queue a message from ``caller`` into ``room``; the caller gets the ack or error."""
        principal = caller.principal
        assert principal is not None
        if not self._writable(caller, room, req.id, req.client_msg_id):
            return
        if req.reply_to is not None:
            where = self.store.message_location(req.reply_to)
            if where is None or where[0] != log_prefix(room.key):
                raise NotFound(f"reply_to: no message {req.reply_to} in room {room.name}")
        user, kind = principal.user_id, principal.kind

        def build(seq: int, event_id: str, now_ms: int) -> tuple[bytes, None]:
            return events.message(room.name, seq, event_id, user, kind, now_ms, req.body,
                                  req.reply_to, req.meta), None

        self.pipeline.submit(caller, room, req.id, req.client_msg_id, build)

    def find_message(self, room: Room, message_id: str) -> tuple[int, dict[str, Any]]:
        """(seq, current record) of message ``message_id`` in ``room``, or NotFound."""
        if len(message_id.encode("utf-8", "surrogatepass")) > ID_MAX_BYTES:
            raise NotFound(f"no message {message_id[:64]} in room {room.name}")
        where = self.store.message_location(message_id)
        raw = None
        if where is not None and where[0] == log_prefix(room.key):
            raw = self.store.read_record(room.key, where[1])
        if where is None or raw is None:
            raise NotFound(f"no message {message_id} in room {room.name}")
        record: dict[str, Any] = orjson.loads(raw)
        return where[1], record

    def is_room_admin(self, principal: Principal, room: Room) -> bool:
        """Tenant admin role, the room's creator, or a member with the room role admin."""
        if ADMIN_ROLE in principal.roles or room.meta.get("created_by") == principal.user_id:
            return True
        member = self.store.member(room.key, principal.user_id)
        return member is not None and member.get("role") == ADMIN_ROLE

    def may_see(self, principal: Principal, room: Room) -> bool:
        """Anyone of the tenant sees a public room; a private one only its members and admins."""
        if not room.meta.get("private"):
            return True
        return (self.store.member(room.key, principal.user_id) is not None
                or self.is_room_admin(principal, room))

    def note_user(self, principal: Principal) -> None:
        """Keep the tenant's user directory current (written at most once a minute a user)."""
        now = int(time.time() * 1000)
        key = (principal.tenant, principal.user_id)
        last = self._user_seen.get(key)
        if last is not None and now - last < USER_SEEN_INTERVAL_MS:
            return
        if len(self._user_seen) > USER_SEEN_CACHE:
            self._user_seen.clear()
        self._user_seen[key] = now
        record = self.store.user(principal.tenant, principal.user_id) or {"first_seen": now}
        record.update(user_id=principal.user_id, kind=principal.kind,
                      roles=sorted(principal.roles), last_seen=now)
        done = self.pipeline.submit_meta(
            [("user", user_key(principal.tenant, principal.user_id), orjson.dumps(record))])
        done.add_done_callback(_ignore_result)  # best effort: a failure is logged by the pipeline

    def _writable(self, caller: Caller, room: Room, rid: RequestId,
                  client_msg_id: str | None) -> bool:
        """False when this is a resend already answered; Forbidden when the room is archived.

        The resend check comes first: a retry of something that committed gets its ack
        even if the room or the message changed since."""
        if client_msg_id is not None and self.pipeline.answered_duplicate(caller, rid,
                                                                          client_msg_id):
            return False
        if room.meta.get("archived"):
            raise Forbidden(f"room {room.name} is archived")
        return True

    def _editable(self, caller: Caller, room: Room, message_id: str) -> int:
        """Seq of message ``message_id`` of ``room``, checked changeable by the caller."""
        principal = caller.principal
        assert principal is not None
        seq, record = self.find_message(room, message_id)
        if record.get("type") != "message":
            raise BadRequest(f"{message_id} is not a message")
        if record.get("deleted"):
            raise Conflict(f"message {message_id} was deleted")
        if record.get("sender") != principal.user_id and not self.is_room_admin(principal, room):
            raise Forbidden("only the sender or a room admin may change this message")
        return seq

    def edit_message(self, caller: Caller, room: Room, req: MessageEdit) -> None:
        if not self._writable(caller, room, req.id, req.client_msg_id):
            return
        target_seq = self._editable(caller, room, req.message_id)
        assert caller.principal is not None
        by = caller.principal.user_id

        def build(seq: int, event_id: str, now_ms: int) -> tuple[bytes, tuple[int, dict[str, Any]]]:
            return (events.message_edited(room.name, seq, event_id, req.message_id, target_seq,
                                          by, now_ms, req.body),
                    (target_seq, {"body": req.body, "edited": now_ms, "edited_by": by}))

        self.pipeline.submit(caller, room, req.id, req.client_msg_id, build)

    def delete_message(self, caller: Caller, room: Room, req: MessageDelete) -> None:
        if not self._writable(caller, room, req.id, req.client_msg_id):
            return
        target_seq = self._editable(caller, room, req.message_id)
        assert caller.principal is not None
        by = caller.principal.user_id

        def build(seq: int, event_id: str, now_ms: int) -> tuple[bytes, tuple[int, dict[str, Any]]]:
            return (events.message_deleted(room.name, seq, event_id, req.message_id, target_seq,
                                           by, now_ms),
                    (target_seq, {"body": "", "meta": None, "deleted": now_ms,
                                  "deleted_by": by}))

        self.pipeline.submit(caller, room, req.id, req.client_msg_id, build)

    def _typing(self, session: Session, req: Typing) -> None:
        principal = session.principal
        assert principal is not None
        room = self._joined_room(session, req.room)
        self.router.broadcast(
            room.key,
            frame_text(events.typing(room.name, principal.user_id, principal.kind, req.active)),
            session.outbox)

    def _history(self, session: Session, req: History) -> None:
        principal = session.principal
        assert principal is not None
        room = session.rooms.get(req.room) or session.replaying.get(req.room, (None,))[0]
        if room is None:
            room = self.rooms.require(principal, req.room)
            if not self.may_see(principal, room):
                raise NotFound(f"no room {req.room}")
        top = room.delivered
        if req.after is not None:
            records = self.store.read_range(room.key, req.after, top, req.limit + 1)
            has_more = len(records) > req.limit
            records = records[: req.limit]
        else:
            before = top + 1 if req.before is None else min(req.before, top + 1)
            records = self.store.read_before(room.key, before, req.limit + 1)
            has_more = len(records) > req.limit
            records = records[-req.limit:] if has_more else records
        session.send(events.history_page(req.id, room.name, records, has_more))

"""Request handlers: each validated request of a session, against rooms, router and core.

Transport glue only: joins and leaves (with presence and the ``since`` catch-up), typing,
pings, and the session registry. Writes and history go through ``core.writes``; who may
see what through ``core.access``. Answers are encoded events queued on the session;
errors are raised as NexusError and converted by the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .._speedups.framing import frame_text
from .._speedups.ratelimit import TokenBucket
from .._speedups.router import Router
from ..auth import Principal
from ..config import Settings
from ..core.access import AccessRules
from ..core.agent_control import AgentControl
from ..core.approvals import Approvals
from ..core.directory import UserDirectory
from ..core.memory import Memory
from ..core.rate_limits import UserRateLimits
from ..core.rooms import Room, RoomDirectory
from ..core.sessions import SessionInfo
from ..core.streams import LiveStreams
from ..core.tasks.service import TaskService, reply_event
from ..core.writes import RoomWrites
from ..errors import BadRequest, Forbidden, Internal, LimitExceeded, NexusError, NotFound
from ..protocol import (
    Auth,
    History,
    MemoryForget,
    MemorySearch,
    MemoryUpdate,
    MemoryWrite,
    MessageCancel,
    MessageDelete,
    MessageEdit,
    MessageSend,
    Ping,
    Request,
    RoomJoin,
    RoomLeave,
    Search,
    TaskRequest,
    ToolApprove,
    Typing,
    events,
)
from ..protocol.requests import RequestId
from ..store import LmdbStore
from .session import Session

log = logging.getLogger(__name__)


class RequestHandlers:
    def __init__(
        self,
        settings: Settings,
        rooms: RoomDirectory,
        router: Router,
        writes: RoomWrites,
        access: AccessRules,
        store: LmdbStore,
        user_limits: UserRateLimits,
        directory: UserDirectory,
        streams: LiveStreams | None = None,
        agents: AgentControl | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        memory: Memory | None = None,
    ) -> None:
        self.settings = settings
        self.rooms = rooms
        self.router = router
        self.writes = writes
        self.access = access
        self.store = store
        self.user_limits = user_limits
        self.directory = directory
        self.streams = streams if streams is not None else LiveStreams()
        # Cluster mode: an awaitable while this node catches a newly followed room up
        # (joins wait for it), None once it has.
        self.room_gate: Callable[[Room], Awaitable[None] | None] | None = None
        self.agents = agents  # set in app.py once the agent runtime exists
        self.tasks: TaskService | None = None  # set in app.py
        self.approvals: Approvals | None = None  # set in app.py (agents' destructive tools)
        self._monotonic = monotonic
        self.memory = memory  # search and memory records (core/memory)
        self._answering: set[asyncio.Task[None]] = set()  # requests answered from a task
        self.sessions: dict[str, Session] = {}
        self._handlers: dict[type, Callable[[Session, object], None]] = {
            Ping: self._ping,  # type: ignore[dict-item]
            RoomJoin: self._join,  # type: ignore[dict-item]
            RoomLeave: self._leave,  # type: ignore[dict-item]
            MessageSend: self._send,  # type: ignore[dict-item]
            MessageEdit: self._edit,  # type: ignore[dict-item]
            MessageDelete: self._delete,  # type: ignore[dict-item]
            MessageCancel: self._cancel,  # type: ignore[dict-item]
            Typing: self._typing,  # type: ignore[dict-item]
            History: self._history,  # type: ignore[dict-item]
            TaskRequest: self._task,  # type: ignore[dict-item]
            Search: self._search,  # type: ignore[dict-item]
            MemoryWrite: self._memory_write,  # type: ignore[dict-item]
            MemorySearch: self._memory_search,  # type: ignore[dict-item]
            MemoryUpdate: self._memory_update,  # type: ignore[dict-item]
            MemoryForget: self._memory_forget,  # type: ignore[dict-item]
            ToolApprove: self._tool_approve,  # type: ignore[dict-item]
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
        self.directory.note(principal)

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

    def sessions_of(self, tenant: str) -> list[SessionInfo]:
        return [
            SessionInfo(s.session_id, p.user_id, p.kind, s.remote, tuple(sorted(s.rooms)))
            for s in self.sessions.values()
            if (p := s.principal) is not None and p.tenant == tenant
        ]

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
                f"at most {self.settings.max_rooms_per_connection} rooms per connection"
            )
        room, created = self.rooms.open(principal, req.room)
        if created:
            self.writes.persist_room(room)
        else:
            self.access.require_visible(principal, room, req.room)
        gate = self.room_gate(room) if self.room_gate is not None else None
        if gate is not None:  # cluster mode: this node is still catching the room up
            task = asyncio.get_running_loop().create_task(
                self._join_after(session, req, room, gate)
            )
            session.start_replay(room, task)
            return
        session.send(self._joined_event(req.id, room))
        if req.since is not None and req.since < room.delivered:
            task = asyncio.get_running_loop().create_task(self._catch_up(session, room, req.since))
            session.start_replay(room, task)
        else:
            self._enter(session, room)

    async def _join_after(
        self, session: Session, req: RoomJoin, room: Room, gate: Awaitable[None]
    ) -> None:
        """A join answered once the room is shared and caught up here (the session counts
        as in it meanwhile, as during a replay): ``room.joined`` then says the room's real
        head, and a room adopted from another node is checked again."""
        try:
            await gate
        except asyncio.CancelledError:
            return
        if session.closed or req.room not in session.replaying:
            return
        principal = session.principal
        assert principal is not None
        if not self.access.may_see(principal, room):
            # The room this join created here was created on another node first, private:
            # its settings were adopted meanwhile, and they do not let this user in.
            session.replaying.pop(room.name, None)
            refused = NotFound(f"no room {req.room}")
            refused.request_id = req.id
            session.send(events.error(refused))
            return
        session.send(self._joined_event(req.id, room))
        if req.since is not None and req.since < room.delivered:
            await self._catch_up(session, room, req.since)
        elif session.replaying.pop(room.name, None) is not None:
            self._enter(session, room)

    def _joined_event(self, rid: RequestId, room: Room) -> bytes:
        limit = self.settings.presence_list_max
        return events.room_joined(
            rid,
            room.name,
            room.delivered,
            self.store.first_seq(room.key),
            room.members(limit),
            room.present_count,
        )

    def _presence_broadcast(self, room: Room, including: int = 0) -> bool:
        # In big rooms join/leave events would cost O(members) each, O(members^2) for a
        # crowd arriving; clients there ask for presence instead (HTTP, room.joined).
        # Judged on the room size with the user in it, for joins and leaves alike.
        return room.present_count + including <= self.settings.presence_broadcast_max

    def _enter(self, session: Session, room: Room) -> None:
        """Start live delivery of ``room`` to ``session`` and announce its presence."""
        principal = session.principal
        assert principal is not None
        session.enter(room)
        self.router.join(room.key, session.outbox)
        # Replies streaming now: their text so far, in the same step as joining the live
        # traffic, so the deltas that follow continue it with no gap and no repeat.
        for reply in self.streams.of_room(room.key):
            session.send(reply.snapshot())
        if room.add_presence(principal.user_id, principal.kind) and self._presence_broadcast(room):
            self.router.broadcast(
                room.key,
                frame_text(events.presence(room.name, principal.user_id, principal.kind, "join")),
                session.outbox,
            )

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
                frame_text(events.presence(room.name, principal.user_id, principal.kind, "leave")),
            )

    def _send(self, session: Session, req: MessageSend) -> None:
        self.writes.post(session, self._joined_room(session, req.room), req)

    def send_message(self, session: Session, req: MessageSend) -> None:
        """``message.send`` of an authenticated session: the hot request, called directly
        by the connection (same as ``handle`` for it, without the dispatch)."""
        try:
            room = session.rooms.get(req.room)
            if room is None:
                room = self._joined_room(session, req.room)
            self.writes.post(session, room, req)
        except Exception as exc:
            if getattr(exc, "request_id", True) is None:
                exc.request_id = req.id  # type: ignore[attr-defined]
            raise

    def _edit(self, session: Session, req: MessageEdit) -> None:
        self.writes.edit(session, self._joined_room(session, req.room), req)

    def _delete(self, session: Session, req: MessageDelete) -> None:
        self.writes.delete(session, self._joined_room(session, req.room), req)

    def _cancel(self, session: Session, req: MessageCancel) -> None:
        principal = session.principal
        assert principal is not None
        room = self._joined_room(session, req.room)
        if self.agents is None:
            raise NotFound(f"no reply {req.message_id} is streaming in room {room.name}")
        self.agents.cancel(principal, room, req.message_id)
        session.send(events.cancel_ok(req.id, room.name, req.message_id))

    def _typing(self, session: Session, req: Typing) -> None:
        principal = session.principal
        assert principal is not None
        room = self._joined_room(session, req.room)
        self.router.broadcast(
            room.key,
            frame_text(events.typing(room.name, principal.user_id, principal.kind, req.active)),
            session.outbox,
        )

    def _history(self, session: Session, req: History) -> None:
        principal = session.principal
        assert principal is not None
        room = session.rooms.get(req.room) or session.replaying.get(req.room, (None,))[0]
        if room is None:
            room = self.access.require_visible(
                principal, self.rooms.find(principal.tenant, req.room), req.room
            )
        records, more = self.writes.history(
            room, before=req.before, after=req.after, limit=req.limit
        )
        session.send(events.history_page(req.id, room.name, records, more))

    # -- tasks ---------------------------------------------------------------
    def _task(self, session: Session, req: TaskRequest) -> None:
        principal = session.principal
        assert principal is not None
        if self.tasks is None:
            raise NotFound("tasks are not enabled on this server")
        tasks = self.tasks

        async def work() -> bytes:
            body = await tasks.request(principal, req.type, dict(req.params))
            return reply_event("task.list" if "tasks" in body else "task", req.id, body)

        self._answer_later(session, req.id, work())

    # -- approvals of agents' tool calls (core/approvals) -------------------------
    def _tool_approve(self, session: Session, req: ToolApprove) -> None:
        principal = session.principal
        assert principal is not None
        room = self.access.require_visible(
            principal, self.rooms.find(principal.tenant, req.room), req.room
        )
        if self.approvals is None:
            raise NotFound(f"no approval {req.approval_id[:64]} waits in room {room.name}")
        approvals = self.approvals

        async def work() -> bytes:
            decision = await approvals.decide(principal, room, req.approval_id, req.approve)
            return events.approval_decided(req.id, decision)

        self._answer_later(session, req.id, work())

    def send_to_user(self, tenant: str, user_id: str, payload: bytes) -> int:
        """Send ``payload`` to every open session of a user; how many were reached."""
        reached = 0
        for s in self.sessions.values():
            p = s.principal
            if p is not None and p.user_id == user_id and p.tenant == tenant and not s.closed:
                s.send(payload)
                reached += 1
        return reached

    # -- search, memory and tasks: answered from a task (SQLite on a thread, a commit) --
    def _memory_of(self) -> Memory:
        if self.memory is None:
            raise NotFound("search and memory are not enabled on this server")
        return self.memory

    def _answer_later(self, session: Session, rid: RequestId, work: Awaitable[bytes]) -> None:
        async def answer() -> None:
            try:
                payload = await work
            except NexusError as exc:
                exc.request_id = rid
                payload = events.error(exc)
            except Exception:
                log.exception("request %r failed", rid)
                payload = events.error(Internal("the request failed", request_id=rid))
            session.send(payload)

        task = asyncio.get_running_loop().create_task(answer())
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    def _search(self, session: Session, req: Search) -> None:
        memory, principal = self._memory_of(), session.principal
        assert principal is not None

        async def work() -> bytes:
            hits = await memory.search(principal, req.q, room=req.room, limit=req.limit)
            return events.search_results(req.id, req.q, hits)

        self._answer_later(session, req.id, work())

    def _memory_write(self, session: Session, req: MemoryWrite) -> None:
        memory, principal = self._memory_of(), session.principal
        assert principal is not None

        async def work() -> bytes:
            return events.memory_record(req.id, await memory.write(principal, req.fields))

        self._answer_later(session, req.id, work())

    def _memory_search(self, session: Session, req: MemorySearch) -> None:
        memory, principal = self._memory_of(), session.principal
        assert principal is not None

        async def work() -> bytes:
            records = await memory.find(
                principal,
                req.q,
                scope=req.scope,
                room=req.room,
                limit=req.limit,
                history=req.history,
            )
            return events.memory_results(req.id, records)

        self._answer_later(session, req.id, work())

    def _memory_update(self, session: Session, req: MemoryUpdate) -> None:
        memory, principal = self._memory_of(), session.principal
        assert principal is not None

        async def work() -> bytes:
            record = await memory.update(principal, req.memory_id, req.fields)
            return events.memory_record(req.id, record)

        self._answer_later(session, req.id, work())

    def _memory_forget(self, session: Session, req: MemoryForget) -> None:
        memory, principal = self._memory_of(), session.principal
        assert principal is not None

        async def work() -> bytes:
            return events.memory_record(req.id, await memory.forget(principal, req.memory_id))

        self._answer_later(session, req.id, work())

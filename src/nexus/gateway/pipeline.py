"""The send pipeline: sequence -> group commit on the writer thread -> ack and fan-out.

One batch is in flight at a time. Sends arriving meanwhile wait in ``_pending``
and become the next batch, so batch size grows with load and the commit cost
is shared. Seqs are assigned when a batch is handed to the writer; because only
that batch is in flight, a failed commit rolls the counters back without gaps.
Nobody gets an ``ack`` or sees the message before its commit returned.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from .._speedups.framing import frame_text
from .._speedups.router import Router
from ..core.rooms import Room
from ..errors import Internal
from ..protocol import MessageSend, events
from ..protocol.requests import RequestId
from ..store import GroupCommitWriter, LmdbStore, WriteBatch
from ..store.keys import client_key, split_room_key
from .session import Session

log = logging.getLogger(__name__)


def new_message_id(now_ms: int, _bits: Callable[[int], int] = random.getrandbits) -> str:
    """Time-ordered id: 48-bit ms timestamp + 64 random bits, hex."""
    return f"{now_ms:012x}{_bits(64):016x}"


class PendingSend:
    __slots__ = ("session", "req", "room", "ckey", "duplicates", "seq", "msg_id", "record")

    def __init__(self, session: Session, req: MessageSend, room: Room, ckey: bytes | None) -> None:
        self.session = session
        self.req = req
        self.room = room
        self.ckey = ckey
        self.duplicates: list[tuple[Session, RequestId]] = []  # resends while in flight
        self.seq = 0
        self.msg_id = ""
        self.record = b""


class MessagePipeline:
    def __init__(self, store: LmdbStore, writer: GroupCommitWriter, router: Router,
                 loop: asyncio.AbstractEventLoop, *, max_batch: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._writer = writer
        self._router = router
        self._loop = loop
        self._max_batch = max_batch
        self._clock = clock
        self._pending: list[PendingSend] = []
        self._pending_rooms: list[Room] = []
        self._by_ckey: dict[bytes, PendingSend] = {}
        self._inflight: tuple[list[PendingSend], list[Room]] | None = None
        self._scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        # figures for observability
        self.committed_messages = 0
        self.commits = 0
        self.failed_commits = 0
        self.last_commit_seconds = 0.0

    @property
    def idle(self) -> bool:
        return self._inflight is None and not self._pending and not self._pending_rooms

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # -- intake --------------------------------------------------------------
    def send(self, session: Session, room: Room, req: MessageSend) -> None:
        principal = session.principal
        assert principal is not None
        ckey = None
        if req.client_msg_id is not None:
            ckey = client_key(principal.tenant, principal.user_id, req.client_msg_id)
            queued = self._by_ckey.get(ckey)
            if queued is not None:
                queued.duplicates.append((session, req.id))
                return
            ref = self._store.client_message(principal.tenant, principal.user_id, req.client_msg_id)
            if ref is not None:
                # Already stored: answer with the original, create nothing.
                session.send(events.ack(req.id, split_room_key(ref.room_key)[1], ref.seq,
                                        ref.message_id, req.client_msg_id, duplicate=True))
                return
        pending = PendingSend(session, req, room, ckey)
        self._pending.append(pending)
        if ckey is not None:
            self._by_ckey[ckey] = pending
        self._schedule()

    def persist_room(self, room: Room) -> None:
        self._pending_rooms.append(room)
        self._schedule()

    def _schedule(self) -> None:
        self._idle.clear()
        if self._inflight is None and not self._scheduled:
            # Let the rest of this loop iteration's sends join the batch.
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

    # -- commit --------------------------------------------------------------
    def _dispatch(self) -> None:
        self._scheduled = False
        if self._inflight is not None:
            return
        if not self._pending and not self._pending_rooms:
            self._idle.set()
            return
        taken = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        rooms, self._pending_rooms = self._pending_rooms, []
        batch = WriteBatch()
        for p in taken:
            if not p.room.persisted and p.room not in rooms:
                rooms.append(p.room)  # a room whose creation failed to commit earlier
        for room in rooms:
            if not room.persisted:
                batch.rooms.append((room.key, room.meta_json()))
        now_ms = int(self._clock() * 1000)
        for p in taken:
            room = p.room
            principal = p.session.principal
            assert principal is not None
            room.seq += 1
            p.seq = room.seq
            p.msg_id = new_message_id(now_ms)
            req = p.req
            p.record = events.message(room.name, p.seq, p.msg_id, principal.user_id,
                                      principal.kind, now_ms, req.body, req.reply_to, req.meta)
            batch.messages.append((room.key, p.seq, p.msg_id, p.record, p.ckey))
        self._inflight = (taken, rooms)
        self._writer.submit(batch, self._committed)

    def _committed(self, error: BaseException | None, seconds: float) -> None:
        assert self._inflight is not None
        taken, rooms = self._inflight
        self._inflight = None
        self.last_commit_seconds = seconds
        if error is not None:
            self._fail(taken, rooms, error)
        else:
            self.commits += 1
            self.committed_messages += len(taken)
            for room in rooms:
                room.persisted = True
            broadcast = self._router.broadcast
            for p in taken:
                room = p.room
                room.delivered = p.seq
                broadcast(room.key, frame_text(p.record))
                p.session.send(events.ack(p.req.id, room.name, p.seq, p.msg_id,
                                          p.req.client_msg_id))
                for session, rid in p.duplicates:
                    session.send(events.ack(rid, room.name, p.seq, p.msg_id,
                                            p.req.client_msg_id, duplicate=True))
                if p.ckey is not None:
                    self._by_ckey.pop(p.ckey, None)
        self._dispatch()

    def _fail(self, taken: list[PendingSend], rooms: list[Room], error: BaseException) -> None:
        self.failed_commits += 1
        log.error("commit failed, %d messages refused: %s", len(taken), error)
        # Only this batch held seqs past each room's committed tail: rewind to it.
        for p in taken:
            p.room.seq = min(p.room.seq, p.seq - 1)
        # Unpersisted rooms are retried with their next message, not in a tight loop.
        for p in taken:
            exc = Internal("message could not be stored", request_id=p.req.id)
            p.session.send(events.error(exc))
            for session, rid in p.duplicates:
                session.send(events.error(Internal("message could not be stored",
                                                   request_id=rid)))
            if p.ckey is not None:
                self._by_ckey.pop(p.ckey, None)

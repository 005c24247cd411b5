"""The write pipeline: sequence -> group commit on the writer thread -> ack and fan-out.

One batch is in flight at a time. Entries arriving meanwhile wait in ``_pending``
and become the next batch, so batch size grows with load and the commit cost
is shared. Seqs are assigned when a batch is handed to the writer; because only
that batch is in flight, a failed commit rolls the counters back without gaps.
Nobody gets an ``ack`` or sees an entry before its commit returned.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from .._speedups.framing import frame_text
from .._speedups.router import Router
from ..core.rooms import Room
from ..errors import Internal
from ..protocol import events
from ..protocol.requests import RequestId
from ..store import GroupCommitWriter, LmdbStore, LogEntry, WriteBatch
from ..store.keys import client_key, split_room_key
from .caller import Caller

log = logging.getLogger(__name__)

# (seq, event id, now ms) -> (record bytes, optional patch of an earlier message)
Builder = Callable[[int, str, int], tuple[bytes, tuple[int, dict[str, Any]] | None]]


def new_event_id(now_ms: int, _bits: Callable[[int], int] = random.getrandbits) -> str:
    """Time-ordered id: 48-bit ms timestamp + 64 random bits, hex."""
    return f"{now_ms:012x}{_bits(64):016x}"


class PendingEntry:
    __slots__ = ("caller", "rid", "room", "ckey", "client_msg_id", "build", "duplicates",
                 "seq", "event_id", "record")

    def __init__(self, caller: Caller, rid: RequestId, room: Room, ckey: bytes | None,
                 client_msg_id: str | None, build: Builder) -> None:
        self.caller = caller
        self.rid = rid
        self.room = room
        self.ckey = ckey
        self.client_msg_id = client_msg_id
        self.build = build
        self.duplicates: list[tuple[Caller, RequestId]] = []  # resends while in flight
        self.seq = 0
        self.event_id = ""
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
        self._pending: list[PendingEntry] = []
        self._pending_rooms: list[Room] = []
        self._by_ckey: dict[bytes, PendingEntry] = {}
        self._inflight: tuple[list[PendingEntry], list[Room]] | None = None
        self._scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        # figures for observability
        self.committed_entries = 0
        self.commits = 0
        self.failed_commits = 0
        self.last_commit_seconds = 0.0

    @property
    def idle(self) -> bool:
        return self._inflight is None and not self._pending and not self._pending_rooms

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # -- intake --------------------------------------------------------------
    def submit(self, caller: Caller, room: Room, rid: RequestId, client_msg_id: str | None,
               build: Builder) -> None:
        """Queue one sequenced entry of ``caller``'s principal into ``room``."""
        principal = caller.principal
        assert principal is not None
        ckey = None
        if client_msg_id is not None:
            ckey = client_key(principal.tenant, principal.user_id, client_msg_id)
            queued = self._by_ckey.get(ckey)
            if queued is not None:
                queued.duplicates.append((caller, rid))
                return
            ref = self._store.client_message(principal.tenant, principal.user_id, client_msg_id)
            if ref is not None:
                # Already stored: answer with the original, create nothing.
                caller.send(events.ack(rid, split_room_key(ref.room_key)[1], ref.seq,
                                        ref.message_id, client_msg_id, duplicate=True))
                return
        pending = PendingEntry(caller, rid, room, ckey, client_msg_id, build)
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
            # Let the rest of this loop iteration's entries join the batch.
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
        for p in taken:
            if not p.room.persisted and p.room not in rooms:
                rooms.append(p.room)  # a room whose creation failed to commit earlier
        batch = WriteBatch()
        for room in rooms:
            if not room.persisted:
                batch.rooms.append((room.key, room.meta_json()))
        now_ms = int(self._clock() * 1000)
        for p in taken:
            room = p.room
            room.seq += 1
            p.seq = room.seq
            p.event_id = new_event_id(now_ms)
            p.record, patch = p.build(p.seq, p.event_id, now_ms)
            batch.entries.append(LogEntry(room.key, p.seq, p.event_id, p.record, p.ckey,
                                          now_ms, patch))
        self._inflight = (taken, rooms)
        self._writer.submit(partial(self._store.apply, batch), self._committed)

    def _committed(self, error: BaseException | None, seconds: float, _: object) -> None:
        assert self._inflight is not None
        taken, rooms = self._inflight
        self._inflight = None
        self.last_commit_seconds = seconds
        if error is not None:
            self._fail(taken, error)
        else:
            self.commits += 1
            self.committed_entries += len(taken)
            for room in rooms:
                room.persisted = True
            broadcast = self._router.broadcast
            for p in taken:
                room = p.room
                room.delivered = p.seq
                broadcast(room.key, frame_text(p.record))
                p.caller.send(events.ack(p.rid, room.name, p.seq, p.event_id, p.client_msg_id))
                for caller, rid in p.duplicates:
                    caller.send(events.ack(rid, room.name, p.seq, p.event_id, p.client_msg_id,
                                            duplicate=True))
                if p.ckey is not None:
                    self._by_ckey.pop(p.ckey, None)
        self._dispatch()

    def _fail(self, taken: list[PendingEntry], error: BaseException) -> None:
        self.failed_commits += 1
        log.error("COMMIT FAILED: %d entries refused, nothing acknowledged: %s", len(taken),
                  error)
        # Only this batch held seqs past each room's committed tail: rewind to it.
        # Unpersisted rooms are retried with their next entry, not in a tight loop.
        for p in taken:
            p.room.seq = min(p.room.seq, p.seq - 1)
        for p in taken:
            p.caller.send(events.error(Internal("message could not be stored",
                                                 request_id=p.rid)))
            for caller, rid in p.duplicates:
                caller.send(events.error(Internal("message could not be stored",
                                                   request_id=rid)))
            if p.ckey is not None:
                self._by_ckey.pop(p.ckey, None)

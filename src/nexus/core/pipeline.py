"""The one write path: intercept -> sequence -> group commit -> ack, fan-out, observe.

Every change to a room goes through ``MessagePipeline.submit`` as a ``PendingEntry`` from a
``Caller``: a WebSocket session, an HTTP request, later an agent, a plugin, a task. One
batch is in flight at a time; entries arriving meanwhile wait in ``_pending`` and become
the next batch, so batch size grows with load and the commit cost is shared. Seqs are
assigned when a batch is handed to the writer; because only that batch is in flight, a
failed commit rolls the counters back without gaps, and its parts are retried apart so
one bad entry cannot fail its neighbours. Nobody gets an ``ack`` or sees an entry before
its commit returned; observers get it after the fan-out.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, Tracer

from .._speedups.framing import frame_text
from .._speedups.histogram import Histogram
from .._speedups.records import EventIds, ack_record, message_record
from .._speedups.router import Router
from ..auth import Principal
from ..errors import BadRequest, Internal, NexusError, Unavailable
from ..protocol import events
from ..protocol.requests import RequestId
from ..store import GroupCommitWriter, LmdbStore, WriteBatch
from ..store.keys import client_key, split_room_key
from .caller import Caller
from .engine import Duplicate, Failed, LogEngine, Retry, Stored
from .interceptors import InterceptorChain
from .observers import Observers
from .rooms import Room

log = logging.getLogger(__name__)
_perf_counter = time.perf_counter
_dumps = orjson.dumps

MESSAGE = "message"
EDITED = "message.edited"
DELETED = "message.deleted"

Patch = tuple[int, dict[str, Any]]  # (target seq, fields to set on that earlier record)


# Bucket bounds in seconds for commit and send -> ack latency.
LATENCY_BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

MetaOp = tuple[str, bytes, bytes | None]  # (db name, key, value or None to delete)


STREAM_DB = "cluster"  # room key -> the shared log's position this node's cache reached
ACK_LATE_S = 2.0  # a stored write not back here by then is answered anyway
_POSITION = struct.Struct(">Q")


class _Nobody:
    """The caller of an entry the cluster engine hands back: its writer was answered when
    it was stored (on whichever node)."""

    principal = None

    def send(self, payload: bytes) -> None:
        return None


_NOBODY: Any = _Nobody()
_SYSTEM = Principal("nexus", "nexus", frozenset(), kind="agent", expires_at=float("inf"))


class PendingEntry:
    """One write on its way to the log. Interceptors see it as a ``PendingWrite``.

    ``kind`` selects the record: ``message`` (body, reply_to, meta), ``message.edited``
    (body, target) and ``message.deleted`` (target) are built here; any other kind is an
    extension's event, its record the common head plus ``fields``.
    """

    __slots__ = (
        "caller",
        "principal",
        "rid",
        "room",
        "kind",
        "body",
        "meta",
        "reply_to",
        "target_id",
        "target_seq",
        "fields",
        "patch",
        "ckey",
        "client_msg_id",
        "duplicates",
        "seq",
        "event_id",
        "record",
        "accepted",
        "trace_ctx",
        "stored",
    )
    event_id: str  # set when dispatched, with seq
    record: bytes

    def __init__(
        self,
        caller: Caller,
        principal: Principal,
        rid: RequestId,
        room: Room,
        kind: str,
        client_msg_id: str | None,
        *,
        body: str | None = None,
        meta: dict[str, Any] | None = None,
        reply_to: str | None = None,
        target_id: str | None = None,
        target_seq: int = 0,
        fields: dict[str, Any] | None = None,
        patch: dict[str, Any] | None = None,
    ) -> None:
        self.caller = caller
        self.principal = principal
        self.rid = rid
        self.room = room
        self.kind = kind
        self.body = body
        self.meta = meta
        self.reply_to = reply_to
        self.target_id = target_id
        self.target_seq = target_seq
        self.fields = fields
        self.patch = patch  # an extension's change to the earlier entry ``target_seq``
        self.ckey: bytes | None = None
        self.client_msg_id = client_msg_id
        self.duplicates: list[tuple[Caller, RequestId]] | None = None  # resends in flight
        self.seq = 0  # event_id and record are set when the entry is dispatched
        self.accepted = _perf_counter()
        self.trace_ctx: SpanContext | None = None
        # Cluster mode: (stream seq, patch, accepted ms) of an entry the engine stored;
        # None for a write still to be sequenced here.
        self.stored: tuple[int, Patch | None, int] | None = None

    def build(self, seq: int, event_id: str, now_ms: int) -> tuple[bytes, Patch | None]:
        """The record stored and delivered, and the patch of an earlier record if any."""
        kind = self.kind
        room = self.room.name
        user = self.principal.user_id
        if kind == MESSAGE:
            reply_to, meta = self.reply_to, self.meta
            return message_record(
                room,
                seq,
                event_id,
                user,
                self.principal.kind,
                now_ms,
                _dumps(self.body or ""),
                None if reply_to is None else _dumps(reply_to),
                None if meta is None else _dumps(meta),
            ), None
        if kind == EDITED:
            return (
                events.message_edited(
                    room,
                    seq,
                    event_id,
                    self.target_id or "",
                    self.target_seq,
                    user,
                    now_ms,
                    self.body or "",
                ),
                (self.target_seq, {"body": self.body, "edited": now_ms, "edited_by": user}),
            )
        if kind == DELETED:
            return (
                events.message_deleted(
                    room, seq, event_id, self.target_id or "", self.target_seq, user, now_ms
                ),
                (
                    self.target_seq,
                    {"body": "", "meta": None, "deleted": now_ms, "deleted_by": user},
                ),
            )
        record = events.room_event(
            kind, room, seq, event_id, user, self.principal.kind, now_ms, self.fields or {}
        )
        if self.patch is not None and self.target_seq:
            return record, (self.target_seq, self.patch)
        return record, None


class PendingMeta:
    __slots__ = ("ops", "on_commit", "future", "shared")

    def __init__(
        self,
        ops: list[MetaOp],
        on_commit: Callable[[], None] | None,
        future: asyncio.Future[None],
        shared: bool = True,
    ) -> None:
        self.ops = ops
        self.on_commit = on_commit
        self.future = future
        self.shared = shared  # cluster mode: False for a change another node shared


class BatchTrace:
    """Spans of one batch: the batch, its commit, its fan-out."""

    __slots__ = ("batch", "commit")

    def __init__(self, tracer: Tracer, entries: list[PendingEntry]) -> None:
        contexts = [p.trace_ctx for p in entries if p.trace_ctx is not None]
        parent = trace.set_span_in_context(NonRecordingSpan(contexts[0])) if contexts else None
        self.batch: Span = tracer.start_span(
            "nexus.pipeline.batch",
            context=parent,
            links=[Link(c) for c in contexts],
            attributes={"nexus.batch.entries": len(entries)},
        )
        self.commit: Span = tracer.start_span(
            "nexus.pipeline.commit", context=trace.set_span_in_context(self.batch)
        )


Part = tuple[list[PendingEntry], list[Room], list[PendingMeta]]


class MessagePipeline:
    def __init__(
        self,
        store: LmdbStore,
        writer: GroupCommitWriter,
        router: Router,
        loop: asyncio.AbstractEventLoop,
        *,
        max_batch: int,
        interceptors: InterceptorChain | None = None,
        observers: Observers | None = None,
        inline_commit: bool = False,
        clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        # Commit on the loop thread (``store_durability = "none"``: nothing to wait for).
        self._inline = inline_commit
        self._router = router
        self._loop = loop
        self._max_batch = max_batch
        self._clock = clock
        # (empty chains are falsy: test for None, not truth)
        self.interceptors = (
            interceptors
            if interceptors is not None
            else InterceptorChain(max_body_bytes=1 << 30, max_meta_bytes=1 << 30)
        )
        self.observers = observers if observers is not None else Observers()
        self._pending: list[PendingEntry] = []
        # Cluster mode: the engine (core/engine.py) and the entries it stored, waiting to
        # be applied to this node's cache and delivered (they go first in every batch).
        self.engine: LogEngine | None = None
        self._stored: list[PendingEntry] = []
        # own writes stored, answered when they come back: (room key, seq) -> entry, timer
        self._awaiting: dict[tuple[str, int], tuple[PendingEntry, asyncio.TimerHandle]] = {}
        self._pending_rooms: list[Room] = []
        self._pending_meta: list[PendingMeta] = []
        self._by_ckey: dict[bytes, PendingEntry] = {}
        # Rooms with an entry awaiting an asynchronous interceptor: later entries of the
        # room wait behind it, so a sender's order is kept.
        self._intercepting: dict[Room, deque[PendingEntry]] = {}
        self._retry: deque[Part] = deque()  # pieces of a failed batch, committed apart
        self._inflight: (
            tuple[list[PendingEntry], list[Room], list[PendingMeta], BatchTrace | None] | None
        ) = None
        self._tracer = tracer
        self._ids = EventIds()
        self._scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._is_idle = True  # mirrors _idle without a method call per write
        # figures for observability
        self.accepted_entries = 0
        self.committed_entries = 0
        self.commits = 0
        self.failed_commits = 0
        self.last_commit_seconds = 0.0
        self.commit_seconds = Histogram(LATENCY_BOUNDS)
        self.ack_seconds = Histogram(LATENCY_BOUNDS)
        self.batch_entries = Histogram(BATCH_BOUNDS)

    @property
    def idle(self) -> bool:
        return (
            self._inflight is None
            and not self._pending
            and not self._stored
            and not self._awaiting
            and not self._pending_rooms
            and not self._pending_meta
            and not self._retry
            and not self._intercepting
        )

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # -- intake --------------------------------------------------------------
    def answered_duplicate(self, caller: Caller, rid: RequestId, client_msg_id: str) -> bool:
        """If ``client_msg_id`` of the caller's principal is queued or stored, answer this
        resend with the original's ack (now, or when its commit lands) and return True.

        Callers check this before validating against current state: a retried delete must
        get its ack, not "already deleted"."""
        principal = caller.principal
        assert principal is not None
        ckey = client_key(principal.tenant, principal.user_id, client_msg_id)
        queued = self._by_ckey.get(ckey)
        if queued is not None:
            if queued.duplicates is None:
                queued.duplicates = []
            queued.duplicates.append((caller, rid))
            return True
        ref = self._store.client_message(principal.tenant, principal.user_id, client_msg_id)
        if ref is None:
            return False
        caller.send(
            events.ack(
                rid,
                split_room_key(ref.room_key)[1],
                ref.seq,
                ref.message_id,
                client_msg_id,
                duplicate=True,
            )
        )
        return True

    def submit(self, entry: PendingEntry) -> None:
        """Queue ``entry`` (its caller has already asked ``answered_duplicate``, and nothing
        ran on the loop since: its ``client_msg_id`` is new). Raises the NexusError of an
        interceptor's denial; an entry held by an asynchronous interceptor is answered
        later, like every entry, through its caller."""
        if entry.client_msg_id is not None:
            principal = entry.principal
            entry.ckey = client_key(principal.tenant, principal.user_id, entry.client_msg_id)
            # Reserved now: a resend while an interceptor is awaited waits for this entry.
            self._by_ckey[entry.ckey] = entry
        if self._tracer is not None:
            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                entry.trace_ctx = ctx
        self.accepted_entries += 1
        if self.interceptors.active:
            waiting = self._intercepting.get(entry.room)
            if waiting is not None:
                waiting.append(entry)
                return
            try:
                rest = self.interceptors.run(
                    self.interceptors.select(entry.room, entry.kind), entry
                )
            except NexusError:
                self._release(entry)
                raise
            if rest is not None:
                self._intercepting[entry.room] = deque()
                self._loop.create_task(self._intercept_room(entry, rest))
                return
        self._pending.append(entry)
        self._schedule()

    async def _intercept_room(self, first: PendingEntry, rest: Awaitable[None]) -> None:
        """Finish the interception of ``first``, then of the entries that queued behind it
        in its room, in order; each enters the next batch when it is done."""
        room = first.room
        waiting = self._intercepting[room]
        await self._finish_interception(first, rest)
        while waiting:
            entry = waiting.popleft()
            try:
                more = self.interceptors.run(self.interceptors.select(room, entry.kind), entry)
            except NexusError as exc:
                self._refuse([entry], exc)
                continue
            await self._finish_interception(entry, more)
        del self._intercepting[room]
        self._schedule()

    async def _finish_interception(self, entry: PendingEntry, rest: Awaitable[None] | None) -> None:
        try:
            if rest is not None:
                await rest
        except NexusError as exc:
            self._refuse([entry], exc)
            return
        except Exception as exc:  # never leave the room blocked behind a broken check
            log.exception("interception failed")
            self._refuse([entry], Internal(f"the write could not be checked: {exc!r}"))
            return
        self._pending.append(entry)
        self._schedule()

    def _release(self, entry: PendingEntry) -> None:
        self.accepted_entries -= 1
        if entry.ckey is not None and self._by_ckey.get(entry.ckey) is entry:
            del self._by_ckey[entry.ckey]

    def persist_room(self, room: Room) -> None:
        self._pending_rooms.append(room)
        self._schedule()

    def submit_meta(
        self,
        ops: list[MetaOp],
        on_commit: Callable[[], None] | None = None,
        *,
        shared: bool = True,
    ) -> asyncio.Future[None]:
        """Write metadata records with the next batch; the future resolves once durable
        (``on_commit`` runs first) or fails with Internal. Cluster mode: records of the
        shared databases go to every node first (``shared=False``: one that came from
        another node, written here only)."""
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending_meta.append(PendingMeta(ops, on_commit, future, shared))
        self._schedule()
        return future

    def submit_stored(
        self,
        room: Room,
        kind: str,
        seq: int,
        event_id: str,
        record: bytes,
        ckey: bytes | None,
        accepted_ms: int,
        patch: Patch | None,
        stream_seq: int,
    ) -> None:
        """Cluster mode: an entry the engine stored (this node's or another's), next in
        its room's seq order, to apply to the cache, deliver and observe. This node's own
        write is answered now, after its message, as in standalone mode."""
        own = self._awaiting.pop((room.key, seq), None)
        if own is not None and own[0].event_id == event_id:
            own[1].cancel()
            entry = own[0]
        else:
            entry = PendingEntry(_NOBODY, _SYSTEM, None, room, kind, None)
        entry.seq = seq
        entry.event_id = event_id
        entry.record = record
        entry.ckey = ckey
        entry.stored = (stream_seq, patch, accepted_ms)
        self._stored.append(entry)
        self._schedule()

    async def _store_shared(
        self,
        batch: WriteBatch,
        taken: list[PendingEntry],
        rooms: list[Room],
        metas: list[PendingMeta],
        traced: BatchTrace | None,
    ) -> None:
        """Cluster mode: store the batch's new writes in the shared log first. Stored ones
        are acknowledged now and applied when the engine hands them back in order; a
        duplicate gets the original's ack; one that lost a race to another node is
        sequenced again. The batch then goes on with what is to apply here."""
        engine = self.engine
        assert engine is not None
        local = [p for p in taken if p.stored is None]
        stored = [p for p in taken if p.stored is not None]
        shared_meta = [op for m in metas if m.shared for op in m.ops if engine.shared(op[0])]
        try:
            if not engine.available:
                raise Unavailable("the cluster's log is unreachable; retry")
            if batch.rooms or shared_meta:
                adopted = await engine.put_meta(batch.rooms, shared_meta)
                for room in rooms:
                    theirs = adopted.get(room.key)
                    if theirs is not None:  # created on another node first: the same room
                        room.meta = orjson.loads(theirs)
                batch.rooms = [(r.key, r.meta_json()) for r in rooms if not r.persisted]
            mine = {(p.room.key, p.seq) for p in local}
            outcomes = (
                await engine.publish([e for e in batch.entries if (e[0], e[1]) in mine])
                if local
                else []
            )
        except Exception as exc:
            error = exc if isinstance(exc, Unavailable) else Unavailable(f"not stored: {exc}")
            if not isinstance(exc, Unavailable):
                log.warning("cluster store failed: %s", exc)
            for p in local:
                p.room.seq = min(p.room.seq, p.seq - 1)
            self._refuse(local, error)
            for m in metas:
                if not m.future.done():
                    m.future.set_exception(error)
            for room in rooms:
                self._forget_room(room)
            self._continue_with(batch, stored, [], [], traced)
            return
        retry: list[PendingEntry] = []
        heads: dict[Room, int] = {}
        for p, outcome in zip(local, outcomes, strict=True):
            if isinstance(outcome, Stored):
                # Answered when it comes back and is delivered here (read-your-writes, the
                # message before the ack); at the latest after ACK_LATE_S: it is stored.
                # It may be back already (the consumer can beat the publish's answer).
                if not self._claim_returned(p):
                    key = (p.room.key, p.seq)
                    late = self._loop.call_later(ACK_LATE_S, self._ack_late, key)
                    self._awaiting[key] = (p, late)
                heads[p.room] = max(heads.get(p.room, 0), p.seq)
            elif isinstance(outcome, Duplicate):
                name = split_room_key(outcome.room_key)[1]
                self._acknowledge(p, name, outcome.seq, outcome.event_id, duplicate=True)
            elif isinstance(outcome, Retry):
                heads[p.room] = max(heads.get(p.room, 0), outcome.head_seq)
                retry.append(p)
            else:
                assert isinstance(outcome, Failed)
                p.room.seq = min(p.room.seq, p.seq - 1)
                self._refuse([p], Unavailable(f"not stored: {outcome.reason}; retry"))
        for room, head in heads.items():
            room.seq = max(head, max((p.seq for p in stored if p.room is room), default=0))
        if retry:
            self._pending[:0] = retry  # sequenced again, first, after the room caught up
        self._continue_with(batch, stored, rooms, metas, traced)

    def _continue_with(
        self,
        batch: WriteBatch,
        stored: list[PendingEntry],
        rooms: list[Room],
        metas: list[PendingMeta],
        traced: BatchTrace | None,
    ) -> None:
        """Apply the stored entries (and the shared metadata) to this node's cache."""
        keep = {(p.room.key, p.seq) for p in stored}
        batch.entries = [e for e in batch.entries if (e[0], e[1]) in keep]
        if not rooms:
            batch.rooms = []
        if not metas:
            batch.meta = [op for op in batch.meta if op[0] == STREAM_DB]
        self._inflight = (stored, rooms, metas, traced)
        if not (batch.entries or batch.rooms or batch.meta):
            self._committed(None, 0.0, None)
            return
        self._commit(batch)

    def _claim_returned(self, p: PendingEntry) -> bool:
        """If ``p`` came back already (waiting in ``_stored``), make its writer that
        entry's: it is answered when the entry is delivered."""
        for back in self._stored:
            if back.room is p.room and back.seq == p.seq and back.event_id == p.event_id:
                back.caller, back.rid, back.principal = p.caller, p.rid, p.principal
                back.client_msg_id, back.duplicates = p.client_msg_id, p.duplicates
                back.accepted = p.accepted
                if p.ckey is not None and self._by_ckey.get(p.ckey) is p:
                    self._by_ckey[p.ckey] = back  # resends meanwhile join it
                return True
        return False

    def _ack_late(self, key: tuple[str, int]) -> None:
        waiting = self._awaiting.pop(key, None)
        if waiting is not None:
            p = waiting[0]
            self._acknowledge(p, p.room.name, p.seq, p.event_id, duplicate=False)
            self._schedule()  # (to tell wait_idle when this was the last one)

    def _acknowledge(
        self, p: PendingEntry, room: str, seq: int, event_id: str, *, duplicate: bool
    ) -> None:
        for caller, rid in [(p.caller, p.rid), *(p.duplicates or ())]:
            caller.send(events.ack(rid, room, seq, event_id, p.client_msg_id, duplicate=duplicate))
            duplicate = True  # resends in flight are duplicates of the first
        if p.ckey is not None and self._by_ckey.get(p.ckey) is p:
            del self._by_ckey[p.ckey]
        self.ack_seconds.observe(_perf_counter() - p.accepted)

    def _forget_room(self, room: Room) -> None:
        """A room whose creation could not be shared: not persisted, nothing in it."""
        room.seq = min(room.seq, room.delivered)

    def _schedule(self) -> None:
        if self._is_idle:
            self._is_idle = False
            self._idle.clear()
        if self._inflight is None and not self._scheduled:
            # Let the rest of this loop iteration's entries join the batch.
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

    # -- commit --------------------------------------------------------------
    def _take(self) -> Part | None:
        if self._retry:
            # Pieces of a failed batch go first, alone: they are older than anything pending.
            taken, rooms, metas = self._retry.popleft()
            # An entry whose room could not be created (its part went first) fails with it.
            lost = [p for p in taken if not p.room.persisted and p.room not in rooms]
            if lost:
                self._refuse(lost, Internal("message could not be stored"))
                taken = [p for p in taken if p.room.persisted or p.room in rooms]
            return taken, rooms, metas
        if not (self._pending or self._pending_rooms or self._pending_meta or self._stored):
            return None
        taken = self._stored
        self._stored = []
        room_for = max(0, self._max_batch - len(taken))
        if room_for:
            taken.extend(self._pending[:room_for])
            del self._pending[:room_for]
        rooms, self._pending_rooms = self._pending_rooms, []
        metas, self._pending_meta = self._pending_meta, []
        return taken, rooms, metas

    def _dispatch(self) -> None:
        self._scheduled = False
        if self._inflight is not None:
            return
        part = self._take()
        if part is None:
            if not self._intercepting and not self._awaiting:
                self._is_idle = True
                self._idle.set()
            return
        taken, rooms, metas = part
        if not (taken or rooms or metas):
            self._dispatch()
            return
        for p in taken:
            if not p.room.persisted and p.room not in rooms:
                rooms.append(p.room)  # a room whose creation failed to commit earlier
        batch = WriteBatch()
        for room in rooms:
            if not room.persisted:
                batch.rooms.append((room.key, room.meta_json()))
        for m in metas:
            batch.meta.extend(m.ops)
        now_ms = int(self._clock() * 1000)
        ids = self._ids
        ids.head(now_ms)
        next_id = ids.next
        entries = batch.entries
        append = entries.append
        unbuildable: list[PendingEntry] = []
        positions: dict[str, int] = {}
        for p in taken:
            room = p.room
            stored = p.stored
            if stored is not None:  # stored by the cluster engine: only to apply here
                if p.seq > room.seq:
                    room.seq = p.seq
                positions[room.key] = stored[0]
                append((room.key, p.seq, p.event_id, p.record, p.ckey, stored[2], stored[1]))  # type: ignore[arg-type]
                continue
            seq = room.seq = room.seq + 1
            p.seq = seq
            p.event_id = event_id = next_id()
            try:
                p.record, patch = record, patch = p.build(seq, event_id, now_ms)
            except Exception:
                # Something validation let through cannot be encoded (an integer past 64
                # bits, say): refuse this entry alone, its seq goes to the next one.
                log.exception("entry of %s could not be encoded; refused", room.key)
                room.seq -= 1
                unbuildable.append(p)
                continue
            # a plain tuple in LogEntry's field order: cheaper to build than the named one
            append((room.key, seq, event_id, record, p.ckey, now_ms, patch))  # type: ignore[arg-type]
        if unbuildable:
            taken = [p for p in taken if p not in unbuildable]
            self._refuse(unbuildable, BadRequest("the entry cannot be stored as given"))
        for rkey, position in positions.items():  # where each room's cache stands
            batch.meta.append((STREAM_DB, rkey.encode(), _POSITION.pack(position)))
        traced = BatchTrace(self._tracer, taken) if self._tracer is not None else None
        self._inflight = (taken, rooms, metas, traced)
        if self.engine is not None and (
            rooms or any(m.shared for m in metas) or any(p.stored is None for p in taken)
        ):
            self._loop.create_task(self._store_shared(batch, taken, rooms, metas, traced))
            return
        self._commit(batch)

    def _commit(self, batch: WriteBatch) -> None:
        """Write the in-flight batch; ``_committed`` follows."""
        if self._inline:
            # No fsync to wait for: commit here instead of handing over to the writer
            # thread and back (a queue, a wake-up pipe, two context switches per batch).
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                self._store.apply(batch)
            except Exception as exc:
                error = exc
            self._committed(error, time.perf_counter() - started, None)
            return
        self._writer.submit(partial(self._store.apply, batch), self._committed)

    def _committed(self, error: BaseException | None, seconds: float, _: object) -> None:
        assert self._inflight is not None
        taken, rooms, metas, traced = self._inflight
        self._inflight = None
        self.last_commit_seconds = seconds
        self.commit_seconds.observe(seconds)
        if traced is not None:
            traced.commit.end()
        if error is not None:
            if traced is not None:
                traced.batch.set_status(trace.StatusCode.ERROR, str(error))
                traced.batch.end()
            self._failed(taken, rooms, metas, error)
        else:
            self.commits += 1
            self.committed_entries += len(taken)
            for room in rooms:
                room.persisted = True
            for m in metas:
                if m.on_commit is not None:
                    m.on_commit()
                if not m.future.done():
                    m.future.set_result(None)
            if taken:
                self.batch_entries.observe(len(taken))
                self._deliver(taken, traced)
            elif traced is not None:
                traced.batch.end()
        if self._inline:
            self._scheduled = False
            self._schedule()  # the next batch at the next iteration: no recursion
        else:
            self._dispatch()

    def _deliver(self, taken: list[PendingEntry], traced: BatchTrace | None) -> None:
        """Fan out in seq order, ack the writers, then hand the entries to the observers."""
        fanout = None
        if traced is not None:
            fanout = self._tracer.start_span(  # type: ignore[union-attr]
                "nexus.pipeline.fanout", context=trace.set_span_in_context(traced.batch)
            )
        now = time.perf_counter()
        ack_seconds = self.ack_seconds
        broadcast = self._router.broadcast
        by_ckey = self._by_ckey
        for p in taken:
            room = p.room
            room.delivered = p.seq
            broadcast(room.key, frame_text(p.record))
            rid, cmid = p.rid, p.client_msg_id
            p.caller.send(
                ack_record(
                    None if rid is None else _dumps(rid),
                    room.name,
                    p.seq,
                    p.event_id,
                    None if cmid is None else _dumps(cmid),
                )
            )
            for caller, rid in p.duplicates or ():
                caller.send(
                    events.ack(rid, room.name, p.seq, p.event_id, p.client_msg_id, duplicate=True)
                )
            if p.ckey is not None:
                by_ckey.pop(p.ckey, None)
            if p.caller is not _NOBODY:
                ack_seconds.observe(now - p.accepted)
        if traced is not None:
            assert fanout is not None
            fanout.end()
            traced.batch.end()
        if self.observers.active:
            self.observers.committed(taken)

    def _failed(
        self,
        taken: list[PendingEntry],
        rooms: list[Room],
        metas: list[PendingMeta],
        error: BaseException,
    ) -> None:
        """A commit failed: nothing of it was written. Retry its parts apart, so one bad
        entry (or a metadata write) cannot fail the requests that shared its batch."""
        self.failed_commits += 1
        # Only this batch held seqs past each room's committed tail: rewind to it. The
        # retried parts are sequenced again when they are dispatched.
        for p in taken:
            p.room.seq = min(p.room.seq, p.seq - 1)
        parts = _split(taken, rooms, metas)
        if parts is not None:
            log.warning(
                "commit of %d entries failed (%s); retrying its parts apart", len(taken), error
            )
            self._retry.extendleft(reversed(parts))
            return
        log.error(
            "COMMIT FAILED: %d entries and %d metadata writes refused, nothing acknowledged: %s",
            len(taken),
            len(metas),
            error,
        )
        for m in metas:
            if not m.future.done():
                m.future.set_exception(Internal("metadata could not be stored"))
        self._refuse(taken, Internal("message could not be stored"))

    def _refuse(self, taken: list[PendingEntry], exc: NexusError) -> None:
        """Answer each entry (and its resends) with ``exc``; forget its reservation."""
        for p in taken:
            for caller, rid in [(p.caller, p.rid), *(p.duplicates or ())]:
                exc.request_id = rid
                caller.send(events.error(exc))
            if p.ckey is not None and self._by_ckey.get(p.ckey) is p:
                del self._by_ckey[p.ckey]


def _split(
    taken: list[PendingEntry], rooms: list[Room], metas: list[PendingMeta]
) -> list[Part] | None:
    """Halves of a failed batch to retry, oldest first; None when it cannot be split.

    Room creations and metadata go apart from the entries (the entries of a room that is
    still unpersisted take it along again), then each group is halved: k bad units among
    n cost O(k log n) extra commits, and the good ones are written meanwhile."""
    if (rooms or metas) and taken:
        return [([], rooms, metas), (taken, [], [])]
    if len(taken) > 1:
        half = len(taken) // 2
        return [(taken[:half], [], []), (taken[half:], [], [])]
    if len(rooms) > 1:
        half = len(rooms) // 2
        return [([], rooms[:half], metas), ([], rooms[half:], [])]
    if rooms and metas:
        return [([], rooms, []), ([], [], metas)]
    if len(metas) > 1:
        half = len(metas) // 2
        return [([], [], metas[:half]), ([], [], metas[half:])]
    return None

"""The JetStream engine: room logs in one stream, metadata and presence in KV buckets.

Writes (``publish``): the node that takes a write proposes the room's next seq and
publishes it to the room's subject with ``Nats-Expected-Last-Subject-Sequence`` = the
stream sequence of the room's last entry it knows. JetStream appends only if nobody else
did meanwhile: seqs stay gapless across writers. A loser learns the room's head (a direct
get of the subject's last message) and its write is sequenced again. ``Nats-Msg-Id`` (the
client key, else the entry id) makes a resend on any node a duplicate, answered with the
original's place. One publish in flight per room per node; rooms in parallel.

Reads: every room this node has loaded is *attached*: an ordered consumer of its subject,
from the position this node's LMDB cache reached, hands each stored entry (the node's own
included) to the pipeline in seq order, which applies it to the cache, fans it out to the
room's members here and feeds the observers. A seq that skips ahead (a consumer restarted
after a NATS restart, say) is backfilled with direct gets before anything is delivered.

Metadata of the shared databases (rooms, members, agents) lives in the ``<stream>_META``
bucket, mirrored into every node's LMDB by a watcher; a room is created there with
``create`` (the first creator wins, the others adopt its settings). Presence: each node
puts ``<node>.<room>.<user>`` into ``<stream>_PRESENCE`` while the user has a session in
the room on it, and heartbeats into ``<stream>_NODES``; a node silent for
``cluster_node_timeout`` is dead: its users leave everywhere and its keys are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
import orjson
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from ..config import Settings
from ..core.engine import Duplicate, EntryTuple, Failed, MetaOp, Outcome, Retry, Stored
from . import wire

log = logging.getLogger(__name__)

SHARED_DBS = frozenset({"room", "member", "agent"})  # new rooms: put_meta's create
DUPLICATE_WINDOW_S = 600.0  # JetStream dedup of Nats-Msg-Id (also the LMDB client index)
_POSITION = struct.Struct(">Q")

# (room key, kind, seq, event id, record, client key, accepted ms, patch, stream seq)
ApplyStored = Callable[[str, str, int, str, bytes, bytes | None, int, Any, int], None]
ApplyMeta = Callable[[str, bytes, bytes | None], None]  # (db, key, value or None)
Broadcast = Callable[[str, str, str, str, bool], None]  # (room key, user, kind, node, joined)


@dataclass
class RoomFeed:
    """What this node knows of one room's place in the stream."""

    room_key: str
    subject: str
    head_seq: int = 0  # the room's newest seq known here (published or received)
    head_stream: int = 0  # its stream sequence
    fed_seq: int = 0  # newest seq handed to the pipeline, in order
    fed_stream: int = 0
    sub: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one publish in flight
    room: Any = None  # the Room followed
    caught_up: bool = False  # the cache reached the room's head once since attaching

    def learn(self, seq: int, stream_seq: int) -> None:
        if stream_seq > self.head_stream:
            self.head_seq, self.head_stream = seq, stream_seq


class JetStreamEngine:
    def __init__(
        self,
        settings: Settings,
        *,
        cached_seq: Callable[[str], int],
        cached_position: Callable[[str], int],
    ) -> None:
        self.settings = settings
        self.stream = settings.cluster_nats_stream
        self.node = settings.cluster_node_id or f"n{secrets.token_hex(4)}"
        self._cached_seq = cached_seq  # the cache's last seq of a room
        self._cached_position = cached_position  # its stream position
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._meta: KeyValue | None = None
        self._presence: KeyValue | None = None
        self._nodes: KeyValue | None = None
        self._feeds: dict[str, RoomFeed] = {}
        self._ready = False
        self._ready_event = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        # presence of other nodes: room key -> user -> node -> kind
        self._remote: dict[str, dict[str, dict[str, str]]] = {}
        self._mine: dict[str, str] = {}  # this node's presence keys -> kind
        self._seen_nodes: dict[str, float] = {}  # node -> monotonic time of its heartbeat
        self._written_meta: dict[str, bytes | None] = {}  # keys this node put (skip echoes)
        self.apply_stored: ApplyStored | None = None
        self.apply_meta: ApplyMeta | None = None
        self.presence_changed: Broadcast | None = None
        # (room key, message id, sender, text, offset; offset -1: the reply ended)
        self.reply_relayed: Callable[[str, str, str, str, int], None] | None = None
        # figures
        self.published = 0
        self.conflicts = 0
        self.duplicates = 0
        self.backfilled = 0

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def available(self) -> bool:
        nc = self._nc
        return self._ready and nc is not None and nc.is_connected

    async def start(self) -> None:
        """Connect (retrying in the background when NATS is not there yet: the node starts
        unready and serves nothing that needs the shared log)."""
        self._tasks.append(asyncio.get_running_loop().create_task(self._connect_loop()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_ready(), 10.0)

    async def _until_ready(self) -> None:
        await self._ready_event.wait()

    async def stop(self) -> None:
        self._stopping = True
        nc = self._nc
        if nc is not None and nc.is_connected and self._presence is not None:
            for key in list(self._mine):  # leave at once instead of after the timeout
                with contextlib.suppress(Exception):
                    await self._presence.delete(key)
            with contextlib.suppress(Exception):
                assert self._nodes is not None
                await self._nodes.delete(self.node)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _connect_loop(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                await self._connect()
                return
            except Exception as exc:
                log.warning("cluster: NATS not reachable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _connect(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "servers": [u.strip() for u in s.cluster_nats_url.split(",") if u.strip()],
            "name": f"nexus-{self.node}",
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.25,
            "connect_timeout": 2,
            "ping_interval": 5,
            "max_outstanding_pings": 2,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
            "error_cb": self._error,
        }
        if s.cluster_nats_credentials_file:
            options["user_credentials"] = s.cluster_nats_credentials_file
        nc = await nats.connect(**options)
        js = nc.jetstream(timeout=s.cluster_publish_timeout)
        await self._ensure_stream(js)
        replicas = s.cluster_replicas
        self._meta = await self._bucket(js, f"{self.stream}_META", replicas, ttl=None)
        self._presence = await self._bucket(js, f"{self.stream}_PRESENCE", replicas, ttl=None)
        self._nodes = await self._bucket(js, f"{self.stream}_NODES", replicas, ttl=None)
        self._nc, self._js = nc, js
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._watch_meta()))
        await self._heartbeat_once()
        self._tasks.append(loop.create_task(self._watch_nodes()))
        self._tasks.append(loop.create_task(self._watch_presence()))
        self._tasks.append(loop.create_task(self._heartbeats()))
        await nc.subscribe(f"{self.stream}.d.>", cb=self._relayed)
        for feed in list(self._feeds.values()):
            await self._subscribe(feed)
        self._ready = True
        self._ready_event.set()
        log.info(
            "cluster: node %s connected to %s (stream %s)",
            self.node,
            s.cluster_nats_url,
            self.stream,
        )

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        config = api.StreamConfig(
            name=self.stream,
            subjects=[wire.stream_subjects(self.stream)],
            storage=api.StorageType.FILE,
            num_replicas=self.settings.cluster_replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
            allow_direct=True,
            discard=api.DiscardPolicy.OLD,
        )
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(config)

    @staticmethod
    async def _bucket(
        js: JetStreamContext, name: str, replicas: int, ttl: float | None
    ) -> KeyValue:
        try:
            return await js.key_value(name)
        except Exception:
            return await js.create_key_value(
                api.KeyValueConfig(bucket=name, history=1, replicas=replicas, ttl=ttl)
            )

    async def _disconnected(self) -> None:
        if not self._stopping:
            log.warning("cluster: disconnected from NATS; writes fail until it is back")

    async def _reconnected(self) -> None:
        log.info("cluster: reconnected to NATS; resuming the room feeds")
        # Ordered consumers live in the server's memory: a restarted server lost them.
        for feed in list(self._feeds.values()):
            await self._subscribe(feed)
        await self._reassert_presence()

    async def _error(self, exc: Exception) -> None:
        log.debug("cluster: NATS error: %s", exc)

    # -- writes --------------------------------------------------------------------
    def shared(self, db: str) -> bool:
        return db in SHARED_DBS

    async def publish(self, entries: Sequence[EntryTuple]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(entries)
        by_room: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            by_room.setdefault(entry[0], []).append(i)
        await asyncio.gather(
            *(self._publish_room(rkey, idx, entries, outcomes) for rkey, idx in by_room.items())
        )
        return [o if o is not None else Failed("not attempted") for o in outcomes]

    async def _publish_room(
        self,
        rkey: str,
        indexes: list[int],
        entries: Sequence[EntryTuple],
        outcomes: list[Outcome | None],
    ) -> None:
        feed = self._feed(rkey)
        js = self._js
        async with feed.lock:
            stop: Outcome | None = None
            for i in indexes:
                if stop is not None:
                    outcomes[i] = stop
                    continue
                entry = entries[i]
                seq = entry[1]
                if js is None or not self.available:
                    outcomes[i] = stop = Failed("NATS is unreachable")
                    continue
                if seq != feed.head_seq + 1:  # the room moved since it was sequenced
                    outcomes[i] = stop = Retry(feed.head_seq)
                    continue
                kind = _kind_of(entry[3])
                headers = {
                    wire.SEQ_HEADER: str(seq),
                    wire.MSG_ID: wire.msg_id(entry[4], entry[2]),
                    wire.EXPECTED_LAST: str(feed.head_stream),
                }
                try:
                    ack = await js.publish(
                        feed.subject,
                        wire.encode(kind, entry),
                        headers=headers,
                        stream=self.stream,
                    )
                except APIError as exc:
                    if exc.err_code == wire.WRONG_LAST_SEQUENCE:
                        self.conflicts += 1
                        await self._learn_head(feed)
                        outcomes[i] = stop = Retry(feed.head_seq)
                    else:
                        outcomes[i] = stop = Failed(str(exc.description or exc))
                    continue
                except Exception as exc:  # timeout, no responders, connection lost
                    outcomes[i] = stop = Failed(str(exc) or type(exc).__name__)
                    continue
                if ack.duplicate:
                    self.duplicates += 1
                    outcomes[i] = await self._original(ack.seq, rkey)
                    # Later entries of the room were sequenced after this one: again.
                    stop = Retry(feed.head_seq)
                    continue
                self.published += 1
                feed.learn(seq, ack.seq)
                outcomes[i] = Stored()

    async def _original(self, stream_seq: int, rkey: str) -> Outcome:
        """The place of the entry a duplicate publish matched."""
        assert self._js is not None
        try:
            msg = await self._js.get_msg(self.stream, seq=stream_seq, direct=True)
        except Exception as exc:
            return Failed(f"the original could not be read: {exc}")
        _, seq, event_id, *_ = wire.decode(msg.data or b"")
        original_room = rkey
        subject = msg.subject or ""
        for feed in self._feeds.values():
            if feed.subject == subject:
                original_room = feed.room_key
                break
        return Duplicate(original_room, seq, event_id)

    async def _learn_head(self, feed: RoomFeed) -> None:
        """The room's newest entry in the stream (after losing a race)."""
        assert self._js is not None
        try:
            msg = await self._js.get_msg(self.stream, subject=feed.subject, direct=True)
        except NotFoundError:
            return
        except Exception as exc:
            log.warning("cluster: head of %s unknown: %s", feed.room_key, exc)
            return
        headers = msg.headers or {}
        seq = int(headers.get(wire.SEQ_HEADER, "0") or 0)
        if msg.seq is not None:
            feed.learn(seq, msg.seq)

    async def put_meta(
        self, rooms: Sequence[tuple[str, bytes]], ops: Sequence[MetaOp]
    ) -> dict[str, bytes]:
        kv = self._meta
        if kv is None or not self.available:
            raise ConnectionError("NATS is unreachable")
        adopted: dict[str, bytes] = {}
        for rkey, meta in rooms:
            room_name = wire.meta_key("room", rkey.encode())
            try:
                await kv.create(room_name, meta)
                self._written_meta[room_name] = meta
            except KeyWrongLastSequenceError:
                entry = await kv.get(room_name)
                if entry.value:
                    adopted[rkey] = entry.value
        for db, key, value in ops:
            name = wire.meta_key(db, key)
            self._written_meta[name] = value
            if value is None:
                await kv.delete(name)
            else:
                await kv.put(name, value)
        return adopted

    # -- reads: the room feeds ------------------------------------------------------
    def _feed(self, rkey: str) -> RoomFeed:
        feed = self._feeds.get(rkey)
        if feed is None:
            feed = self._feeds[rkey] = RoomFeed(rkey, wire.room_subject(self.stream, rkey))
            seq = self._cached_seq(rkey)
            position = self._cached_position(rkey)
            feed.fed_seq = seq
            feed.fed_stream = position
            feed.learn(seq, position)
        return feed

    def attach(self, room: Any) -> None:
        rkey = room.key
        if rkey in self._feeds and self._feeds[rkey].sub is not None:
            return
        feed = self._feed(rkey)
        feed.room = room
        room.on_presence = self._local_presence
        for user, nodes in self._remote.get(rkey, {}).items():
            for node, kind in nodes.items():
                room.remote_join(user, node, kind)
        if self.available:
            asyncio.get_running_loop().create_task(self._subscribe(feed))

    def gate(self, room: Any) -> Any:
        """None when ``room`` is caught up here; else an awaitable that is done when it is
        (at most ``cluster_publish_timeout``): joins answer with the room's real head."""
        feed = self._feeds.get(room.key)
        if not self.available or (room.persisted and (feed is None or feed.caught_up)):
            return None
        return self._shared_and_caught_up(room, feed)

    async def _shared_and_caught_up(self, room: Any, feed: RoomFeed | None) -> None:
        """A room created by this join is shared first (another node may have created it
        already: its settings are adopted), then caught up."""
        deadline = time.monotonic() + self.settings.cluster_publish_timeout
        while not room.persisted:
            if time.monotonic() > deadline:
                log.warning("cluster: room %s not shared in time", room.key)
                break
            await asyncio.sleep(0.01)
        if feed is not None and not feed.caught_up:
            await self._catch_up(feed)

    async def _catch_up(self, feed: RoomFeed) -> None:
        deadline = time.monotonic() + self.settings.cluster_publish_timeout
        await self._learn_head(feed)
        target = feed.head_seq
        while feed.room is not None and feed.room.delivered < target:
            if time.monotonic() > deadline:
                log.warning("cluster: %s not caught up in time", feed.room_key)
                return
            await asyncio.sleep(0.01)
        feed.caught_up = True

    async def _subscribe(self, feed: RoomFeed) -> None:
        js = self._js
        if js is None:
            return
        old, feed.sub = feed.sub, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=feed.fed_stream + 1,
        )
        try:

            async def on_entry(msg: Any) -> None:
                await self._on_entry(feed, msg)

            feed.sub = await js.subscribe(
                feed.subject,
                stream=self.stream,
                cb=on_entry,
                ordered_consumer=True,
                config=config,
                idle_heartbeat=2.0,
            )
        except Exception as exc:
            log.warning("cluster: cannot follow %s: %s", feed.room_key, exc)

    async def _on_entry(self, feed: RoomFeed, msg: Any) -> None:
        stream_seq = msg.metadata.sequence.stream
        try:
            kind, seq, event_id, ckey, accepted_ms, patch, record = wire.decode(msg.data)
        except Exception:
            log.exception("cluster: an undecodable entry at %s:%d", self.stream, stream_seq)
            return
        await self._feed_in(feed, kind, seq, event_id, ckey, accepted_ms, patch, record, stream_seq)

    async def _feed_in(
        self,
        feed: RoomFeed,
        kind: str,
        seq: int,
        event_id: str,
        ckey: bytes | None,
        accepted_ms: int,
        patch: Any,
        record: bytes,
        stream_seq: int,
    ) -> None:
        feed.learn(seq, stream_seq)
        if seq <= feed.fed_seq:
            feed.fed_stream = max(feed.fed_stream, stream_seq)
            return  # delivered already (a consumer restarted from an older position)
        if seq != feed.fed_seq + 1:
            await self._backfill(feed, seq)
            if seq != feed.fed_seq + 1:
                log.error("cluster: %s skips from %d to %d", feed.room_key, feed.fed_seq, seq)
                return
        feed.fed_seq, feed.fed_stream = seq, stream_seq
        if self.apply_stored is not None:
            self.apply_stored(
                feed.room_key, kind, seq, event_id, record, ckey, accepted_ms, patch, stream_seq
            )

    async def _backfill(self, feed: RoomFeed, upto: int) -> None:
        """Entries between what was fed and ``upto`` (exclusive), read one by one."""
        js = self._js
        assert js is not None
        position = feed.fed_stream
        while feed.fed_seq + 1 < upto:
            try:
                msg = await js.get_msg(
                    self.stream, seq=position + 1, subject=feed.subject, next=True, direct=True
                )
            except Exception as exc:
                log.warning("cluster: backfill of %s stopped: %s", feed.room_key, exc)
                return
            if msg.seq is None or msg.data is None:
                return
            position = msg.seq
            kind, seq, event_id, ckey, ms, patch, record = wire.decode(msg.data)
            if seq <= feed.fed_seq:
                continue
            if seq != feed.fed_seq + 1 or seq >= upto:
                return
            self.backfilled += 1
            feed.fed_seq, feed.fed_stream = seq, position
            feed.learn(seq, position)
            if self.apply_stored is not None:
                self.apply_stored(
                    feed.room_key, kind, seq, event_id, record, ckey, ms, patch, position
                )

    # -- shared metadata ------------------------------------------------------------
    async def _watch_meta(self) -> None:
        assert self._meta is not None
        watcher = await self._meta.watchall()
        async for entry in watcher:
            if entry is None:
                continue  # the end of the initial values
            parsed = wire.parse_meta_key(entry.key)
            if parsed is None:
                continue
            db, key = parsed
            value = entry.value if entry.operation is None else None
            if entry.key in self._written_meta and self._written_meta.pop(entry.key) == value:
                continue  # our own write, applied here already
            if self.apply_meta is not None:
                self.apply_meta(db, key, value)

    # -- presence ---------------------------------------------------------------------
    def _local_presence(self, room: Any, user: str, kind: str, present: bool) -> None:
        key = wire.presence_key(self.node, room.key, user)
        if present:
            self._mine[key] = kind
        else:
            self._mine.pop(key, None)
        if self.available:
            asyncio.get_running_loop().create_task(
                self._put_presence(key, kind if present else None)
            )

    async def _put_presence(self, key: str, kind: str | None) -> None:
        kv = self._presence
        if kv is None:
            return
        try:
            if kind is None:
                await kv.delete(key)
            else:
                await kv.put(key, kind.encode())
        except Exception as exc:
            log.warning("cluster: presence %s not shared: %s", key, exc)

    async def _reassert_presence(self) -> None:
        for key, kind in list(self._mine.items()):
            await self._put_presence(key, kind)

    async def _watch_presence(self) -> None:
        assert self._presence is not None
        watcher = await self._presence.watchall()
        async for entry in watcher:
            if entry is None:
                continue
            parsed = wire.parse_presence_key(entry.key)
            if parsed is None:
                continue
            node, rkey, user = parsed
            if node == self.node:
                if entry.operation is not None and entry.key in self._mine:
                    # Removed while we were silent (taken for dead): still here.
                    await self._put_presence(entry.key, self._mine[entry.key])
                continue
            if entry.operation is None:
                kind = (entry.value or b"human").decode()
                self._remote.setdefault(rkey, {}).setdefault(user, {})[node] = kind
                self._told(rkey, user, kind, node, True)
            else:
                nodes = self._remote.get(rkey, {}).get(user, {})
                kind = nodes.pop(node, "human")
                if not nodes:
                    self._remote.get(rkey, {}).pop(user, None)
                self._told(rkey, user, kind, node, False)

    def _told(self, rkey: str, user: str, kind: str, node: str, joined: bool) -> None:
        if self.presence_changed is not None:
            self.presence_changed(rkey, user, kind, node, joined)

    async def _heartbeat_once(self) -> None:
        assert self._nodes is not None
        await self._nodes.put(self.node, orjson.dumps({"at": time.time()}))

    async def _heartbeats(self) -> None:
        interval = self.settings.cluster_heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self._heartbeat_once()
            except Exception as exc:
                log.debug("cluster: heartbeat not sent: %s", exc)
            self._sweep_dead()

    async def _watch_nodes(self) -> None:
        assert self._nodes is not None
        watcher = await self._nodes.watchall()
        async for entry in watcher:
            if entry is None or entry.key == self.node:
                continue
            if entry.operation is None:
                self._seen_nodes[entry.key] = time.monotonic()
            else:  # a node that stopped cleanly
                self._seen_nodes.pop(entry.key, None)
                self._node_gone(entry.key)

    def _sweep_dead(self) -> None:
        now = time.monotonic()
        timeout = self.settings.cluster_node_timeout
        for node, seen in list(self._seen_nodes.items()):
            if now - seen > timeout:
                log.warning("cluster: node %s silent for %.1f s: its users leave", node, now - seen)
                del self._seen_nodes[node]
                self._node_gone(node)

    def _node_gone(self, node: str) -> None:
        for rkey, users in list(self._remote.items()):
            for user, nodes in list(users.items()):
                kind = nodes.pop(node, None)
                if kind is None:
                    continue
                if not nodes:
                    del users[user]
                self._told(rkey, user, kind, node, False)
                if self.available:
                    key = wire.presence_key(node, rkey, user)
                    asyncio.get_running_loop().create_task(self._put_presence(key, None))

    # -- reply text across nodes (not logged: core NATS, at most once) ---------------
    def relay(self, rkey: str, message_id: str, sender: str, text: str, offset: int) -> None:
        nc = self._nc
        if nc is None or not self.available:
            return
        tenant_room = wire.room_subject(self.stream, rkey).split(".r.", 1)[1]
        payload = orjson.dumps([self.node, message_id, sender, offset, text])
        asyncio.get_running_loop().create_task(
            self._publish_core(f"{self.stream}.d.{tenant_room}", payload)
        )

    async def _publish_core(self, subject: str, payload: bytes) -> None:
        nc = self._nc
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.publish(subject, payload)

    async def _relayed(self, msg: Any) -> None:
        try:
            node, message_id, sender, offset, text = orjson.loads(msg.data)
            _, _, tenant_hex, room_hex = msg.subject.split(".", 3)
            rkey = wire.room_key_of(tenant_hex, room_hex)
        except Exception:
            return
        if node != self.node and self.reply_relayed is not None:
            self.reply_relayed(rkey, str(message_id), str(sender), str(text), int(offset))

    # -- figures ------------------------------------------------------------------------
    def figures(self) -> dict[str, int]:
        return {
            "published": self.published,
            "conflicts": self.conflicts,
            "duplicates": self.duplicates,
            "backfilled": self.backfilled,
            "rooms": len(self._feeds),
            "nodes": len(self._seen_nodes) + 1,
        }


def position_of(raw: bytes | None) -> int:
    return _POSITION.unpack(raw)[0] if raw else 0


_TYPE_PREFIX = b'{"type":"'


def _kind_of(record: bytes) -> str:
    """An entry's kind: every record starts with its type (a cheap slice, no parse)."""
    if record.startswith(_TYPE_PREFIX):
        end = record.find(b'"', len(_TYPE_PREFIX))
        if end > 0:
            return record[len(_TYPE_PREFIX) : end].decode()
    kind = orjson.loads(record).get("type")
    return kind if isinstance(kind, str) else "message"

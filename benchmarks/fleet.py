"""The soak's simulated users: picows connections that join, leave and resume rooms, send
messages and `ping` requests, and check every room's sequence as it arrives.

A ``User`` outlives its connections: when one drops (a storm or the server), the next
rejoins the same rooms with ``since`` = the last seq seen, as a real client would, and so
does a rejoin within ``RESUME_WINDOW_S`` of leaving a room; so every message of a room must
arrive exactly once and in order across reconnects, leaves and rejoins. Anything else is
counted in ``Tally`` (gaps, duplicates, strays).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .targets import Nexus

TARGET = Nexus("nexus")
RECONNECT_AFTER_S = 1.0  # after an unexpected close, like a client's backoff
# A room left longer ago than this is joined afresh, not resumed: otherwise the replays of
# rejoins would grow with the length of the run and the load would not be level.
RESUME_WINDOW_S = 60.0


@dataclass
class Tally:
    """Counters for the whole run, and the latencies of the current sample window."""

    sent: int = 0
    acked: int = 0
    delivered: int = 0
    pings: int = 0
    joins: int = 0
    resumes: int = 0  # joins with ``since``
    leaves: int = 0
    gaps: int = 0  # seqs that never arrived
    duplicates: int = 0  # seqs at or below one already seen
    strays: int = 0  # messages for a room the connection is not in
    in_flight_at_drop: int = 0  # sends and pings unanswered when their connection went
    reconnect_failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unexpected_closes: dict[str, int] = field(default_factory=dict)
    ack_window: list[float] = field(default_factory=list)
    ping_window: list[float] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return self.gaps + self.duplicates + self.strays

    def take_window(self) -> tuple[list[float], list[float]]:
        acks, pings = self.ack_window, self.ping_window
        self.ack_window, self.ping_window = [], []
        return acks, pings


class RoomState(Enum):
    JOINING = 1
    JOINED = 2
    LEAVING = 3


class _Listener(WSListener):
    def __init__(self, user: User) -> None:
        self.user = user

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.user.on_event(orjson.loads(frame.get_payload_as_bytes()))
        elif frame.msg_type == WSMsgType.CLOSE:
            # from the payload: an application code (4xxx) is not a WSCloseCode member
            payload = frame.get_payload_as_bytes()
            self.user.close_code = int.from_bytes(payload[:2], "big") if payload else 1005

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.user.on_disconnected()


class User:
    """One simulated user and its current connection."""

    def __init__(
        self, index: int, url: str, tally: Tally, ids: Callable[[], int], token_ttl: float
    ) -> None:
        self.index = index
        self.url = url
        self.tally = tally
        self._ids = ids
        self._token_ttl = token_ttl
        self.transport: WSTransport | None = None
        self.rooms: dict[str, RoomState] = {}  # rooms of this user, kept across reconnects
        self.seen: dict[str, int] = {}  # room -> last seq received
        self.left_at: dict[str, float] = {}  # room -> when this user last left it
        self.pending: dict[int, float] = {}  # message.send id -> sent at
        self.pings: dict[int, float] = {}
        self.close_code: int | None = None
        self.dropping = False  # the client itself is closing this connection
        self.stopped = False

    @property
    def live(self) -> bool:
        return self.transport is not None and not self.dropping

    def joined(self) -> list[str]:
        return [r for r, s in self.rooms.items() if s is RoomState.JOINED]

    async def connect(self) -> None:
        """Open a connection and (re)join this user's rooms, resuming where it left off."""
        self.close_code = None
        transport, _ = await ws_connect(
            lambda: _Listener(self),
            self.url,
            websocket_handshake_timeout=10,
            extra_headers=TARGET.headers(self.index, ttl=self._token_ttl),
        )
        self.transport = transport
        for room in list(self.rooms):
            self.join(room)

    async def reconnect_later(self, delay: float = RECONNECT_AFTER_S) -> None:
        while not self.stopped:
            await asyncio.sleep(delay)
            try:
                await self.connect()
                return
            except Exception:
                self.tally.reconnect_failures += 1

    def _send(self, request: dict[str, object]) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps(request))

    # -- requests ---------------------------------------------------------------
    def join(self, room: str) -> None:
        request: dict[str, object] = {"type": "room.join", "id": self._ids(), "room": room}
        left = self.left_at.pop(room, None)
        if left is not None and time.perf_counter() - left > RESUME_WINDOW_S:
            self.seen.pop(room, None)
        since = self.seen.get(room)
        if since is not None:
            request["since"] = since
            self.tally.resumes += 1
        self.tally.joins += 1
        self.rooms[room] = RoomState.JOINING
        self._send(request)

    def leave(self, room: str) -> None:
        self.tally.leaves += 1
        self.rooms[room] = RoomState.LEAVING
        self._send({"type": "room.leave", "id": self._ids(), "room": room})

    def send_message(self, room: str, body: str) -> None:
        rid = self._ids()
        self.pending[rid] = time.perf_counter()
        self.tally.sent += 1
        self._send({"type": "message.send", "id": rid, "room": room, "body": body})

    def ping(self) -> None:
        rid = self._ids()
        self.pings[rid] = time.perf_counter()
        self.tally.pings += 1
        self._send({"type": "ping", "id": rid})

    async def drop(self, hard: bool) -> None:
        """Close this connection as a storm does: a reset (``hard``) or a close frame."""
        transport = self.transport
        if transport is None:
            return
        self.dropping = True
        if hard:
            transport.disconnect(graceful=False)
        else:
            transport.send_close(WSCloseCode.GOING_AWAY)
            transport.disconnect()
        await transport.wait_disconnected()

    # -- events -----------------------------------------------------------------
    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        now = time.perf_counter()
        tally = self.tally
        if kind == "message":
            self._check_seq(str(event["room"]), event["seq"])
        elif kind == "ack":
            sent_at = self.pending.pop(event["id"], None)
            if sent_at is not None:
                tally.acked += 1
                tally.ack_window.append(now - sent_at)
        elif kind == "pong":
            sent_at = self.pings.pop(event["id"], None)
            if sent_at is not None:
                tally.ping_window.append(now - sent_at)
        elif kind == "room.joined":
            room = str(event["room"])
            # A fresh join delivers live from the room's current seq; a resume from ``since``.
            self.seen.setdefault(room, event["seq"])
            if self.rooms.get(room) is RoomState.JOINING:
                self.rooms[room] = RoomState.JOINED
        elif kind == "room.left":
            room = str(event["room"])
            self.rooms.pop(room, None)
            self.left_at[room] = now
        elif kind == "error":
            code = str(event["code"])
            tally.errors[code] = tally.errors.get(code, 0) + 1
            self.pending.pop(event["id"], None)
            self.pings.pop(event["id"], None)

    def _check_seq(self, room: str, seq: int) -> None:
        tally = self.tally
        tally.delivered += 1
        last = self.seen.get(room)
        if last is None or room not in self.rooms:
            tally.strays += 1
        elif seq == last + 1:
            self.seen[room] = seq
        elif seq <= last:
            tally.duplicates += 1
        else:
            tally.gaps += seq - last - 1
            self.seen[room] = seq

    def on_disconnected(self) -> None:
        self.transport = None
        self.tally.in_flight_at_drop += len(self.pending) + len(self.pings)
        self.pending.clear()
        self.pings.clear()
        for room, state in list(self.rooms.items()):
            if state is RoomState.LEAVING:
                del self.rooms[room]
                self.left_at[room] = time.perf_counter()
        if self.dropping:
            self.dropping = False
            return
        if self.stopped:
            return
        why = str(self.close_code) if self.close_code is not None else "no close frame"
        self.tally.unexpected_closes[why] = self.tally.unexpected_closes.get(why, 0) + 1
        asyncio.get_running_loop().create_task(self.reconnect_later())


class Fleet:
    """All the users, and the activities the soak drives them through."""

    def __init__(
        self, url: str, users: int, rooms: int, rooms_per_user: int, *, token_ttl: float, seed: int
    ) -> None:
        self.tally = Tally()
        self.rng = random.Random(seed)
        self.rooms = [f"soak-{i}" for i in range(rooms)]
        self.rooms_per_user = min(rooms_per_user, rooms)
        counter = iter(range(1, 1 << 62))
        self.users = [User(i, url, self.tally, counter.__next__, token_ttl) for i in range(users)]
        self.storms: list[dict[str, float]] = []

    def live(self) -> list[User]:
        return [u for u in self.users if u.live]

    async def start(self, batch: int = 50) -> None:
        """Connect every user; each joins ``rooms_per_user`` rooms."""
        for first in range(0, len(self.users), batch):
            group = self.users[first : first + batch]
            await asyncio.gather(*(u.connect() for u in group))
            for u in group:
                for room in self.rng.sample(self.rooms, self.rooms_per_user):
                    u.join(room)

    def _pick(self, tries: int = 20) -> tuple[User, list[str]] | None:
        for _ in range(tries):
            user = self.rng.choice(self.users)
            rooms = user.joined() if user.live else []
            if rooms:
                return user, rooms
        return None

    async def send_messages(self, rate: float, body: str, tick: float = 0.02) -> None:
        """``rate`` messages a second in all, each from a random user to one of its rooms."""
        t0 = time.perf_counter()
        done = 0
        while True:
            await asyncio.sleep(tick)
            due = int((time.perf_counter() - t0) * rate) - done
            for _ in range(due):
                picked = self._pick()
                if picked is not None:
                    user, rooms = picked
                    user.send_message(self.rng.choice(rooms), body)
            done += due

    async def send_pings(self, per_s: float) -> None:
        while True:
            await asyncio.sleep(1 / per_s)
            live = self.live()
            if live:
                self.rng.choice(live).ping()

    async def churn(self, period: float, tick: float = 1.0) -> None:
        """Each user, on average once a ``period``, leaves one room and joins another
        (with ``since`` when it has been there before: a resume)."""
        per_tick = len(self.users) * tick / period
        owed = 0.0
        while True:
            await asyncio.sleep(tick)
            owed += per_tick
            while owed >= 1:
                owed -= 1
                picked = self._pick()
                if picked is None:
                    continue
                user, rooms = picked
                others = [r for r in self.rooms if r not in user.rooms]
                staying = [r for r, s in user.rooms.items() if s is not RoomState.LEAVING]
                if len(staying) >= self.rooms_per_user:
                    user.leave(self.rng.choice(rooms))
                if others:
                    user.join(self.rng.choice(others))

    async def storm(self, fraction: float, started: float) -> None:
        """Drop ``fraction`` of the live connections at once (half reset, half closed with
        1001), then reconnect them all at once."""
        live = self.live()
        victims = self.rng.sample(live, int(len(live) * fraction))
        t0 = time.perf_counter()
        await asyncio.gather(*(u.drop(hard=i % 2 == 0) for i, u in enumerate(victims)))
        results = await asyncio.gather(*(u.connect() for u in victims), return_exceptions=True)
        failed = [u for u, r in zip(victims, results, strict=False) if isinstance(r, BaseException)]
        self.tally.reconnect_failures += len(failed)
        for u in failed:
            asyncio.get_running_loop().create_task(u.reconnect_later())
        self.storms.append(
            {
                "t": t0 - started,
                "dropped": len(victims),
                "reconnect_s": time.perf_counter() - t0,
                "failed": len(failed),
            }
        )

    async def storms_every(
        self, every: float, fraction: float, started: float, offset: float = 0.0
    ) -> None:
        """A storm every ``every`` seconds from ``started`` (``perf_counter`` time), each
        ``offset`` seconds late."""
        at = started + every + offset
        while True:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            await self.storm(fraction, started)
            at += every

    async def close(self) -> None:
        for u in self.users:
            u.stopped = True
        transports = [u.transport for u in self.users if u.transport is not None]
        for t in transports:
            t.send_close(WSCloseCode.OK)
            t.disconnect()
        await asyncio.gather(*(t.wait_disconnected() for t in transports))

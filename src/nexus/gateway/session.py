"""One authenticated (or authenticating) client connection's state."""

from __future__ import annotations

import asyncio

from .._speedups.ratelimit import TokenBucket
from .._speedups.router import Outbox
from ..auth import Principal
from ..core.rooms import Room

# An idle connection is mostly its session: until it joins a room (or replays one) it
# shares these two empty maps instead of holding two dicts of its own (128 bytes). They
# are never written to: ``enter``/``start_replay`` give the session its own first.
_NO_ROOMS: dict[str, Room] = {}
_NO_REPLAYS: dict[str, tuple[Room, asyncio.Task[None]]] = {}


class Session:
    __slots__ = (
        "session_id",
        "outbox",
        "principal",
        "bucket",
        "user_bucket",
        "rooms",
        "replaying",
        "closed",
        "_paused",
        "_resumed",
    )

    def __init__(self, session_id: str, outbox: Outbox, bucket: TokenBucket) -> None:
        self.session_id = session_id
        self.outbox = outbox
        self.principal: Principal | None = None
        self.bucket = bucket
        self.user_bucket: TokenBucket | None = None
        self.rooms = _NO_ROOMS  # room name -> room, receiving live traffic
        # room name -> (room, catch-up task) for joins still replaying missed entries
        self.replaying = _NO_REPLAYS
        self.closed = False
        self._paused = False
        self._resumed: asyncio.Future[None] | None = None  # made only when someone waits

    @property
    def remote(self) -> str:
        """The peer's address, asked of the transport when needed (logs, the admin API)
        rather than kept as a string by every connection."""
        peer = self.outbox.transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    def send(self, payload: bytes) -> None:
        """Queue one event for this client (coalesced into the next flush)."""
        if not self.closed:
            self.outbox.push_text(payload)

    def room_count(self) -> int:
        return len(self.rooms) + len(self.replaying)

    def enter(self, room: Room) -> None:
        """Receive ``room``'s live traffic (the session's own map from the first room on)."""
        if self.rooms is _NO_ROOMS:
            self.rooms = {}
        self.rooms[room.name] = room

    def start_replay(self, room: Room, task: asyncio.Task[None]) -> None:
        if self.replaying is _NO_REPLAYS:
            self.replaying = {}
        self.replaying[room.name] = (room, task)

    # -- transport backpressure (set by the connection from pause/resume_writing) ----------
    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)
        self._resumed = None

    async def writable(self) -> None:
        """Return once the transport takes more data (immediately if it does now)."""
        if self._paused and not self.closed:
            if self._resumed is None:
                self._resumed = asyncio.get_running_loop().create_future()
            await self._resumed

    def abort_waits(self) -> None:
        if self._resumed is not None and not self._resumed.done():
            self._resumed.cancel()

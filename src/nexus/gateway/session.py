"""One authenticated (or authenticating) client connection's state."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .._speedups.ratelimit import TokenBucket
from .._speedups.router import Outbox
from ..auth import Principal

if TYPE_CHECKING:
    from ..core.rooms import Room


class Session:
    __slots__ = (
        "session_id",
        "outbox",
        "principal",
        "bucket",
        "user_bucket",
        "rooms",
        "replaying",
        "remote",
        "closed",
        "_paused",
        "_resumed",
    )

    def __init__(self, session_id: str, outbox: Outbox, bucket: TokenBucket, remote: str) -> None:
        self.session_id = session_id
        self.outbox = outbox
        self.principal: Principal | None = None
        self.bucket = bucket
        self.user_bucket: TokenBucket | None = None
        self.rooms: dict[str, Room] = {}  # room name -> room, receiving live traffic
        # room name -> (room, catch-up task) for joins still replaying missed entries
        self.replaying: dict[str, tuple[Room, asyncio.Task[None]]] = {}
        self.remote = remote
        self.closed = False
        self._paused = False
        self._resumed: asyncio.Future[None] | None = None  # made only when someone waits

    def send(self, payload: bytes) -> None:
        """Queue one event for this client (coalesced into the next flush)."""
        if not self.closed:
            self.outbox.push_text(payload)

    def room_count(self) -> int:
        return len(self.rooms) + len(self.replaying)

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

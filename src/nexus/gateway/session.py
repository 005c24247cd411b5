"""One authenticated (or authenticating) client connection's state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._speedups.framing import frame_text
from .._speedups.ratelimit import TokenBucket
from .._speedups.router import Outbox
from ..auth import Principal

if TYPE_CHECKING:
    from ..core.rooms import Room


class Session:
    __slots__ = ("session_id", "outbox", "principal", "bucket", "user_bucket", "rooms",
                 "remote", "closed")

    def __init__(self, session_id: str, outbox: Outbox, bucket: TokenBucket,
                 remote: str) -> None:
        self.session_id = session_id
        self.outbox = outbox
        self.principal: Principal | None = None
        self.bucket = bucket
        self.user_bucket: TokenBucket | None = None
        self.rooms: dict[str, Room] = {}  # room name -> room
        self.remote = remote
        self.closed = False

    def send(self, payload: bytes) -> None:
        """Queue one event for this client (coalesced into the next flush)."""
        if not self.closed:
            self.outbox.push(frame_text(payload))

    def send_frame(self, frame: bytes) -> None:
        if not self.closed:
            self.outbox.push(frame)

"""The seam between the one write path and where room logs are stored.

Standalone (the embedded default), the pipeline commits to LMDB itself and no engine is
set. In cluster mode (``cluster_engine = "nats"``, cluster/) an engine stores each entry
in the shared log first (JetStream) and feeds every stored entry, the node's own
included, back to the pipeline in seq order (``MessagePipeline.submit_stored``): LMDB is
then this node's cache of the rooms it serves, written by the same group commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# (room key, seq, event id, record, client key, accepted ms, patch) as in store.LogEntry
EntryTuple = tuple[str, int, str, bytes, bytes | None, int, Any]
MetaOp = tuple[str, bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class Stored:
    """Stored in the shared log (the writer is acknowledged now; the entry comes back to
    be applied and delivered in order)."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The entry's client_msg_id was stored before: the original's place."""

    room_key: str
    seq: int
    event_id: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Not stored: the room moved on another node (or an entry before this one of the
    same room was not stored). Sequence it again after ``head_seq``."""

    head_seq: int


@dataclass(frozen=True, slots=True)
class Failed:
    """Not stored: the shared log could not be reached (retryable; nothing was stored)."""

    reason: str


Outcome = Stored | Duplicate | Retry | Failed


class LogEngine(Protocol):
    @property
    def available(self) -> bool:
        """Whether writes can be stored now (else they fail fast as unavailable)."""

    async def publish(self, entries: Sequence[EntryTuple]) -> list[Outcome]:
        """Store ``entries`` (each room's in seq order), one outcome per entry."""

    async def put_meta(
        self, rooms: Sequence[tuple[str, bytes]], ops: Sequence[MetaOp]
    ) -> dict[str, bytes]:
        """Share room creations and metadata writes with the other nodes; returns the
        metadata of rooms another node created first (to adopt instead of ours)."""

    def attach(self, room: Any) -> None:
        """Start feeding this node the room's stored entries (from its cached position)."""

    def shared(self, db: str) -> bool:
        """Whether metadata of ``db`` is shared by every node (rooms, members, agents)."""

"""The two seams of the write path, for extensions (see docs/extending.md).

1. ``WriteInterceptor`` — before commit. Consulted for the writes it subscribed to
   (``wants`` the room, ``kinds``), in registration order; answers ``ALLOW``, ``Deny``,
   ``Replace`` or ``Annotate``. Synchronous and bounded: a call over its ``deadline``, or
   one that raises, is a fault handled by its failure policy; repeated faults quarantine
   it. An interceptor may also return an awaitable (a remote moderation service): the
   write's ``client_msg_id`` is reserved first, so a resend meanwhile is answered as a
   duplicate (docs/decisions/0005).
2. ``CommitObserver`` — after commit and fan-out. Receives batches of committed entries
   per room in seq order, at least once, with a durable per-room cursor; never blocks
   fan-out; a failing one is retried with backoff and never affects another.

With nothing registered each seam costs the pipeline one branch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from ..auth import Principal
from .rooms import Room

# -- before commit ---------------------------------------------------------------------------


class PendingWrite(Protocol):
    """What an interceptor sees of a write (read-only: answer with a verdict to change it)."""

    @property
    def room(self) -> Room: ...

    @property
    def principal(self) -> Principal: ...

    @property
    def kind(self) -> str: ...  # "message", "message.edited", "message.deleted", ...

    @property
    def body(self) -> str | None: ...

    @property
    def meta(self) -> dict[str, Any] | None: ...

    @property
    def client_msg_id(self) -> str | None: ...


class Verdict:
    """An interceptor's answer. ``ALLOW`` lets the write through unchanged."""

    __slots__ = ()


class Allow(Verdict):
    __slots__ = ()

    def __repr__(self) -> str:
        return "ALLOW"


ALLOW = Allow()


@dataclass(frozen=True, slots=True)
class Deny(Verdict):
    """Refuse the write; the caller gets an ``error`` with ``code`` and ``reason``."""

    reason: str
    code: str = "forbidden"


@dataclass(frozen=True, slots=True)
class Replace(Verdict):
    """Store ``body`` and/or ``meta`` instead (None: keep the original)."""

    body: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Annotate(Verdict):
    """Merge ``meta`` into the write's meta (its keys win)."""

    meta: dict[str, Any]


FailurePolicy = Literal["open", "closed"]


class WriteInterceptor(Protocol):
    name: str
    kinds: frozenset[str] | None  # None: every kind
    deadline: float  # seconds one call may take before it counts as a fault
    failure_policy: FailurePolicy  # "open": a fault allows the write; "closed": denies it

    def wants(self, room: Room) -> bool:
        """Whether writes to ``room`` concern this interceptor (checked once per write)."""

    def intercept(self, write: PendingWrite) -> Verdict | Awaitable[Verdict]: ...


# -- after commit ----------------------------------------------------------------------------


class CommittedEntry:
    """One committed log entry, as observers receive it."""

    __slots__ = ("room_key", "seq", "kind", "record", "_event")

    def __init__(self, room_key: str, seq: int, kind: str, record: bytes) -> None:
        self.room_key = room_key
        self.seq = seq
        self.kind = kind
        self.record = record  # exactly the JSON members received
        self._event: dict[str, Any] | None = None

    @classmethod
    def from_record(cls, room_key: str, seq: int, record: bytes) -> CommittedEntry:
        entry = cls(room_key, seq, "", record)
        entry.kind = entry.event()["type"]
        return entry

    def event(self) -> dict[str, Any]:
        """The record parsed (once)."""
        if self._event is None:
            self._event = orjson.loads(self.record)
        return self._event

    def __repr__(self) -> str:
        return f"CommittedEntry({self.room_key!r}, {self.seq}, {self.kind!r})"


StartAt = Literal["beginning", "end"]


class CommitObserver(Protocol):
    name: str  # also the key of its durable cursors: keep it stable
    start_at: StartAt  # a room it has no cursor for: from its first entry, or from now
    timeout: float  # seconds one observe() call may take before it is retried

    def wants(self, room_key: str) -> bool: ...

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        """Handle entries of one room, in seq order. Raise to have them delivered again."""

    def trimmed(self, room_key: str, first_seq: int) -> None:
        """Retention removed the room's entries below ``first_seq``."""

    # Optional: ``positions() -> dict[str, int]``, room key -> last seq the observer has
    # applied by its own durable record; at start the runner resumes each room from the
    # lower of that and its cursor (core/observers.py).

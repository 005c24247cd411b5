"""Typed events the client hands its caller. Each keeps the server's JSON in ``raw``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    room: str | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Entry(Event):
    """A sequenced entry of a room log (``message.edited``, ``task.created``, ``tool.call``
    ...): delivered once, in ``seq`` order, also across reconnects."""

    seq: int
    id: str


@dataclass(frozen=True, slots=True)
class Message(Entry):
    sender: str
    sender_kind: str
    body: str
    ts: int
    reply_to: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ReplyStarted(Entry):
    """An agent began a streamed reply (its ``id`` is the reply's ``message_id``)."""

    sender: str


@dataclass(frozen=True, slots=True)
class ReplyDelta(Event):
    """More text of a streamed reply: ``text`` is new, ``so_far`` the whole text until now."""

    message_id: str
    text: str
    so_far: str


@dataclass(frozen=True, slots=True)
class ReplyEnded(Entry):
    """A streamed reply ended: ``state`` completed | cancelled | failed | interrupted."""

    message_id: str
    sender: str
    text: str
    state: str
    finish_reason: str
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Presence(Event):
    user_id: str
    kind: str
    action: str  # join | leave


@dataclass(frozen=True, slots=True)
class Typing(Event):
    user_id: str
    kind: str
    active: bool


@dataclass(frozen=True, slots=True)
class Connection(Event):
    """The connection's state changed: ``connected`` (after auth and rejoining the rooms),
    ``reconnecting`` (``code`` the close code, ``delay`` seconds until the next try) or
    ``closed`` (for good: ``code``, ``reason``)."""

    state: str
    code: int | None = None
    reason: str = ""
    delay: float = 0.0


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def entry_of(raw: dict[str, Any]) -> Entry:
    """The typed form of a logged entry (``seq`` present)."""
    kind, room, seq, eid = raw["type"], raw.get("room"), int(raw["seq"]), _str(raw, "id")
    if kind == "message":
        return Message(
            kind,
            room,
            raw,
            seq,
            eid,
            _str(raw, "sender"),
            _str(raw, "sender_kind"),
            _str(raw, "body"),
            int(raw.get("ts") or 0),
            raw.get("reply_to"),
            raw.get("meta"),
        )
    if kind == "message.started":
        return ReplyStarted(kind, room, raw, seq, eid, _str(raw, "sender"))
    if kind in ("message.completed", "message.failed"):
        reason = _str(raw, "finish_reason")
        state = "completed" if kind == "message.completed" else "failed"
        if reason in ("cancelled", "interrupted"):
            state = reason
        return ReplyEnded(
            kind,
            room,
            raw,
            seq,
            eid,
            _str(raw, "message_id"),
            _str(raw, "sender"),
            _str(raw, "text"),
            state,
            reason,
            raw.get("error"),
        )
    return Entry(kind, room, raw, seq, eid)

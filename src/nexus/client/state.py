"""The client's memory of a session, without I/O: where each joined room is (its last
seq), what was sent and not yet acknowledged, the replies streaming in. The connection
(client.py) feeds it the server's events and asks it what to do after a reconnect.

Guarantees it keeps for the caller, whatever the network does:
- each logged entry of a joined room is handed over once, in seq order (a replay after
  a reconnect starts after the last seq handed over; an entry at or below it is dropped);
- a send is acknowledged once: after a reconnect every unacknowledged send is sent again
  with the same ``client_msg_id``, and the server answers a committed one ``duplicate``;
- a streamed reply is assembled by offset (a delta is appended only at the current
  length; a ``message.snapshot`` after a rejoin replaces the text so far).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import (
    Entry,
    Event,
    Presence,
    ReplyDelta,
    ReplyEnded,
    ReplyStarted,
    Typing,
    entry_of,
)


@dataclass
class RoomPosition:
    last_seq: int | None = None  # None: joined without history, live from the join on
    joined: bool = True


@dataclass
class PendingSend:
    request: dict[str, Any]  # the message.send/edit/delete as sent (with client_msg_id)
    sent_on: int = 0  # the connection number it was last sent on


@dataclass
class Stream:
    room: str
    sender: str
    text: str = ""


@dataclass
class SessionState:
    rooms: dict[str, RoomPosition] = field(default_factory=dict)
    outbox: dict[str, PendingSend] = field(default_factory=dict)  # by client_msg_id
    streams: dict[str, Stream] = field(default_factory=dict)  # by reply message_id

    # -- rooms -------------------------------------------------------------------
    def joining(self, room: str, since: int | None) -> None:
        position = self.rooms.get(room)
        if position is None:
            self.rooms[room] = RoomPosition(since)
        else:
            position.joined = True
            if since is not None and (position.last_seq is None or since < position.last_seq):
                position.last_seq = since

    def joined(self, room: str, head_seq: int) -> None:
        """``room.joined``: without a position yet, live delivery starts after ``head_seq``."""
        position = self.rooms.setdefault(room, RoomPosition())
        if position.last_seq is None:
            position.last_seq = head_seq

    def left(self, room: str) -> None:
        self.rooms.pop(room, None)

    def rejoin(self) -> list[dict[str, Any]]:
        """The ``room.join`` requests that resume every joined room after a reconnect."""
        out = []
        for room, position in self.rooms.items():
            request: dict[str, Any] = {"type": "room.join", "room": room}
            if position.last_seq is not None:
                request["since"] = position.last_seq
            out.append(request)
        return out

    # -- sends -------------------------------------------------------------------
    def sending(self, client_msg_id: str, request: dict[str, Any], connection: int) -> None:
        self.outbox[client_msg_id] = PendingSend(request, connection)

    def acknowledged(self, client_msg_id: str | None) -> None:
        if client_msg_id is not None:
            self.outbox.pop(client_msg_id, None)

    def resend(self, connection: int) -> list[dict[str, Any]]:
        """Unacknowledged sends not yet sent on ``connection``, oldest first."""
        out = []
        for pending in self.outbox.values():
            if pending.sent_on != connection:
                pending.sent_on = connection
                out.append(pending.request)
        return out

    # -- events ------------------------------------------------------------------
    def receive(self, raw: dict[str, Any]) -> list[Event]:
        """The events a server message becomes for the caller (none for a duplicate)."""
        kind = raw.get("type")
        room = raw.get("room")
        if isinstance(raw.get("seq"), int) and isinstance(room, str):
            return self._entry(room, raw)
        if kind == "message.delta":
            return self._delta(raw, snapshot=False)
        if kind == "message.snapshot":
            return self._delta(raw, snapshot=True)
        if kind == "presence":
            return [
                Presence(
                    "presence",
                    room,
                    raw,
                    str(raw.get("user_id")),
                    str(raw.get("kind")),
                    str(raw.get("action")),
                )
            ]
        if kind == "typing":
            return [
                Typing(
                    "typing",
                    room,
                    raw,
                    str(raw.get("user_id")),
                    str(raw.get("kind")),
                    bool(raw.get("active", True)),
                )
            ]
        return [Event(str(kind), room if isinstance(room, str) else None, raw)]

    def _entry(self, room: str, raw: dict[str, Any]) -> list[Event]:
        position = self.rooms.get(room)
        seq = int(raw["seq"])
        if position is not None:
            if position.last_seq is not None and seq <= position.last_seq:
                return []  # seen before a reconnect: once only
            position.last_seq = seq
        entry: Entry = entry_of(raw)
        if isinstance(entry, ReplyStarted):
            stream = self.streams.get(entry.id)
            if stream is None:
                self.streams[entry.id] = Stream(room, entry.sender, str(raw.get("text") or ""))
        elif isinstance(entry, ReplyEnded):
            self.streams.pop(entry.message_id, None)
        return [entry]

    def _delta(self, raw: dict[str, Any], *, snapshot: bool) -> list[Event]:
        message_id = str(raw.get("message_id"))
        room = str(raw.get("room"))
        given, at = raw.get("text"), raw.get("offset")
        text: str = given if isinstance(given, str) else ""
        offset: int = at if isinstance(at, int) else 0
        stream = self.streams.get(message_id)
        if stream is None:
            stream = self.streams[message_id] = Stream(room, str(raw.get("sender") or ""))
        have = len(stream.text)
        if snapshot:
            new = text[have:] if len(text) > have else ""
            stream.text = text if len(text) >= have else stream.text
        elif offset == have:
            new = text
            stream.text += text
        elif offset < have < offset + len(text):  # overlaps what we hold: the rest only
            new = text[have - offset :]
            stream.text += new
        else:
            return []  # already held (or a hole, which the server never leaves)
        if not new:
            return []
        return [ReplyDelta("message.delta", room, raw, message_id, new, stream.text)]

    def reply_text(self, message_id: str) -> str | None:
        stream = self.streams.get(message_id)
        return None if stream is None else stream.text

"""Replies being streamed right now, per room: what a member who arrives mid-stream needs.

An agent's reply is a logged ``message.started`` entry, then unlogged ``message.delta``
events (``{message_id, offset, text}``), then a logged ``message.completed`` or
``message.failed``. A client that joins (or resumes) while a reply streams gets, at the
moment it starts receiving the room live, one ``message.snapshot`` per reply in progress:
the text broadcast so far and its length. Deltas that follow carry offsets, so there is
neither a gap nor a duplicate. The runtime that streams updates this registry; the gateway
reads it when a session enters a room.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson


class LiveReply:
    __slots__ = ("room_key", "room", "message_id", "sender", "text")

    def __init__(self, room_key: str, room: str, message_id: str, sender: str) -> None:
        self.room_key = room_key
        self.room = room
        self.message_id = message_id
        self.sender = sender
        self.text = ""  # everything broadcast in deltas so far

    def snapshot(self) -> bytes:
        return orjson.dumps(
            {
                "type": "message.snapshot",
                "room": self.room,
                "message_id": self.message_id,
                "sender": self.sender,
                "offset": len(self.text),
                "text": self.text,
            }
        )

    def delta(self, text: str) -> bytes:
        """Append ``text`` and return the event that tells members."""
        event = orjson.dumps(
            {
                "type": "message.delta",
                "room": self.room,
                "message_id": self.message_id,
                "offset": len(self.text),
                "text": text,
            }
        )
        self.text += text
        return event


class LiveStreams:
    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, LiveReply]] = {}

    def start(self, room_key: str, room: str, message_id: str, sender: str) -> LiveReply:
        reply = LiveReply(room_key, room, message_id, sender)
        self._rooms.setdefault(room_key, {})[message_id] = reply
        return reply

    def end(self, reply: LiveReply) -> None:
        replies = self._rooms.get(reply.room_key)
        if replies is not None:
            replies.pop(reply.message_id, None)
            if not replies:
                del self._rooms[reply.room_key]

    def of_room(self, room_key: str) -> Iterator[LiveReply]:
        return iter(list(self._rooms.get(room_key, {}).values()))

    def find(self, room_key: str, message_id: str) -> LiveReply | None:
        return self._rooms.get(room_key, {}).get(message_id)

    def __len__(self) -> int:
        return sum(len(r) for r in self._rooms.values())

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

from collections.abc import Callable, Iterator

import orjson


class LiveReply:
    __slots__ = ("room_key", "room", "message_id", "sender", "text", "broken")

    def __init__(self, room_key: str, room: str, message_id: str, sender: str) -> None:
        self.room_key = room_key
        self.room = room
        self.message_id = message_id
        self.sender = sender
        self.text = ""  # everything broadcast in deltas so far
        self.broken = False  # a mirror of another node's reply that missed its start

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


# Cluster mode: a reply's text goes to the other nodes too (reply, new text, offset; an
# empty text with offset -1 says the reply ended).
Relay = Callable[[LiveReply, str, int], None]


class LiveStreams:
    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, LiveReply]] = {}
        self.relay: Relay | None = None

    def start(self, room_key: str, room: str, message_id: str, sender: str) -> LiveReply:
        reply = LiveReply(room_key, room, message_id, sender)
        self._rooms.setdefault(room_key, {})[message_id] = reply
        return reply

    def delta(self, reply: LiveReply, text: str) -> bytes:
        """The delta event of ``text`` (appended to the reply), relayed in cluster mode."""
        offset = len(reply.text)
        event = reply.delta(text)
        if self.relay is not None:
            self.relay(reply, text, offset)
        return event

    def end(self, reply: LiveReply) -> None:
        replies = self._rooms.get(reply.room_key)
        if replies is not None:
            replies.pop(reply.message_id, None)
            if not replies:
                del self._rooms[reply.room_key]
        if self.relay is not None:
            self.relay(reply, "", -1)

    def mirror(
        self, room_key: str, room: str, message_id: str, sender: str, text: str, offset: int
    ) -> bytes | None:
        """Cluster mode: another node's reply grew by ``text`` at ``offset``: the delta event
        for the members here, or None when it does not continue what this node holds (a
        mirror begun mid-reply: members here get the final entry)."""
        replies = self._rooms.setdefault(room_key, {})
        reply = replies.get(message_id)
        if reply is None:
            reply = replies[message_id] = LiveReply(room_key, room, message_id, sender)
            if offset:
                reply.broken = True
        if reply.broken or offset != len(reply.text):
            reply.broken = True
            return None
        return reply.delta(text)

    def unmirror(self, room_key: str, message_id: str) -> None:
        replies = self._rooms.get(room_key)
        if replies is not None:
            replies.pop(message_id, None)
            if not replies:
                del self._rooms[room_key]

    def of_room(self, room_key: str) -> Iterator[LiveReply]:
        return iter([r for r in self._rooms.get(room_key, {}).values() if not r.broken])

    def find(self, room_key: str, message_id: str) -> LiveReply | None:
        return self._rooms.get(room_key, {}).get(message_id)

    def __len__(self) -> int:
        return sum(len(r) for r in self._rooms.values())

"""Rooms of outboxes with per-iteration coalescing, the obvious way."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any


class FlushQueue:
    def __init__(self, loop: Any) -> None:
        self.loop, self.dirty, self.scheduled = loop, [], False

    def mark(self, box: Outbox) -> None:
        self.dirty.append(box)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        dirty, self.dirty, self.scheduled = self.dirty, [], False
        for box in dirty:
            box._flush()


class Outbox:
    def __init__(
        self,
        transport: Any,
        queue: FlushQueue,
        limit: int,
        on_overflow: Callable[[], object] | None,
    ) -> None:
        self.transport, self.queue, self.limit = transport, queue, limit
        self.on_overflow = on_overflow
        self.pending: list[bytes] = []
        self.buffered = 0  # transport buffer size at the last look
        self.marked = self.closed = self.overflowed = False
        self.writes = 0

    @property
    def pending_bytes(self) -> int:
        return sum(map(len, self.pending))

    def push(self, frame: bytes) -> bool:
        if self.closed:
            return False
        if self.pending_bytes + self.buffered + len(frame) > self.limit:
            if self.pending:
                self._write()
            else:
                self.buffered = self.transport.get_write_buffer_size()
            if self.buffered + len(frame) > self.limit:
                self._overflow()
                return False
        self.pending.append(frame)
        if not self.marked:
            self.marked = True
            self.queue.mark(self)
        return True

    def _overflow(self) -> None:
        self.overflowed = self.closed = True
        self.pending = []
        if not self.marked:
            self.marked = True
            self.queue.mark(self)

    def _write(self) -> None:
        if self.pending:
            self.transport.write(b"".join(self.pending))
            self.pending = []
            self.writes += 1
            self.buffered = self.transport.get_write_buffer_size()

    def _flush(self) -> None:
        self.marked = False
        if self.overflowed:
            callback, self.on_overflow = self.on_overflow, None
            if callback is not None:
                callback()
            return
        self._write()
        if self.buffered > self.limit:
            self._overflow()

    def flush(self) -> None:
        if self.marked and not self.overflowed:
            self._flush()

    def close(self) -> None:
        self.closed = True
        self.pending = []


class Router:
    def __init__(self) -> None:
        self.rooms: dict[Hashable, dict[Outbox, None]] = {}
        self.local: dict[Hashable, dict[Callable[[bytes], object], None]] = {}
        self.deliveries = 0
        self.local_errors = 0

    def join_local(self, room: Hashable, member: Callable[[bytes], object]) -> bool:
        members = self.local.setdefault(room, {})
        if member in members:
            return False
        members[member] = None
        return True

    def leave_local(self, room: Hashable, member: Callable[[bytes], object]) -> bool:
        members = self.local.get(room)
        if members is None or member not in members:
            return False
        del members[member]
        if not members:
            del self.local[room]
        return True

    def join(self, room: Hashable, box: Outbox) -> bool:
        members = self.rooms.setdefault(room, {})
        if box in members:
            return False
        members[box] = None
        return True

    def leave(self, room: Hashable, box: Outbox) -> bool:
        members = self.rooms.get(room)
        if members is None or box not in members:
            return False
        del members[box]
        if not members:
            del self.rooms[room]
        return True

    def broadcast(self, room: Hashable, frame: bytes, exclude: Outbox | None = None) -> int:
        sent = sum(
            1 for box in list(self.rooms.get(room, ())) if box is not exclude and box.push(frame)
        )
        self.deliveries += sent
        for member in list(self.local.get(room, ())):
            try:
                member(frame)
                sent += 1
            except Exception:
                self.local_errors += 1
        return sent

    def is_member(self, room: Hashable, box: Outbox) -> bool:
        return box in self.rooms.get(room, {})

    def count(self, room: Hashable) -> int:
        return len(self.rooms.get(room, {}))

    def members(self, room: Hashable) -> list[Outbox]:
        return list(self.rooms.get(room, {}))

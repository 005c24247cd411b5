from typing_extensions import disjoint_base
import asyncio
from collections.abc import Callable, Hashable
from typing import Any

@disjoint_base
class FlushQueue:
    flushes: int
    frames_out: int
    bytes_out: int
    writes: int
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None: ...
    def flush(self) -> None: ...
    @property
    def pending(self) -> int: ...

@disjoint_base
class Outbox:
    pending_bytes: int
    dropped_bytes: int
    transport_buffered: int
    limit: int
    closed: bool
    overflowed: bool
    frames_out: int
    bytes_out: int
    writes: int
    owner: Any
    def __init__(
        self,
        transport: asyncio.WriteTransport,
        queue: FlushQueue,
        limit: int,
        on_overflow: Callable[[], object] | None,
    ) -> None: ...
    def push(self, frame: bytes) -> bool: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...

@disjoint_base
class Router:
    deliveries: int
    def __init__(self) -> None: ...
    def join(self, room: Hashable, box: Outbox) -> bool: ...
    def leave(self, room: Hashable, box: Outbox) -> bool: ...
    def broadcast(self, room: Hashable, frame: bytes, exclude: Outbox | None = None) -> int: ...
    def is_member(self, room: Hashable, box: Outbox) -> bool: ...
    def count(self, room: Hashable) -> int: ...
    def members(self, room: Hashable) -> list[Outbox]: ...
    def rooms(self) -> list[Hashable]: ...

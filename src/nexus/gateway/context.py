"""What a connection needs from the gateway: one small object instead of the gateway."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from .._speedups.router import FlushQueue
from ..auth import TokenVerifier
from ..config import Settings
from ..protocol import Decoder
from .budget import TickBudgets
from .handlers import RequestHandlers
from .heartbeat import Beating
from .session import Session
from .stats import GatewayStats


class LiveConnection(Beating, Protocol):
    """What the gateway does with an open connection (connection.Connection is one); a
    protocol, so that this module and the connection module do not import each other."""

    session: Session

    def close(self, code: int, reason: str, *, flush: bool = True) -> None: ...


@dataclass(slots=True)
class GatewayContext:
    settings: Settings
    loop: asyncio.AbstractEventLoop
    handlers: RequestHandlers
    verifier: TokenVerifier
    decoder: Decoder
    flush_queue: FlushQueue
    budgets: TickBudgets
    stats: GatewayStats = field(default_factory=GatewayStats)
    connections: set[LiveConnection] = field(default_factory=set)
    # set while the gateway waits for its connections to go (shutdown)
    all_closed: asyncio.Future[None] | None = None
    frames_per_tick: int = 0  # copied from settings: read once per frame

    def __post_init__(self) -> None:
        self.frames_per_tick = self.settings.frames_per_tick

    def forget(self, conn: LiveConnection) -> None:
        """A connection ended: drop it, and wake a shutdown waiting for the last one."""
        self.connections.discard(conn)
        if not self.connections and self.all_closed is not None and not self.all_closed.done():
            self.all_closed.set_result(None)

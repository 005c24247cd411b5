"""What a connection needs from the gateway: one small object instead of the gateway."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._speedups.router import FlushQueue
from ..auth import TokenVerifier
from ..config import Settings
from ..protocol import Decoder
from .budget import TickBudgets
from .handlers import RequestHandlers
from .stats import GatewayStats

if TYPE_CHECKING:
    from .connection import Connection


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
    connections: set[Connection] = field(default_factory=set)
    # set while the gateway waits for its connections to go (shutdown)
    all_closed: asyncio.Future[None] | None = None
    frames_per_tick: int = 0  # copied from settings: read once per frame

    def __post_init__(self) -> None:
        self.frames_per_tick = self.settings.frames_per_tick

    def forget(self, conn: Connection) -> None:
        """A connection ended: drop it, and wake a shutdown waiting for the last one."""
        self.connections.discard(conn)
        if not self.connections and self.all_closed is not None and not self.all_closed.done():
            self.all_closed.set_result(None)

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

    @property
    def frames_per_tick(self) -> int:
        return self.settings.frames_per_tick

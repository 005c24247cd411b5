"""One timer for every connection's heartbeat, instead of a task per connection.

A connection that has sent nothing for ``interval`` seconds gets a WebSocket ping; one
that then stays silent for ``timeout`` more seconds is closed with 1001. The same sweep
closes sessions whose token has expired (4003). Any frame from
the peer (a pong included) counts as life. One sweep walks all connections, so an idle
connection costs a few attributes, not a task, a coroutine frame and a timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Protocol


class Beating(Protocol):
    last_rx: float  # loop time of the last frame received
    ping_sent: float  # loop time of the unanswered ping, 0.0 if none
    expires_at: float  # wall-clock expiry of the session's token, 0.0 if none

    def token_expired(self) -> None: ...

    def ping(self) -> None: ...

    def heartbeat_lost(self) -> None: ...


class Heartbeat:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connections: Callable[[], Iterable[Beating]],
        *,
        interval: float,
        timeout: float,
    ) -> None:
        self._loop = loop
        self._connections = connections
        self._interval = interval
        self._timeout = timeout
        # Sweep often enough that a ping or close is at most a quarter period late.
        self._period = min(interval, timeout) / 4
        self._handle: asyncio.TimerHandle | None = None
        self.pings = 0
        self.lost = 0
        self.expired = 0

    def start(self) -> None:
        self._handle = self._loop.call_later(self._period, self._sweep)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        now = self._loop.time()
        idle_before = now - self._interval
        dead_before = now - self._timeout
        wall = time.time()
        for conn in list(self._connections()):
            if conn.expires_at and conn.expires_at <= wall:
                self.expired += 1
                conn.token_expired()
            elif conn.ping_sent:
                if conn.ping_sent < dead_before:
                    self.lost += 1
                    conn.heartbeat_lost()
            elif conn.last_rx < idle_before:
                conn.ping_sent = now
                self.pings += 1
                conn.ping()
        self._handle = self._loop.call_later(self._period, self._sweep)

"""Event-loop lag: how late a timer fires tells how long the loop was busy elsewhere."""

from __future__ import annotations

import asyncio

SAMPLE_S = 0.25


class LoopLag:
    """Samples the loop every ``period`` seconds; ``take_max()`` gives the worst lag seen
    since the previous call (the metrics scrape), ``last`` the latest sample."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = SAMPLE_S) -> None:
        self._loop = loop
        self._period = period
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.last = 0.0
        self._max = 0.0

    def start(self) -> None:
        self._due = self._loop.time() + self._period
        self._handle = self._loop.call_at(self._due, self._sample)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sample(self) -> None:
        now = self._loop.time()
        self.last = max(0.0, now - self._due)
        self._max = max(self._max, self.last)
        self._due = now + self._period
        self._handle = self._loop.call_at(self._due, self._sample)

    def take_max(self) -> float:
        worst, self._max = max(self._max, self.last), 0.0
        return worst

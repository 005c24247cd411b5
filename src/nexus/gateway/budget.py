"""Per-iteration work budgets: one client cannot take the event loop from the others.

picows hands a connection every frame of a read at once, and libuv may read a busy socket
several times per loop iteration. Each connection charges what it processes to a budget
that is reset once per iteration; past it, the connection pauses reading and keeps the
rest for the next iteration (see ``Connection.on_ws_frame``). One shared callback resets
every connection that spent anything, so an idle connection costs nothing and a busy one
a list append per iteration, not a timer.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Metered(Protocol):
    def tick(self) -> None:
        """A new loop iteration: reset the budget, resume held-back work."""


class TickBudgets:
    __slots__ = ("_marked", "_scheduled", "_call_soon", "ticks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._marked: list[Metered] = []
        self._scheduled = False
        self._call_soon = loop.call_soon
        self.ticks = 0

    def mark(self, conn: Metered) -> None:
        """``conn`` started spending this iteration: reset it at the next one."""
        self._marked.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self._reset)

    def _reset(self) -> None:
        marked, self._marked = self._marked, []
        self._scheduled = False
        self.ticks += 1
        for conn in marked:
            conn.tick()

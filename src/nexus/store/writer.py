"""Group commit: work from the event loop is written on one dedicated thread.

The loop hands over a batch (or a maintenance job such as retention) and gets a
callback on the loop once it is durable or failed. The loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None, float, Any], None]  # (error, seconds, result)


class GroupCommitWriter:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Done] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="nexus-commit", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], Any], done: Done) -> None:
        """Run ``work()`` on the writer thread, then ``done`` on the loop."""
        self._queue.put((work, done))

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued work, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            work, done = item
            started = time.perf_counter()
            error: BaseException | None = None
            result: Any = None
            try:
                result = work()
            except BaseException as exc:  # reported to the loop, never swallowed
                error = exc
            elapsed = time.perf_counter() - started
            try:
                self._loop.call_soon_threadsafe(done, error, elapsed, result)
            except RuntimeError:  # loop closed during shutdown
                return

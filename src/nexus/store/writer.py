"""Group commit: batches from the event loop are written on one dedicated thread.

The loop hands over a batch and gets a callback on the loop once the batch is
durable (or failed). The loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable

from .lmdb_store import LmdbStore, WriteBatch

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None, float], None]  # (error, commit seconds)


class GroupCommitWriter:
    def __init__(self, store: LmdbStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self._queue: queue.SimpleQueue[tuple[WriteBatch, Done] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="nexus-commit", daemon=True)
        self._thread.start()

    def submit(self, batch: WriteBatch, done: Done) -> None:
        self._queue.put((batch, done))

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued batches, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, done = item
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                self._store.apply(batch)
            except BaseException as exc:  # reported to the loop, never swallowed
                error = exc
                log.error("commit of %d records failed: %s", len(batch), exc)
            elapsed = time.perf_counter() - started
            try:
                self._loop.call_soon_threadsafe(done, error, elapsed)
            except RuntimeError:  # loop closed during shutdown
                return

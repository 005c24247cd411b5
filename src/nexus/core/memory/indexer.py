"""The search indexer: a commit observer that applies every committed entry to the search
file (messages, edits, deletes, finished agent replies, memory events).

It runs after fan-out in its own task (docs/extending.md), so an ack never waits for it;
each batch becomes one SQLite transaction on a worker thread, so the event loop does not
wait for it either. A small batch waits ``COALESCE_S`` first, so that under a steady
trickle (one small commit after another) the entries behind it join the next transaction:
a transaction per log commit cost more than the indexing itself. Its cursor is the
observer cursor in LMDB; the search file also keeps its own last seq per room, so a batch
delivered twice (after a crash, before the cursor was durable) is skipped entry by entry,
and a search file that lost its last transactions to a power cut (it commits without
fsync) is caught up from there (``positions``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ..hooks import CommittedEntry, StartAt
from .store import SearchStore

log = logging.getLogger(__name__)

OBSERVER_NAME = "search"
BATCH_MAX = 2048  # entries per transaction at most
COALESCE_S = 0.05  # a batch smaller than a quarter of that waits this long first


class SearchIndexer:
    name = OBSERVER_NAME
    start_at: StartAt = "beginning"  # a new index catches up on the whole log
    timeout = 60.0
    batch_max = BATCH_MAX

    def __init__(self, store: SearchStore) -> None:
        self.store = store
        self.applied = 0  # entries applied (metrics, tests)
        self._trims: set[asyncio.Task[None]] = set()

    def wants(self, room_key: str) -> bool:
        return True

    def positions(self) -> dict[str, int]:
        """The search file's own last seq per room: it commits without fsync, so after a
        power cut it may be behind the (fsynced) cursor, and the runner starts there."""
        return self.store.indexed()

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        if len(entries) < BATCH_MAX // 4:
            await asyncio.sleep(COALESCE_S)  # the next batch collects what comes meanwhile
        rows = [(e.room_key, e.seq, e.record) for e in entries]
        self.applied += await asyncio.to_thread(self.store.apply, rows)

    def trimmed(self, room_key: str, first_seq: int) -> None:
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self.store.trim, room_key, first_seq)
        )
        self._trims.add(task)
        task.add_done_callback(self._trims.discard)

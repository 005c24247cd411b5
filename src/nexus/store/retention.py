"""Periodic housekeeping on the writer thread: room retention and the idempotency window."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .lmdb_store import LmdbStore
from .writer import GroupCommitWriter

log = logging.getLogger(__name__)

Policy = Callable[[str], tuple[int, float]]  # room key -> (max count, max age seconds)
OnTrim = Callable[[str, int], None]  # (room key, first seq still stored)


class RetentionSweeper:
    """Every ``interval`` seconds, trims rooms past their policy and forgets old client ids.

    The work runs on the writer thread between commit batches; the loop only schedules it.
    """

    def __init__(
        self,
        store: LmdbStore,
        writer: GroupCommitWriter,
        policy: Policy,
        *,
        interval: float,
        idempotency_window: float,
        on_trim: OnTrim | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._writer = writer
        self._policy = policy
        self._interval = interval
        self._window = idempotency_window
        self._clock = clock
        self._on_trim = on_trim  # observers are told what retention removed
        self._task: asyncio.Task[None] | None = None
        self.trimmed = 0
        self.forgotten = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.sweep()

    async def sweep(self) -> tuple[int, int]:
        """One pass; returns (log entries trimmed, client ids forgotten)."""
        now = self._clock()
        policies = {}
        for rkey in self._store.room_keys():
            max_count, max_age = self._policy(rkey)
            if max_count or max_age:
                policies[rkey] = (max_count, int((now - max_age) * 1000) if max_age else 0)
        window_ms = int((now - self._window) * 1000)

        def work() -> tuple[dict[str, tuple[int, int]], int]:
            trims = {}  # room key -> (entries removed, first seq still stored)
            for rkey, (count, age_ms) in policies.items():
                removed = self._store.trim_room(rkey, count, age_ms)
                if removed:
                    trims[rkey] = (removed, self._store.first_seq(rkey))
            return trims, self._store.prune_client_ids(window_ms)

        done: asyncio.Future[tuple[dict[str, tuple[int, int]], int]] = (
            asyncio.get_running_loop().create_future()
        )

        def finished(error: BaseException | None, _: float, result: Any) -> None:
            if error is not None:
                log.error("retention sweep failed: %s", error)
                done.set_result(({}, 0))
            else:
                done.set_result(result)

        self._writer.submit(work, finished)
        trims, forgotten = await done
        trimmed = sum(removed for removed, _ in trims.values())
        if self._on_trim is not None:
            for rkey, (_, first) in trims.items():
                self._on_trim(rkey, first)
        self.trimmed += trimmed
        self.forgotten += forgotten
        return trimmed, forgotten

"""GroupCommitWriter: jobs run in order on its one thread, and each ``done`` runs on the
loop. Every wait below is for an event the writer produces (a callback, a thread ending),
bounded by a timeout."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from nexus.store.writer import GroupCommitWriter

Report = tuple[BaseException | None, float, Any]


class Reports:
    """What ``done`` was called with, on which thread and loop; ``wait(n)`` returns once n
    reports arrived."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.items: list[Report] = []
        self.on_loop: list[bool] = []
        self._arrived = asyncio.Event()

    def done(self, error: BaseException | None, seconds: float, result: Any) -> None:
        self.on_loop.append(
            threading.get_ident() == threading.main_thread().ident
            and asyncio.get_running_loop() is self.loop
        )
        self.items.append((error, seconds, result))
        self._arrived.set()

    async def wait(self, n: int) -> list[Report]:
        async with asyncio.timeout(10):
            while len(self.items) < n:
                self._arrived.clear()
                await self._arrived.wait()
        return self.items


@pytest.fixture
async def writer() -> AsyncIterator[GroupCommitWriter]:
    w = GroupCommitWriter(asyncio.get_running_loop())
    yield w
    w.close()


def job(log: list[tuple[int, str]], i: int) -> Callable[[], int]:
    def work() -> int:
        log.append((i, threading.current_thread().name))
        return i * i

    return work


async def test_jobs_run_in_order_on_one_thread(writer: GroupCommitWriter) -> None:
    reports = Reports()
    ran: list[tuple[int, str]] = []
    for i in range(200):
        writer.submit(job(ran, i), reports.done)
    items = await reports.wait(200)
    assert [i for i, _ in ran] == list(range(200))
    assert {name for _, name in ran} == {"nexus-commit"}
    assert [result for _, _, result in items] == [i * i for i in range(200)]
    assert all(error is None and seconds >= 0 for error, seconds, _ in items)
    assert all(reports.on_loop)  # every done ran on the loop's thread, inside the loop


async def test_an_exception_in_a_job_is_reported_not_raised(writer: GroupCommitWriter) -> None:
    reports = Reports()
    failure = ValueError("disk on fire")

    def fails() -> None:
        raise failure

    writer.submit(lambda: "before", reports.done)
    writer.submit(fails, reports.done)
    writer.submit(lambda: "after", reports.done)  # the thread survived
    before, failed, after = await reports.wait(3)
    assert before[0] is None and before[2] == "before"
    assert failed[0] is failure and failed[2] is None and failed[1] >= 0
    assert after[0] is None and after[2] == "after"


async def test_seconds_cover_the_job(writer: GroupCommitWriter) -> None:
    reports = Reports()
    release, started = threading.Event(), threading.Event()
    inside: list[float] = []

    def slow() -> None:
        inside.append(time.perf_counter())
        started.set()
        assert release.wait(10)  # held until the test has seen it start
        inside.append(time.perf_counter())

    writer.submit(slow, reports.done)
    assert await asyncio.to_thread(started.wait, 10)
    release.set()
    [(error, seconds, _)] = await reports.wait(1)
    assert error is None and seconds >= inside[1] - inside[0] > 0


async def test_close_finishes_queued_work() -> None:
    reports = Reports()
    writer = GroupCommitWriter(asyncio.get_running_loop())
    started, release = threading.Event(), threading.Event()
    ran: list[tuple[int, str]] = []

    def blocker() -> None:
        started.set()
        assert release.wait(10)

    writer.submit(blocker, reports.done)
    assert await asyncio.to_thread(started.wait, 10)
    for i in range(5):  # queued behind the blocker
        writer.submit(job(ran, i), reports.done)
    release.set()
    writer.close()
    assert [i for i, _ in ran] == [0, 1, 2, 3, 4]  # done before close returned
    assert not _thread_of(writer).is_alive()
    assert len(await reports.wait(6)) == 6  # and their reports still reach the loop


def _thread_of(writer: GroupCommitWriter) -> threading.Thread:
    thread = writer._thread  # the one way to see that close() joined it
    assert isinstance(thread, threading.Thread)
    return thread

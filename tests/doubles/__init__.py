"""Test doubles for the core: a writer that commits on the loop, a caller that records what
it is sent, a store whose commits can be made to fail, and a settable clock.

Shared by the unit tests that drive the real pipeline over a real LMDB file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import orjson

from nexus._speedups.router import Router
from nexus.auth import Principal
from nexus.core.pipeline import MESSAGE, MessagePipeline, PendingEntry
from nexus.core.rooms import Room
from nexus.store import LmdbStore, WriteBatch
from nexus.store.writer import Done

NOW = 1_700_000.0  # the pipeline's wall clock in these tests: records carry ts 1700000000


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InlineWriter:
    """Runs each job on the loop at the next iteration: the group-commit contract without
    a thread, so a test can count commits exactly."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.jobs = 0

    def submit(self, work: Callable[[], Any], done: Done) -> None:
        self.jobs += 1

        def run() -> None:
            try:
                result = work()
            except Exception as exc:  # handed to the pipeline like the real writer does
                done(exc, 0.0, None)
            else:
                done(None, 0.0, result)

        self._loop.call_soon(run)


class HeldWriter:
    """Keeps each job until the test runs it, in two steps like the real writer: the work
    (the commit, on the writer thread) and then ``done`` (the callback on the loop)."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[[], Any], Done]] = []
        self._submitted = asyncio.Event()

    def submit(self, work: Callable[[], Any], done: Done) -> None:
        self.queued.append((work, done))
        self._submitted.set()

    async def next_job(self) -> tuple[Callable[[], Any], Done]:
        """The oldest queued job, once there is one (taken off the queue)."""
        await self._submitted.wait()
        job = self.queued.pop(0)
        if not self.queued:
            self._submitted.clear()
        return job


class Inbox:
    """A caller: a principal and the events the pipeline sends back."""

    def __init__(
        self, user: str, tenant: str = "acme", roles: tuple[str, ...] = ("member",)
    ) -> None:
        self._principal = Principal(user, tenant, frozenset(roles), expires_at=1e12)
        self.events: list[dict[str, Any]] = []

    @property
    def principal(self) -> Principal:
        return self._principal

    def send(self, payload: bytes) -> None:
        self.events.append(orjson.loads(payload))

    @property
    def last(self) -> dict[str, Any]:
        assert self.events, f"{self._principal.user_id} was sent nothing"
        return self.events[-1]


class FailingStore:
    """An LmdbStore whose commits fail while ``fail`` is set, or for the batches ``fail``
    picks when it is a predicate (nothing of the batch is written, as when LMDB refuses a
    transaction); everything else is the real store."""

    def __init__(self, store: LmdbStore) -> None:
        self._store = store
        self.fail: bool | Callable[[WriteBatch], bool] = False
        self.refused = 0

    def apply(self, batch: WriteBatch) -> None:
        if self.fail is True or (callable(self.fail) and self.fail(batch)):
            self.refused += 1
            raise OSError("injected commit failure")
        self._store.apply(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def make_pipeline(
    store: LmdbStore | FailingStore,
    writer: Any = None,
    *,
    max_batch: int = 64,
    clock: Callable[[], float] = lambda: NOW,
) -> tuple[MessagePipeline, Any]:
    """A pipeline over ``store`` on the running loop; its writer is an InlineWriter unless
    one is given."""
    loop = asyncio.get_running_loop()
    if writer is None:
        writer = InlineWriter(loop)
    # The doubles stand in for LmdbStore and GroupCommitWriter by their duck types.
    pipeline = MessagePipeline(
        cast(LmdbStore, store), writer, Router(), loop, max_batch=max_batch, clock=clock
    )
    return pipeline, writer


def new_room(name: str = "general", tenant: str = "acme", **meta: Any) -> Room:
    """An unpersisted room created by user ``t`` (the pipeline persists it with its first
    entry)."""
    meta = {"tenant": tenant, "name": name, "created_by": "t", "created_at": 0, **meta}
    return Room(tenant, name, meta, 0, persisted=False)


def post(
    pipeline: MessagePipeline,
    caller: Inbox,
    room: Room,
    body: str,
    client_msg_id: str | None = None,
) -> None:
    """A message whose request id is its body (so acks say which one they answer)."""
    pipeline.submit(
        PendingEntry(caller, caller.principal, body, room, MESSAGE, client_msg_id, body=body)
    )

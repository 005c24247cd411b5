"""The two seams without sockets: interceptors through a real pipeline (verdicts, faults,
policies, quarantine, async ones with the client_msg_id reserved), observers through a
runner on a real LMDB file (order, batches, cursors, catch-up from the log, isolation)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import pytest

from doubles import Inbox, make_pipeline, new_room, post
from nexus.core.hooks import (
    ALLOW,
    Annotate,
    CommittedEntry,
    Deny,
    PendingWrite,
    Replace,
    Verdict,
)
from nexus.core.interceptors import InterceptorChain
from nexus.core.observers import ObserverRunner, cursor_key, cursor_value
from nexus.core.pipeline import MessagePipeline
from nexus.core.rooms import Room
from nexus.errors import Unavailable
from nexus.store import LmdbStore


class Scripted:
    """An interceptor answering with ``answer(write)`` (a verdict, an awaitable, or raising)."""

    def __init__(
        self,
        name: str,
        answer: Callable[[PendingWrite], Any],
        *,
        policy: str = "open",
        deadline: float = 1.0,
        kinds: frozenset[str] | None = None,
        rooms: str = "",
    ) -> None:
        self.name = name
        self.kinds = kinds
        self.deadline = deadline
        self.failure_policy = policy
        self._answer = answer
        self._rooms = rooms
        self.calls = 0

    def wants(self, room: Room) -> bool:
        return room.name.startswith(self._rooms)

    def intercept(self, write: PendingWrite) -> Verdict | Awaitable[Verdict]:
        self.calls += 1
        result: Verdict | Awaitable[Verdict] = self._answer(write)
        return result


def with_interceptors(store: LmdbStore, *interceptors: Scripted) -> MessagePipeline:
    pipeline, _ = make_pipeline(store)
    chain = InterceptorChain(max_body_bytes=100, max_meta_bytes=100)
    for interceptor in interceptors:
        chain.add(interceptor)  # type: ignore[arg-type]
    pipeline.interceptors = chain
    return pipeline


def stored(store: LmdbStore, room: Room) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in store.read_range(room.key, 0, 1 << 40, 1000)]


# -- interceptors ---------------------------------------------------------------------------


async def test_verdicts_apply_in_order(store: LmdbStore) -> None:
    first = Scripted("first", lambda w: Replace(body=(w.body or "").upper()))
    second = Scripted("second", lambda w: Annotate({"len": len(w.body or "")}))
    pipeline = with_interceptors(store, first, second)
    room, ann = new_room(), Inbox("ann")
    post(pipeline, ann, room, "hello")
    await pipeline.wait_idle()
    [record] = stored(store, room)
    assert record["body"] == "HELLO" and record["meta"] == {"len": 5}


async def test_deny_refuses_only_that_write_and_releases_its_id(store: LmdbStore) -> None:
    pipeline = with_interceptors(
        store, Scripted("no-spam", lambda w: Deny("spam") if "spam" in (w.body or "") else ALLOW)
    )
    room, ann = new_room(), Inbox("ann")
    with pytest.raises(Exception) as denied:
        post(pipeline, ann, room, "spam", "c1")
    assert getattr(denied.value, "code", None) == "forbidden"
    post(pipeline, ann, room, "fine", "c1")  # the id was released by the denial
    await pipeline.wait_idle()
    assert [r["body"] for r in stored(store, room)] == ["fine"]
    assert ann.last["type"] == "ack" and not ann.last["duplicate"]


@pytest.mark.parametrize(
    "answer",
    [
        lambda w: 1 / 0,  # raises
        lambda w: "yes",  # not a verdict
        lambda w: Replace(body="x" * 1000),  # over max_body_bytes
        lambda w: Replace(meta={"k": "v" * 500}),  # over max_meta_bytes
        lambda w: Annotate("not a dict"),  # type: ignore[arg-type]
    ],
    ids=["raises", "nonsense", "huge-body", "huge-meta", "bad-annotate"],
)
async def test_a_fault_follows_the_policy(store: LmdbStore, answer: Any) -> None:
    open_ = with_interceptors(store, Scripted("open", answer, policy="open"))
    room, ann = new_room("open-room"), Inbox("ann")
    post(open_, ann, room, "as sent")
    await open_.wait_idle()
    assert stored(store, room)[0]["body"] == "as sent"
    closed = with_interceptors(store, Scripted("closed", answer, policy="closed"))
    with pytest.raises(Exception) as refused:
        post(closed, ann, new_room("closed-room"), "as sent")
    assert getattr(refused.value, "code", None) == "unavailable"
    assert closed.interceptors.slots[0].faults == 1


async def test_over_the_deadline_is_a_fault(store: LmdbStore) -> None:
    import time

    def slow(write: PendingWrite) -> Verdict:
        time.sleep(0.02)
        return Replace(body="changed")

    pipeline = with_interceptors(store, Scripted("slow", slow, deadline=0.001))
    room, ann = new_room(), Inbox("ann")
    post(pipeline, ann, room, "original")
    await pipeline.wait_idle()
    assert stored(store, room)[0]["body"] == "original"  # a late verdict is not applied
    assert pipeline.interceptors.slots[0].faults == 1


async def test_quarantine_after_five_faults_in_a_row_and_release(store: LmdbStore) -> None:
    flaky = Scripted("flaky", lambda w: 1 / 0, policy="closed")
    quarantined: list[str] = []
    pipeline, _ = make_pipeline(store)
    pipeline.interceptors = InterceptorChain(
        max_body_bytes=100, max_meta_bytes=100, on_quarantine=quarantined.append
    )
    pipeline.interceptors.add(flaky)  # type: ignore[arg-type]
    ann, room = Inbox("ann"), new_room()
    for i in range(7):
        with pytest.raises(Unavailable):  # fail-closed, also while quarantined
            post(pipeline, ann, room, f"m{i}")
    assert flaky.calls == 5 and quarantined == ["flaky"]  # not called once quarantined
    assert pipeline.interceptors.slots[0].quarantined
    pipeline.interceptors.release("flaky")
    flaky._answer = lambda w: ALLOW
    post(pipeline, ann, room, "after release")
    await pipeline.wait_idle()
    assert ann.last["type"] == "ack" and flaky.calls == 6


async def test_interceptors_see_only_what_they_subscribed_to(store: LmdbStore) -> None:
    edits = Scripted("edits", lambda w: ALLOW, kinds=frozenset({"message.edited"}))
    guarded = Scripted("guarded", lambda w: ALLOW, rooms="guarded")
    pipeline = with_interceptors(store, edits, guarded)
    ann = Inbox("ann")
    post(pipeline, ann, new_room("open"), "a")
    post(pipeline, ann, new_room("guarded-1"), "b")
    await pipeline.wait_idle()
    assert (edits.calls, guarded.calls) == (0, 1)


async def test_async_verdicts_keep_room_order_and_answer_resends(store: LmdbStore) -> None:
    gate = asyncio.Event()

    async def remote(write: PendingWrite) -> Verdict:
        await gate.wait()
        return Deny("no") if write.body == "bad" else Annotate({"ok": True})

    pipeline = with_interceptors(store, Scripted("remote", remote, rooms="remote"))
    room, ann, again = new_room("remote"), Inbox("ann"), Inbox("ann")
    post(pipeline, ann, room, "one", "c1")
    post(pipeline, ann, room, "bad", "c2")
    post(pipeline, ann, room, "two", "c3")
    other = Inbox("bob")
    post(pipeline, other, new_room("elsewhere"), "not held back")
    assert pipeline.answered_duplicate(again, "resend", "c1")  # reserved while it waits
    for _ in range(3):
        await asyncio.sleep(0)
    assert other.last["type"] == "ack" and not ann.events  # only the room waits
    gate.set()
    await pipeline.wait_idle()
    assert [(e["type"], e["id"]) for e in ann.events] == [
        ("ack", "one"),
        ("error", "bad"),
        ("ack", "two"),
    ]
    assert [r["body"] for r in stored(store, room)] == ["one", "two"]
    assert again.last["duplicate"] and again.last["seq"] == 1
    assert ann.events[1]["code"] == "forbidden"


# -- observers --------------------------------------------------------------------------------


class Collector:
    name = "collector"
    start_at = "beginning"
    timeout = 1.0

    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[tuple[str, int, str]]] = []
        self.fail = fail  # calls to fail before succeeding
        self.trims: list[tuple[str, int]] = []
        self.got = asyncio.Event()

    def wants(self, room_key: str) -> bool:
        return not room_key.endswith("ignored")

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("down")
        self.batches.append([(e.room_key.split("\x1f")[1], e.seq, e.kind) for e in entries])
        self.got.set()

    def trimmed(self, room_key: str, first_seq: int) -> None:
        self.trims.append((room_key, first_seq))

    def seen(self) -> list[tuple[str, int, str]]:
        return [e for batch in self.batches for e in batch]


def runner_for(
    pipeline: MessagePipeline,
    store: LmdbStore,
    observer: Collector,
    heads: dict[str, int],
    **kw: Any,
) -> ObserverRunner:
    runner = ObserverRunner(
        observer,
        store,
        lambda rkey: heads.get(rkey, 0),  # type: ignore[arg-type]
        pipeline.submit_meta,
        **kw,
    )
    pipeline.observers.add(runner)
    return runner


async def until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition not reached")


async def test_observer_gets_committed_entries_in_order_and_moves_its_cursor(
    store: LmdbStore,
) -> None:
    pipeline, _ = make_pipeline(store)
    observer = Collector()
    runner = runner_for(pipeline, store, observer, {})
    runner.start()
    ann, room, ignored = Inbox("ann"), new_room("general"), new_room("ignored")
    for i in range(5):
        post(pipeline, ann, room, f"m{i}")
        post(pipeline, ann, ignored, f"x{i}")
    await pipeline.wait_idle()
    await until(lambda: len(observer.seen()) == 5)
    assert observer.seen() == [("general", i, "message") for i in range(1, 6)]
    await until(lambda: store.cursors("collector").get(room.key) == 5)
    assert runner.lag == 0 and runner.delivered == 5
    await runner.stop()


async def test_a_failing_observer_is_retried_and_loses_nothing(store: LmdbStore) -> None:
    pipeline, _ = make_pipeline(store)
    observer = Collector(fail=2)
    runner = runner_for(pipeline, store, observer, {})
    runner.start()
    ann, room = Inbox("ann"), new_room()
    post(pipeline, ann, room, "m1")
    await pipeline.wait_idle()
    assert ann.last["type"] == "ack"  # fan-out and ack never wait for the observer
    await until(lambda: observer.seen() == [("general", 1, "message")])
    assert runner.errors == 2
    await runner.stop()


async def test_a_full_queue_falls_back_to_the_log(store: LmdbStore) -> None:
    pipeline, _ = make_pipeline(store)
    observer = Collector()
    heads: dict[str, int] = {}
    runner = runner_for(pipeline, store, observer, heads, queue_max=3, batch_max=4)
    ann, room = Inbox("ann"), new_room()
    for i in range(10):  # before the runner starts: 3 queued, the rest past the queue
        post(pipeline, ann, room, f"m{i}")
    await pipeline.wait_idle()
    heads[room.key] = room.delivered
    runner.start()
    await until(lambda: len(observer.seen()) == 10)
    assert [seq for _, seq, _ in observer.seen()] == list(range(1, 11))
    assert runner.from_log > 0 and max(len(b) for b in observer.batches) <= 4
    await runner.stop()


async def test_a_restarted_observer_resumes_from_its_durable_cursor(store: LmdbStore) -> None:
    pipeline, _ = make_pipeline(store)
    ann, room = Inbox("ann"), new_room()
    for i in range(6):
        post(pipeline, ann, room, f"m{i}")
    # a cursor left by an earlier run: entries 1-4 were handled
    pipeline.submit_meta([("cursor", cursor_key("collector", room.key), cursor_value(4))])
    await pipeline.wait_idle()
    observer = Collector()
    runner = runner_for(pipeline, store, observer, {room.key: 6})
    runner.start()
    await until(lambda: len(observer.seen()) == 2)
    assert observer.seen() == [("general", 5, "message"), ("general", 6, "message")]
    await runner.stop()


async def test_an_observer_whose_own_record_is_behind_its_cursor_resumes_from_it(
    store: LmdbStore,
) -> None:
    # A derived store that commits without fsync (the search file) lost its last
    # transactions to a power cut: the runner starts from what that store says it has.
    class Derived(Collector):
        def positions(self) -> dict[str, int]:
            return {room.key: 2}

    pipeline, _ = make_pipeline(store)
    ann, room = Inbox("ann"), new_room()
    for i in range(6):
        post(pipeline, ann, room, f"m{i}")
    pipeline.submit_meta([("cursor", cursor_key("collector", room.key), cursor_value(5))])
    await pipeline.wait_idle()
    observer = Derived()
    runner = runner_for(pipeline, store, observer, {room.key: 6})
    runner.start()
    await until(lambda: len(observer.seen()) == 4)
    assert [seq for _, seq, _ in observer.seen()] == [3, 4, 5, 6]
    await runner.stop()


async def test_start_at_end_means_from_the_first_start(store: LmdbStore) -> None:
    # Rooms there at the first start begin at their head; a room created later starts at
    # its beginning, even when it was created while the observer was down (a crash
    # before its first cursor was saved must not make it start at the head).
    class Late(Collector):
        start_at = "end"

    pipeline, _ = make_pipeline(store)
    ann, old, heads = Inbox("ann"), new_room("old"), {}
    for i in range(3):
        post(pipeline, ann, old, f"before {i}")
    await pipeline.wait_idle()
    heads[old.key] = 3
    observer = Late()
    runner = runner_for(pipeline, store, observer, heads)
    runner.start()
    await runner.stop()
    pipeline.observers.runners.clear()
    fresh = new_room("fresh")
    post(pipeline, ann, old, "while down")
    post(pipeline, ann, fresh, "first of fresh")
    await pipeline.wait_idle()
    heads.update({old.key: 4, fresh.key: 1})
    again = Late()
    runner = runner_for(pipeline, store, again, heads)
    runner.start()
    await until(lambda: len(again.seen()) == 2)
    assert sorted(again.seen()) == [("fresh", 1, "message"), ("old", 4, "message")]
    assert observer.seen() == []
    await runner.stop()


async def test_trims_are_reported_and_move_the_cursor(store: LmdbStore) -> None:
    pipeline, _ = make_pipeline(store)
    observer = Collector()
    runner = runner_for(pipeline, store, observer, {})
    runner.trimmed("acme\x1fgeneral", 40)
    runner.trimmed("acme\x1fignored", 7)
    assert observer.trims == [("acme\x1fgeneral", 40)]
    assert runner.lag == 0

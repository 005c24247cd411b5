"""router.pyx (Router, Outbox, FlushQueue) against the plain-Python model.

The transport and loop are small recording fakes: these tests pin the coalescing and
overflow logic; the integration tests exercise the same code over real sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import router_model as model
from nexus._speedups import router


class FakeLoop:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[], Any]] = []

    def call_soon(self, cb: Callable[[], Any]) -> None:
        self.callbacks.append(cb)

    def run_iteration(self) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for cb in callbacks:
            cb()


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered


def make(impl: Any, limit: int = 1 << 20) -> tuple[FakeLoop, FakeTransport, Any, list[int]]:
    loop, transport, overflows = FakeLoop(), FakeTransport(), []
    queue = impl.FlushQueue(loop)
    box = impl.Outbox(transport, queue, limit, lambda: overflows.append(1))
    return loop, transport, box, overflows


@pytest.mark.parametrize("impl", [router, model])
def test_one_write_per_iteration_in_order(impl: Any) -> None:
    loop, transport, box, _ = make(impl)
    for frame in (b"a", b"bb", b"ccc"):
        assert box.push(frame)
    assert transport.writes == [] and len(loop.callbacks) == 1
    loop.run_iteration()
    assert transport.writes == [b"abbccc"]
    box.push(b"d")
    loop.run_iteration()
    assert transport.writes == [b"abbccc", b"d"]


def test_counters() -> None:
    loop, _, box, _ = make(router)
    box.push(b"12")
    box.push(b"345")
    loop.run_iteration()
    assert (box.frames_out, box.bytes_out, box.writes) == (2, 5, 1)


@pytest.mark.parametrize("impl", [router, model])
def test_one_flush_callback_for_many_outboxes(impl: Any) -> None:
    loop = FakeLoop()
    queue = impl.FlushQueue(loop)
    transports = [FakeTransport() for _ in range(5)]
    boxes = [impl.Outbox(t, queue, 1000, None) for t in transports]
    for b in boxes:
        b.push(b"x")
        b.push(b"y")
    assert len(loop.callbacks) == 1
    loop.run_iteration()
    assert [t.writes for t in transports] == [[b"xy"]] * 5


@pytest.mark.parametrize("impl", [router, model])
def test_big_tick_is_written_early_not_called_slow(impl: Any) -> None:
    loop, transport, box, overflows = make(impl, limit=10)
    for _ in range(5):
        assert box.push(b"abcd")  # 20 bytes queued in one tick, limit 10
    loop.run_iteration()
    assert b"".join(transport.writes) == b"abcd" * 5 and not overflows
    assert len(transport.writes) > 1


@pytest.mark.parametrize("impl", [router, model])
def test_overflow_when_the_transport_keeps_the_bytes(impl: Any) -> None:
    loop, transport, box, overflows = make(impl, limit=10)
    box.push(b"abcdef")
    loop.run_iteration()
    transport.buffered = 6  # the peer did not read (the outbox last saw 0)
    assert box.push(b"1234")
    # 4 queued + 7 > 10: the queue goes to the socket early, which still holds 6 + 4 of it,
    # and 6 + 7 > 10: overflow.
    assert not box.push(b"5678901")
    assert transport.writes[-1] == b"1234"
    assert box.closed and box.overflowed and not overflows
    loop.run_iteration()
    assert overflows == [1]
    assert not box.push(b"x")
    loop.run_iteration()
    assert overflows == [1]  # reported once


@pytest.mark.parametrize("impl", [router, model])
def test_overflow_detected_after_a_write(impl: Any) -> None:
    loop, transport, box, overflows = make(impl, limit=10)
    transport.buffered = 50
    box.push(b"abc")
    loop.run_iteration()  # writes, then sees 50 buffered > 10
    assert box.overflowed and overflows == []
    loop.run_iteration()
    assert overflows == [1]


@pytest.mark.parametrize("impl", [router, model])
def test_flush_now_and_close(impl: Any) -> None:
    loop, transport, box, _ = make(impl)
    box.push(b"a")
    box.flush()
    assert transport.writes == [b"a"]
    box.push(b"b")
    box.close()
    loop.run_iteration()
    assert transport.writes == [b"a"] and not box.push(b"c")


room_ops = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "broadcast"]), st.integers(0, 3), st.integers(0, 4)
    ),
    max_size=80,
)


@given(room_ops)
def test_router_matches_the_model(steps: list[tuple[str, int, int]]) -> None:
    fast_loop, slow_loop = FakeLoop(), FakeLoop()
    fq, sq = router.FlushQueue(fast_loop), model.FlushQueue(slow_loop)
    ft = [FakeTransport() for _ in range(5)]
    st_ = [FakeTransport() for _ in range(5)]
    fb = [router.Outbox(t, fq, 1 << 20, None) for t in ft]
    sb = [model.Outbox(t, sq, 1 << 20, None) for t in st_]
    fast, slow = router.Router(), model.Router()
    for i, (op, room, who) in enumerate(steps):
        if op == "join":
            assert fast.join(room, fb[who]) == slow.join(room, sb[who])
        elif op == "leave":
            assert fast.leave(room, fb[who]) == slow.leave(room, sb[who])
        else:
            frame = f"{i}".encode()
            assert fast.broadcast(room, frame, fb[who]) == slow.broadcast(room, frame, sb[who])
        assert fast.count(room) == slow.count(room)
        assert [fb.index(b) for b in fast.members(room)] == [
            sb.index(b) for b in slow.members(room)
        ]
        assert fast.is_member(room, fb[who]) == slow.is_member(room, sb[who])
    fast_loop.run_iteration()
    slow_loop.run_iteration()
    assert [t.writes for t in ft] == [t.writes for t in st_]
    assert fast.deliveries == slow.deliveries
    assert sorted(map(str, fast.rooms())) == sorted(map(str, slow.rooms))

"""In-process room members (an agent runtime, a bot) next to sockets, against the model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_router import FakeLoop, FakeTransport

from models import router_model as model
from nexus._speedups import framing, router


class Member:
    def __init__(self, fail: bool = False) -> None:
        self.frames: list[bytes] = []
        self.fail = fail

    def __call__(self, frame: bytes) -> None:
        self.frames.append(frame)
        if self.fail:
            raise RuntimeError("a member with a bug")


@pytest.mark.parametrize("impl", [router, model])
def test_local_members_get_every_frame_with_the_sockets(impl: Any) -> None:
    loop, transport = FakeLoop(), FakeTransport()
    queue = impl.FlushQueue(loop)
    box = impl.Outbox(transport, queue, 1 << 20, None)
    r = impl.Router()
    agent, broken, other = Member(), Member(fail=True), Member()
    r.join("room", box)
    assert r.join_local("room", agent) and not r.join_local("room", agent)
    r.join_local("room", broken)
    r.join_local("elsewhere", other)
    frame = framing.frame_text(b'{"type":"message"}')
    # the socket and the agent; the broken member was called but is no delivery
    assert r.broadcast("room", frame) == 2
    loop.run_iteration()
    assert transport.writes == [frame]
    assert agent.frames == [frame] and broken.frames == [frame] and other.frames == []
    assert r.local_errors == 1  # the broken member's exception was contained
    assert r.count("room") == 1  # sockets only
    assert r.leave_local("room", agent) and not r.leave_local("room", agent)
    r.broadcast("room", frame)
    assert agent.frames == [frame]


def test_a_member_may_leave_while_it_is_called() -> None:
    r = router.Router()

    class Leaver:
        def __call__(self, frame: bytes) -> None:
            r.leave_local("room", self)

    leaver, stayer = Leaver(), Member()
    r.join_local("room", leaver)
    r.join_local("room", stayer)
    r.broadcast("room", b"\x81\x00")
    r.broadcast("room", b"\x81\x00")
    assert len(stayer.frames) == 2 and r.local_members("room") == [stayer]


@given(st.binary(max_size=70000))
def test_unframe_gives_back_the_payload(payload: bytes) -> None:
    assert framing.unframe(framing.frame_text(payload)) == payload


def test_unframe_refuses_what_is_not_a_frame() -> None:
    for bad in (b"", b"\x81", b"\x81\x85\x00\x00\x00\x00hello", b"\x81\x7e\x00"):
        with pytest.raises(ValueError):
            framing.unframe(bad)

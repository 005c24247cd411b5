"""The SDK's sans-I/O parts: backoff, close-code policy, the session state."""

from __future__ import annotations

import pytest

from nexus.client import Backoff, Message, ReplyDelta, ReplyEnded, ReplyStarted
from nexus.client.closing import may_reconnect, needs_new_token
from nexus.client.state import SessionState


def test_backoff_full_jitter_grows_to_the_cap_and_resets() -> None:
    top = Backoff(base=0.5, cap=8.0, rand=lambda: 1.0)
    assert [top.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    top.reset()
    assert top.next() == 0.5
    low = Backoff(base=0.5, cap=8.0, rand=lambda: 0.0)
    assert low.next() == 0.0  # full jitter: anywhere from 0
    huge = Backoff(base=1.0, cap=30.0, rand=lambda: 1.0)
    huge.attempt = 10_000
    assert huge.next() == 30.0
    with pytest.raises(ValueError):
        Backoff(base=0)


@pytest.mark.parametrize(
    ("code", "again"),
    [
        (None, True),
        (1001, True),
        (1006, True),
        (1011, True),
        (4000, True),
        (4002, True),
        (4003, True),
        (4499, True),
        (4500, False),
        (4501, False),
        (4502, False),
        (4999, False),
        (1000, False),
        (1002, False),
        (1007, False),
        (1009, False),
    ],
)
def test_close_code_ranges(code: int | None, again: bool) -> None:
    assert may_reconnect(code) is again


def test_only_token_expiry_needs_a_new_token() -> None:
    assert needs_new_token(4003) and not needs_new_token(4501) and not needs_new_token(None)


def msg(room: str, seq: int, body: str = "x") -> dict[str, object]:
    return {
        "type": "message",
        "room": room,
        "seq": seq,
        "id": f"id{seq}",
        "sender": "a",
        "sender_kind": "human",
        "ts": 1,
        "body": body,
    }


def test_entries_once_in_order_across_a_resume() -> None:
    state = SessionState()
    state.joining("r", None)
    state.joined("r", 3)  # live from seq 3 on
    assert state.receive(msg("r", 3)) == []  # before the join: not ours to hand over
    (first,) = state.receive(msg("r", 4, "hi"))
    assert isinstance(first, Message) and first.body == "hi" and first.seq == 4
    assert state.rejoin() == [{"type": "room.join", "room": "r", "since": 4}]
    # the replay after a reconnect repeats seq 4: dropped; 5 is new
    assert state.receive(msg("r", 4)) == []
    assert [e.seq for e in state.receive(msg("r", 5))] == [5]  # type: ignore[attr-defined]
    state.left("r")
    assert state.rejoin() == []


def test_joining_with_since_keeps_the_earliest_position() -> None:
    state = SessionState()
    state.joining("r", 10)
    state.joining("r", 7)
    state.joined("r", 20)
    assert state.rejoin() == [{"type": "room.join", "room": "r", "since": 7}]


def test_outbox_resends_once_per_connection_until_acknowledged() -> None:
    state = SessionState()
    a = {"type": "message.send", "room": "r", "body": "a", "client_msg_id": "a"}
    b = {"type": "message.send", "room": "r", "body": "b", "client_msg_id": "b"}
    state.sending("a", a, 1)
    state.sending("b", b, 0)
    assert state.resend(1) == [b]  # "a" went out on connection 1 already
    assert state.resend(1) == []
    state.acknowledged("b")
    assert state.resend(2) == [a]
    state.acknowledged("a")
    assert state.resend(3) == []


def test_streamed_reply_assembled_by_offset() -> None:
    state = SessionState()
    state.joining("r", 0)
    started = {
        "type": "message.started",
        "room": "r",
        "seq": 1,
        "id": "rep",
        "sender": "bot",
        "state": "streaming",
    }
    (event,) = state.receive(started)
    assert isinstance(event, ReplyStarted) and event.id == "rep"

    def delta(offset: int, text: str) -> list[object]:
        return state.receive(  # type: ignore[return-value]
            {
                "type": "message.delta",
                "room": "r",
                "message_id": "rep",
                "offset": offset,
                "text": text,
            }
        )

    (d1,) = delta(0, "Hel")
    assert isinstance(d1, ReplyDelta) and d1.so_far == "Hel"
    assert delta(0, "Hel") == []  # held already
    (d2,) = delta(1, "ello")  # overlaps: only the new part
    assert isinstance(d2, ReplyDelta) and d2.text == "lo" and d2.so_far == "Hello"
    assert delta(9, "gap") == []  # a hole is never appended
    snap = state.receive(
        {
            "type": "message.snapshot",
            "room": "r",
            "message_id": "rep",
            "offset": 11,
            "text": "Hello world",
        }
    )
    assert isinstance(snap[0], ReplyDelta) and snap[0].text == " world"
    assert state.reply_text("rep") == "Hello world"
    (end,) = state.receive(
        {
            "type": "message.completed",
            "room": "r",
            "seq": 2,
            "id": "e",
            "message_id": "rep",
            "sender": "bot",
            "text": "Hello world",
            "finish_reason": "cancelled",
        }
    )
    assert isinstance(end, ReplyEnded) and end.state == "cancelled" and end.text == "Hello world"
    assert state.reply_text("rep") is None

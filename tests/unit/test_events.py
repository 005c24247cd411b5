"""Event encoders: each returns JSON bytes with the documented fields."""

from __future__ import annotations

import inspect
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexus.errors import ERROR_CLASSES, BadRequest, NexusError, RateLimited, TooLarge
from nexus.protocol import events


def test_auth_ok_sorts_roles() -> None:
    out = events.auth_ok("a1", "alice", "acme", "sess-1", "human", {"member", "admin"})
    assert isinstance(out, bytes)
    assert orjson.loads(out) == {
        "type": "auth.ok",
        "id": "a1",
        "user_id": "alice",
        "tenant": "acme",
        "session_id": "sess-1",
        "kind": "human",
        "roles": ["admin", "member"],
    }


def test_pong() -> None:
    assert orjson.loads(events.pong(5, 1700000000123)) == {
        "type": "pong",
        "id": 5,
        "ts": 1700000000123,
    }


def test_pong_null_id() -> None:
    assert orjson.loads(events.pong(None, 0)) == {"type": "pong", "id": None, "ts": 0}


def room_joined_extra() -> dict[str, int]:
    # Later builds add integer fields (first_seq, members_total); each is echoed under its
    # parameter's name, so give every parameter beyond the original four a distinct value.
    base = {"rid", "room", "seq", "members"}
    names = [n for n in inspect.signature(events.room_joined).parameters if n not in base]
    return {name: 1000 + i for i, name in enumerate(names)}


def test_room_joined() -> None:
    members = [{"user_id": "alice", "kind": "human"}, {"user_id": "bot", "kind": "agent"}]
    extra = room_joined_extra()
    assert orjson.loads(events.room_joined("j", "general", 42, members=members, **extra)) == {
        "type": "room.joined",
        "id": "j",
        "room": "general",
        "seq": 42,
        "members": members,
        **extra,
    }


def test_room_joined_accepts_tuple_of_members() -> None:
    members = ({"user_id": "u", "kind": "human"},)
    out = orjson.loads(events.room_joined(1, "r", 0, members=members, **room_joined_extra()))
    assert out["members"] == [{"user_id": "u", "kind": "human"}]


def test_room_left() -> None:
    assert orjson.loads(events.room_left("l", "general")) == {
        "type": "room.left",
        "id": "l",
        "room": "general",
    }


def test_message() -> None:
    out = events.message(
        "general",
        7,
        "m-7",
        "alice",
        "human",
        1700,
        "h\u00e9llo \U0001f600",
        "m-3",
        {"mentions": ["bob"]},
    )
    assert orjson.loads(out) == {
        "type": "message",
        "room": "general",
        "seq": 7,
        "id": "m-7",
        "sender": "alice",
        "sender_kind": "human",
        "ts": 1700,
        "body": "h\u00e9llo \U0001f600",
        "reply_to": "m-3",
        "meta": {"mentions": ["bob"]},
    }


def test_message_optional_fields_null() -> None:
    out = orjson.loads(events.message("r", 1, "m", "u", "agent", 0, "b", None, None))
    assert out["reply_to"] is None
    assert out["meta"] is None
    assert out["sender_kind"] == "agent"


def test_ack() -> None:
    assert orjson.loads(events.ack("s", "r", 9, "m-9", "c-1")) == {
        "type": "ack",
        "id": "s",
        "room": "r",
        "seq": 9,
        "message_id": "m-9",
        "client_msg_id": "c-1",
        "duplicate": False,
    }


def test_ack_duplicate() -> None:
    out = orjson.loads(events.ack(3, "r", 9, "m-9", None, duplicate=True))
    assert out["duplicate"] is True
    assert out["client_msg_id"] is None
    assert out["id"] == 3


def test_presence() -> None:
    assert orjson.loads(events.presence("r", "bob", "agent", "join")) == {
        "type": "presence",
        "room": "r",
        "user_id": "bob",
        "kind": "agent",
        "action": "join",
    }


@pytest.mark.parametrize("active", [True, False])
def test_typing(active: bool) -> None:
    assert orjson.loads(events.typing("r", "bob", "human", active)) == {
        "type": "typing",
        "room": "r",
        "user_id": "bob",
        "kind": "human",
        "active": active,
    }


# -- history_page splices stored records ---------------------------------------


def stored(seq: int, body: str) -> bytes:
    return events.message("r", seq, f"m-{seq}", "alice", "human", seq * 10, body, None, None)


def test_history_page_zero_records() -> None:
    out = events.history_page("h", "r", [], False)
    assert orjson.loads(out) == {
        "type": "history.page",
        "id": "h",
        "room": "r",
        "has_more": False,
        "messages": [],
    }


def test_history_page_one_record() -> None:
    out = orjson.loads(events.history_page(1, "r", [stored(1, "a")], True))
    assert out["has_more"] is True
    assert out["id"] == 1
    assert out["messages"] == [orjson.loads(stored(1, "a"))]


def test_history_page_many_records_keep_order_and_bytes() -> None:
    records = [stored(i, f'body {i} \u20ac "quoted"') for i in range(1, 6)]
    out = events.history_page(None, "r", records, False)
    page = orjson.loads(out)
    assert page["type"] == "history.page"
    assert page["id"] is None
    assert page["room"] == "r"
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5]
    assert page["messages"] == [orjson.loads(r) for r in records]
    # Records are spliced verbatim, not re-encoded.
    for r in records:
        assert r in out


def test_history_page_accepts_tuple() -> None:
    page = orjson.loads(events.history_page("x", "r", (stored(1, "a"), stored(2, "b")), False))
    assert len(page["messages"]) == 2


# -- error -------------------------------------------------------------------


def test_error_bad_request() -> None:
    exc = BadRequest("room must be ...", request_id="q")
    assert orjson.loads(events.error(exc)) == {
        "type": "error",
        "id": "q",
        "code": "bad_request",
        "message": "room must be ...",
    }


def test_error_without_request_id() -> None:
    out = orjson.loads(events.error(TooLarge("body exceeds 10 bytes")))
    assert out == {
        "type": "error",
        "id": None,
        "code": "too_large",
        "message": "body exceeds 10 bytes",
    }


def test_error_rate_limited_has_retry_after() -> None:
    exc = RateLimited("slow down", retry_after_ms=250, request_id=12)
    assert orjson.loads(events.error(exc)) == {
        "type": "error",
        "id": 12,
        "code": "rate_limited",
        "message": "slow down",
        "retry_after_ms": 250,
    }


@pytest.mark.parametrize(
    "cls", [c for c in ERROR_CLASSES if c is not RateLimited], ids=lambda c: c.__name__
)
def test_error_every_class_has_its_code(cls: type[NexusError]) -> None:
    out = orjson.loads(events.error(cls("m", request_id="r")))
    assert out == {"type": "error", "id": "r", "code": cls.code, "message": "m"}
    assert "retry_after_ms" not in out


def test_error_codes_are_distinct() -> None:
    codes = [c.code for c in ERROR_CLASSES]
    assert len(set(codes)) == len(codes)


@given(
    st.from_regex(r"[A-Za-z0-9_.:@-]{1,128}", fullmatch=True),
    st.integers(0, 2**63 - 1),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_.@:+-]{1,128}", fullmatch=True),
    st.sampled_from(["human", "agent"]),
    st.integers(0, 2**53),
    st.text(min_size=1),
    st.none() | st.text(min_size=1, max_size=40),
    st.none()
    | st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)),
    st.none() | st.text(max_size=40) | st.integers(-(2**63), 2**63 - 1),
)
def test_templated_records_equal_orjson_encoding(
    room: str,
    seq: int,
    msg_id: str,
    sender: str,
    kind: str,
    ts: int,
    body: str,
    reply_to: str | None,
    meta: dict[str, Any] | None,
    rid: str | int | None,
) -> None:
    """message and ack are filled into byte templates on the hot path; they must be exactly
    what orjson makes of the same dicts (for the alphabets the intake admits)."""
    body = body.encode("utf-8", "ignore").decode()  # orjson refuses lone surrogates
    as_dict = orjson.dumps(
        {
            "type": "message",
            "room": room,
            "seq": seq,
            "id": msg_id,
            "sender": sender,
            "sender_kind": kind,
            "ts": ts,
            "body": body,
            "reply_to": reply_to,
            "meta": meta,
        }
    )
    assert events.message(room, seq, msg_id, sender, kind, ts, body, reply_to, meta) == as_dict
    for dup in (False, True):
        ack = orjson.dumps(
            {
                "type": "ack",
                "id": rid,
                "room": room,
                "seq": seq,
                "message_id": msg_id,
                "client_msg_id": reply_to,
                "duplicate": dup,
            }
        )
        assert events.ack(rid, room, seq, msg_id, reply_to, duplicate=dup) == ack

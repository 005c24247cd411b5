"""Decoder: bytes in, a validated request out, or a NexusError carrying the request id."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus.errors import BadRequest, NexusError, TooLarge
from nexus.protocol import (
    Auth,
    Decoder,
    History,
    Limits,
    MessageSend,
    Ping,
    RoomJoin,
    RoomLeave,
    Typing,
)
from nexus.protocol.decoder import MAX_SEQ

R = TypeVar("R")


@pytest.fixture
def decoder() -> Decoder:
    return Decoder()


def frame(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def decode_as(decoder: Decoder, payload: bytes, cls: type[R]) -> R:
    req = decoder.decode(payload)
    assert isinstance(req, cls), req
    return req


def decode_error(decoder: Decoder, payload: bytes | str, cls: type[NexusError]) -> NexusError:
    with pytest.raises(NexusError) as info:
        decoder.decode(payload)
    assert type(info.value) is cls, info.value
    return info.value


# -- every request type, with its defaults -----------------------------------


def test_auth(decoder: Decoder) -> None:
    assert decoder.decode(frame(type="auth", id=1, token="abc.def.ghi")) == Auth(1, "abc.def.ghi")


def test_ping_without_id(decoder: Decoder) -> None:
    req = decoder.decode(b'{"type":"ping"}')
    assert req == Ping(None)
    assert type(req) is Ping


def test_room_join_defaults(decoder: Decoder) -> None:
    req = decoder.decode(frame(type="room.join", id="j1", room="general"))
    assert req == RoomJoin("j1", "general", None)


def test_room_join_since(decoder: Decoder) -> None:
    assert decoder.decode(frame(type="room.join", room="r", since=0)) == RoomJoin(None, "r", 0)
    req = decode_as(decoder, frame(type="room.join", room="r", since=MAX_SEQ), RoomJoin)
    assert req.since == MAX_SEQ


def test_room_leave(decoder: Decoder) -> None:
    assert decoder.decode(frame(type="room.leave", id=7, room="a.b:c@d-e_f")) == RoomLeave(
        7, "a.b:c@d-e_f"
    )


def test_message_send_defaults(decoder: Decoder) -> None:
    req = decoder.decode(frame(type="message.send", id="m", room="r", body="hello"))
    assert req == MessageSend("m", "r", "hello", client_msg_id=None, reply_to=None, meta=None)


def test_message_send_all_fields(decoder: Decoder) -> None:
    req = decoder.decode(
        frame(
            type="message.send",
            id=3,
            room="r",
            body="hi",
            client_msg_id="c-1",
            reply_to="msg-9",
            meta={"k": [1, 2]},
        )
    )
    assert req == MessageSend(
        3, "r", "hi", client_msg_id="c-1", reply_to="msg-9", meta={"k": [1, 2]}
    )


def test_typing_defaults_to_active(decoder: Decoder) -> None:
    assert decoder.decode(frame(type="typing", room="r")) == Typing(None, "r", True)
    assert decoder.decode(frame(type="typing", id=2, room="r", active=False)) == Typing(
        2, "r", False
    )


def test_history_defaults(decoder: Decoder) -> None:
    assert decoder.decode(frame(type="history", id="h", room="r")) == History(
        "h", "r", None, None, 50
    )


def test_history_cursor_and_limit(decoder: Decoder) -> None:
    assert decoder.decode(frame(type="history", room="r", before=10, limit=5)) == History(
        None, "r", 10, None, 5
    )
    assert decoder.decode(frame(type="history", room="r", after=0, limit=1)) == History(
        None, "r", None, 0, 1
    )


def test_history_limit_capped() -> None:
    decoder = Decoder(Limits(history_max_limit=20))
    assert decode_as(decoder, frame(type="history", room="r", limit=1000), History).limit == 20
    assert decode_as(decoder, frame(type="history", room="r", limit=20), History).limit == 20
    # The default of 50 is capped too.
    assert decode_as(decoder, frame(type="history", room="r"), History).limit == 20


def test_accepts_str_bytearray_memoryview(decoder: Decoder) -> None:
    text = '{"type":"ping","id":"x"}'
    for payload in (text, text.encode(), bytearray(text.encode()), memoryview(text.encode())):
        assert decoder.decode(payload) == Ping("x")


@pytest.mark.parametrize("rid", ["abc", "", "x" * 128, 0, -5, 42, MAX_SEQ, -MAX_SEQ])
def test_id_carried(decoder: Decoder, rid: str | int) -> None:
    assert decode_as(decoder, frame(type="ping", id=rid), Ping).id == rid


# -- envelope errors ---------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"{", b"not json", b'{"type":"ping",}', b"\xff\xfe"])
def test_invalid_json(decoder: Decoder, payload: bytes) -> None:
    err = decode_error(decoder, payload, BadRequest)
    assert err.code == "bad_request"
    assert err.request_id is None


@pytest.mark.parametrize(
    "payload", [b"[]", b'[{"type":"ping"}]', b'"ping"', b"1", b"null", b"true"]
)
def test_non_object_json(decoder: Decoder, payload: bytes) -> None:
    err = decode_error(decoder, payload, BadRequest)
    assert err.message == "frame must be a JSON object"


@pytest.mark.parametrize("rid", ["x" * 129, 1.5, True, False, [], {}, MAX_SEQ + 1])
def test_invalid_id(decoder: Decoder, rid: Any) -> None:
    err = decode_error(decoder, frame(type="ping", id=rid), BadRequest)
    assert err.request_id is None  # an invalid id cannot be echoed


@pytest.mark.parametrize("kind", [None, 1, ["ping"], True])
def test_missing_or_non_string_type(decoder: Decoder, kind: Any) -> None:
    obj: dict[str, Any] = {"id": "r1"}
    if kind is not None:
        obj["type"] = kind
    err = decode_error(decoder, orjson.dumps(obj), BadRequest)
    assert err.code == "bad_request"
    assert err.request_id == "r1"


def test_unknown_type(decoder: Decoder) -> None:
    err = decode_error(decoder, frame(type="room.delete", id=9, room="r"), BadRequest)
    assert err.request_id == 9
    assert "room.delete" in err.message


def test_unknown_type_message_truncated(decoder: Decoder) -> None:
    err = decode_error(decoder, frame(type="z" * 1000, id=9), BadRequest)
    assert "z" * 64 in err.message
    assert "z" * 65 not in err.message


# -- field errors: every one carries the frame's id --------------------------

MISSING_OR_WRONG_TYPE = [
    {"type": "auth"},
    {"type": "auth", "token": ""},
    {"type": "auth", "token": 123},
    {"type": "auth", "token": None},
    {"type": "room.join"},
    {"type": "room.join", "room": 5},
    {"type": "room.join", "room": "r", "since": "1"},
    {"type": "room.join", "room": "r", "since": 1.0},
    {"type": "room.leave"},
    {"type": "room.leave", "room": ["r"]},
    {"type": "message.send", "room": "r"},
    {"type": "message.send", "body": "x"},
    {"type": "message.send", "room": "r", "body": 5},
    {"type": "message.send", "room": "r", "body": ["x"]},
    {"type": "message.send", "room": "r", "body": "x", "client_msg_id": 5},
    {"type": "message.send", "room": "r", "body": "x", "client_msg_id": ""},
    {"type": "message.send", "room": "r", "body": "x", "client_msg_id": "c" * 129},
    {"type": "message.send", "room": "r", "body": "x", "reply_to": 5},
    {"type": "message.send", "room": "r", "body": "x", "reply_to": ""},
    {"type": "typing"},
    {"type": "typing", "room": "r", "active": 1},
    {"type": "typing", "room": "r", "active": "true"},
    {"type": "history"},
    {"type": "history", "room": "r", "limit": 0},
    {"type": "history", "room": "r", "limit": -1},
    {"type": "history", "room": "r", "limit": "10"},
    {"type": "history", "room": "r", "limit": 10.0},
    {"type": "history", "room": "r", "limit": True},
    {"type": "history", "room": "r", "before": "5"},
]


@pytest.mark.parametrize("obj", MISSING_OR_WRONG_TYPE, ids=lambda o: json.dumps(o))
@pytest.mark.parametrize("rid", ["req-1", 17])
def test_missing_or_wrong_typed_field(decoder: Decoder, obj: dict[str, Any], rid: Any) -> None:
    err = decode_error(decoder, orjson.dumps({**obj, "id": rid}), BadRequest)
    assert err.code == "bad_request"
    assert err.request_id == rid


def test_field_error_without_id_has_no_request_id(decoder: Decoder) -> None:
    err = decode_error(decoder, frame(type="auth"), BadRequest)
    assert err.request_id is None


BAD_ROOMS = [
    "",
    "x" * 129,
    "has space",
    "slash/room",
    "tab\tx",
    "uni\u00e9",
    "nul\x00",
    "sep\x1fx",
    "hash#",
    "new\nline",
]


@pytest.mark.parametrize("room", BAD_ROOMS, ids=repr)
@pytest.mark.parametrize("kind", ["room.join", "room.leave", "message.send", "typing", "history"])
def test_bad_room_names(decoder: Decoder, room: str, kind: str) -> None:
    err = decode_error(decoder, frame(type=kind, id="b", room=room, body="x"), BadRequest)
    assert err.request_id == "b"


@pytest.mark.parametrize("kind", ["room.join", "room.leave", "message.send", "typing", "history"])
def test_room_name_with_trailing_newline(decoder: Decoder, kind: str) -> None:
    # `$` alone would match before a final newline.
    err = decode_error(decoder, frame(type=kind, id="b", room="abc\n", body="x"), BadRequest)
    assert err.request_id == "b"


def test_room_name_at_max_length(decoder: Decoder) -> None:
    assert decode_as(decoder, frame(type="room.leave", room="r" * 128), RoomLeave).room == "r" * 128


@pytest.mark.parametrize("value", [-1, True, False, MAX_SEQ + 1, 2.0])
@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("room.join", "since"),
        ("history", "before"),
        ("history", "after"),
    ],
)
def test_bad_seqs(decoder: Decoder, kind: str, name: str, value: Any) -> None:
    err = decode_error(
        decoder, orjson.dumps({"type": kind, "id": 4, "room": "r", name: value}), BadRequest
    )
    assert err.request_id == 4
    assert name in err.message


def test_before_and_after_together(decoder: Decoder) -> None:
    err = decode_error(
        decoder, frame(type="history", id="ba", room="r", before=5, after=1), BadRequest
    )
    assert err.request_id == "ba"
    assert "not both" in err.message


# -- size limits ---------------------------------------------------------------


def send(body: str, **extra: Any) -> bytes:
    return orjson.dumps({"type": "message.send", "id": "s", "room": "r", "body": body, **extra})


def test_empty_body(decoder: Decoder) -> None:
    err = decode_error(decoder, send(""), BadRequest)
    assert err.request_id == "s"


def test_body_exactly_at_limit_passes() -> None:
    decoder = Decoder(Limits(max_body_bytes=100))
    assert decode_as(decoder, send("a" * 100), MessageSend).body == "a" * 100


def test_body_one_byte_over_fails() -> None:
    decoder = Decoder(Limits(max_body_bytes=100))
    err = decode_error(decoder, send("a" * 101), TooLarge)
    assert err.code == "too_large"
    assert err.request_id == "s"


def test_default_body_limit(decoder: Decoder) -> None:
    assert decode_as(decoder, send("a" * 16384), MessageSend).body == "a" * 16384
    decode_error(decoder, send("a" * 16385), TooLarge)


@pytest.mark.parametrize(("char", "width"), [("\u00e9", 2), ("\u20ac", 3), ("\U0001f600", 4)])
def test_body_limit_counts_utf8_bytes(char: str, width: int) -> None:
    decoder = Decoder(Limits(max_body_bytes=12 * width))
    # 12 characters of `width` bytes each: exactly at the limit.
    assert decode_as(decoder, send(char * 12), MessageSend).body == char * 12
    # One more ASCII byte tips it over although only 13 characters.
    err = decode_error(decoder, send(char * 12 + "a"), TooLarge)
    assert err.request_id == "s"


def test_body_limit_multibyte_under_character_count() -> None:
    # 30 characters, 90 bytes: over a 60-byte limit though far under it in characters.
    decoder = Decoder(Limits(max_body_bytes=60))
    decode_error(decoder, send("\u20ac" * 30), TooLarge)
    assert decode_as(decoder, send("\u20ac" * 20), MessageSend).body == "\u20ac" * 20


def test_meta_at_limit_passes_and_over_fails() -> None:
    decoder = Decoder(Limits(max_meta_bytes=20))
    meta = {"k": "v" * 12}  # {"k":"vvvvvvvvvvvv"} is 20 bytes
    assert len(orjson.dumps(meta)) == 20
    assert decode_as(decoder, send("x", meta=meta), MessageSend).meta == meta
    err = decode_error(decoder, send("x", meta={"k": "v" * 13}), TooLarge)
    assert err.code == "too_large"
    assert err.request_id == "s"


@pytest.mark.parametrize("meta", [[], [1], "m", 1, True])
def test_meta_not_an_object(decoder: Decoder, meta: Any) -> None:
    err = decode_error(decoder, send("x", meta=meta), BadRequest)
    assert err.request_id == "s"


def test_meta_null_is_absent(decoder: Decoder) -> None:
    assert decode_as(decoder, send("x", meta=None), MessageSend).meta is None


def test_deeply_nested_meta_is_a_nexus_error(decoder: Decoder) -> None:
    meta = '{"a":' * 300 + "1" + "}" * 300  # 1801 bytes: under max_meta_bytes
    payload = f'{{"type":"message.send","id":"s","room":"r","body":"x","meta":{meta}}}'.encode()
    with pytest.raises(NexusError) as info:
        decoder.decode(payload)
    assert info.value.request_id == "s"


def test_lone_surrogate_is_bad_request(decoder: Decoder) -> None:
    decode_error(decoder, b'{"type":"message.send","room":"r","body":"\\ud800"}', BadRequest)
    decode_error(decoder, '{"type":"ping","id":"\ud800"}', BadRequest)


# -- property: nothing but NexusError escapes ----------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
field_values = (
    json_values
    | st.sampled_from(["r", "general", "", "x" * 129, "ok-room", "h\u00e9"])
    | st.integers(min_value=-3, max_value=200)
)
request_objects = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["auth", "ping", "room.join", "room.leave", "message.send", "typing", "history", "nope"]
        )
        | json_values
    },
    optional=dict.fromkeys(
        (
            "id",
            "token",
            "room",
            "since",
            "body",
            "client_msg_id",
            "reply_to",
            "meta",
            "active",
            "before",
            "after",
            "limit",
        ),
        field_values,
    ),
)


def check_decode(payload: bytes) -> None:
    decoder = Decoder(Limits(max_body_bytes=64, max_meta_bytes=64, history_max_limit=10))
    try:
        req = decoder.decode(payload)
    except NexusError as exc:
        assert exc.code in ("bad_request", "too_large")
    else:
        if isinstance(req, History):
            assert 1 <= req.limit <= 10


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_values_raise_only_nexus_errors(value: Any) -> None:
    check_decode(json.dumps(value).encode())


@settings(max_examples=500, deadline=None)
@given(request_objects)
def test_arbitrary_request_objects_raise_only_nexus_errors(obj: dict[str, Any]) -> None:
    check_decode(json.dumps(obj).encode())

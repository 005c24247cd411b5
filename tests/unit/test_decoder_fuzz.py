"""Decoder fuzzing: any input gives a request or a NexusError carrying the documented id, and
structured requests decode exactly as docs/protocol.md §3-§4 say (a plain-Python model).

``NEXUS_FUZZ_EXAMPLES`` sets the examples per property (default 200); for a long run:
``NEXUS_FUZZ_EXAMPLES=1000000 .venv/bin/python -m pytest tests/unit/test_decoder_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn, SearchStrategy

from nexus.errors import NexusError
from nexus.protocol import (
    Auth,
    Decoder,
    History,
    Limits,
    MessageCancel,
    MessageDelete,
    MessageEdit,
    MessageSend,
    Ping,
    Request,
    RoomJoin,
    RoomLeave,
    Typing,
)

FUZZ_EXAMPLES = int(os.environ.get("NEXUS_FUZZ_EXAMPLES", "200"))
fuzz = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None)

REQUEST_TYPES = (
    Auth,
    Ping,
    RoomJoin,
    RoomLeave,
    MessageSend,
    MessageEdit,
    MessageDelete,
    MessageCancel,
    Typing,
    History,
)
MAX_SEQ = 2**63 - 1  # protocol.md §3: ids and seqs
ID_MAX_CHARS = 128  # request ids
ID_MAX_BYTES = 128  # client_msg_id, reply_to, message_id
ROOM_CHARS = frozenset(string.ascii_letters + string.digits + "_.:@-")
META_MAX_DEPTH = 254  # protocol.md §4.5: "nested more than 254 levels deep: bad_request"
DEFAULT_HISTORY_LIMIT = 50
FIELDS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "auth": ("token",),
    "ping": (),
    "room.join": ("room", "since"),
    "room.leave": ("room",),
    "message.send": ("room", "body", "client_msg_id", "reply_to", "meta"),
    "message.edit": ("room", "message_id", "body", "client_msg_id"),
    "message.delete": ("room", "message_id", "client_msg_id"),
    "typing": ("room", "active"),
    "history": ("room", "before", "after", "limit"),
    "message.cancel": ("room", "message_id"),
}
REQUIRED = frozenset({"token", "room", "body", "message_id"})
KNOWN_FIELDS = frozenset({"type", "id"}).union(*FIELDS_BY_TYPE.values())


# -- the protocol, as a model ---------------------------------------------------------------


class Refused(NamedTuple):
    """A documented refusal: the error codes the docs allow, and the id it must carry."""

    codes: frozenset[str]
    request_id: Any


Outcome = Request | Refused


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def valid_id(value: Any) -> bool:
    """protocol.md §3: a string of at most 128 characters, or an integer |n| <= 2^63-1."""
    if isinstance(value, str):
        return len(value) <= ID_MAX_CHARS
    return is_int(value) and abs(value) <= MAX_SEQ


def valid_room(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 128 and set(value) <= ROOM_CHARS


def valid_seq(value: Any) -> bool:
    return is_int(value) and 0 <= value <= MAX_SEQ


def valid_text_id(value: Any) -> bool:
    """``client_msg_id``, ``reply_to``, ``message_id``: 1-128 UTF-8 bytes (they become LMDB
    keys, whose size is counted in bytes)."""
    return isinstance(value, str) and 1 <= len(value.encode()) <= ID_MAX_BYTES


def depth(value: Any) -> int:
    """Container levels: ``{}`` is 1, ``{"a": []}`` is 2, a scalar 0."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def expected_id(obj: Any) -> Any:
    """The id an answer to ``obj`` carries: the request's id if usable, else None."""
    if isinstance(obj, dict) and valid_id(obj.get("id")):
        return obj.get("id")
    return None


def model_decode(obj: Any, limits: Limits) -> Outcome:
    """What protocol.md §3-§4 say the decoder answers for the parsed JSON value ``obj``.

    Where a frame breaks several rules the docs name no order, so every code the broken rules
    call for is allowed. ``null`` is "absent" for optional fields except ``active`` and
    ``limit``, whose documented type (boolean, integer) ``null`` is not.
    """
    if not isinstance(obj, dict):
        return Refused(frozenset({"bad_request"}), None)
    rid = obj.get("id")
    if rid is not None and not valid_id(rid):
        return Refused(frozenset({"bad_request"}), None)
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in FIELDS_BY_TYPE:
        return Refused(frozenset({"bad_request"}), rid)
    broken: set[str] = set()

    def need(ok: bool, code: str = "bad_request") -> None:
        if not ok:
            broken.add(code)

    def get(name: str, default: Any = None) -> Any:
        return obj.get(name, default)

    fields = FIELDS_BY_TYPE[kind]
    if "room" in fields:
        need(valid_room(get("room")))
    if "token" in fields:
        need(isinstance(get("token"), str) and get("token") != "")
    if "message_id" in fields:
        need(valid_text_id(get("message_id")))
    for name in ("client_msg_id", "reply_to"):
        if name in fields:
            need(get(name) is None or valid_text_id(get(name)))
    for name in ("since", "before", "after"):
        if name in fields:
            need(get(name) is None or valid_seq(get(name)))
    if "body" in fields:
        body = get("body")
        need(isinstance(body, str) and body != "")
        if isinstance(body, str):
            need(len(body.encode()) <= limits.max_body_bytes, "too_large")
    meta = get("meta")
    if "meta" in fields and meta is not None:
        need(isinstance(meta, dict))
        if isinstance(meta, dict):
            need(depth(meta) <= META_MAX_DEPTH)
            if depth(meta) <= META_MAX_DEPTH:
                need(len(orjson.dumps(meta)) <= limits.max_meta_bytes, "too_large")
    if kind == "typing":
        need(isinstance(get("active", True), bool))
    if kind == "history":
        need(get("before") is None or get("after") is None)
        limit = get("limit", DEFAULT_HISTORY_LIMIT)
        need(is_int(limit) and limit >= 1)
    if broken:
        return Refused(frozenset(broken), rid)
    build: dict[str, Callable[[], Request]] = {
        "auth": lambda: Auth(rid, get("token")),
        "ping": lambda: Ping(rid),
        "room.join": lambda: RoomJoin(rid, get("room"), get("since")),
        "room.leave": lambda: RoomLeave(rid, get("room")),
        "message.send": lambda: MessageSend(
            rid, get("room"), get("body"), get("client_msg_id"), get("reply_to"), meta
        ),
        "message.edit": lambda: MessageEdit(
            rid, get("room"), get("message_id"), get("body"), get("client_msg_id")
        ),
        "message.delete": lambda: MessageDelete(
            rid, get("room"), get("message_id"), get("client_msg_id")
        ),
        "message.cancel": lambda: MessageCancel(rid, get("room"), get("message_id")),
        "typing": lambda: Typing(rid, get("room"), get("active", True)),
        "history": lambda: History(
            rid,
            get("room"),
            get("before"),
            get("after"),
            min(get("limit", DEFAULT_HISTORY_LIMIT), limits.history_max_limit),
        ),
    }
    return build[kind]()


# -- running the decoder ----------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A NexusError reduced to what the client sees, for comparing two decodes."""

    error: type[NexusError]
    code: str
    message: str
    request_id: Any


def decode(decoder: Decoder, payload: bytes | bytearray | memoryview | str) -> Request | Failure:
    """Decode once; anything but a request or a NexusError fails the test."""
    try:
        req = decoder.decode(payload)
    except NexusError as exc:
        assert exc.code in ("bad_request", "too_large"), exc
        assert isinstance(exc.message, str) and exc.message
        return Failure(type(exc), exc.code, exc.message, exc.request_id)
    assert isinstance(req, REQUEST_TYPES), req
    return req


def same_id(got: Any, want: Any) -> bool:
    # 1 == True and 1 == 1.0 in Python; an id must come back as the very value and type.
    return type(got) is type(want) and got == want


def decode_repeatedly(
    limits: Limits,
    payload: bytes | bytearray | memoryview | str,
) -> Request | Failure:
    """Decode twice with one decoder and once with a fresh one: the outcomes must not
    differ (decoding is deterministic and the decoder keeps no state between frames)."""
    decoder = Decoder(limits)
    first = decode(decoder, payload)
    again = decode(decoder, payload)
    fresh = decode(Decoder(limits), payload)
    assert first == again == fresh
    assert same_id(
        first.request_id if isinstance(first, Failure) else first.id,
        fresh.request_id if isinstance(fresh, Failure) else fresh.id,
    )
    return first


def parsed(payload: bytes | bytearray | memoryview | str) -> Any:
    """The payload as the server's JSON parser reads it; None when it is not JSON."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def check_any_input(
    payload: bytes | bytearray | memoryview | str, limits: Limits = Limits()
) -> None:
    """A request or a NexusError, deterministically, and the id rule of protocol.md §3; a
    frame that is not a JSON object is bad_request (§1)."""
    outcome = decode_repeatedly(limits, payload)
    value = parsed(payload)
    want = expected_id(value)
    if not isinstance(value, dict):
        assert isinstance(outcome, Failure) and outcome.code == "bad_request", outcome
    if isinstance(outcome, Failure):
        assert same_id(outcome.request_id, want), (outcome, want)
    else:
        assert same_id(outcome.id, want), (outcome, want)


def check_against_model(obj: dict[str, Any], payload: bytes | str, limits: Limits) -> None:
    outcome = decode_repeatedly(limits, payload)
    want = model_decode(obj, limits)
    if isinstance(want, Refused):
        assert isinstance(outcome, Failure), (outcome, want)
        assert outcome.code in want.codes, (outcome, want)
        assert same_id(outcome.request_id, want.request_id), (outcome, want)
    else:
        assert not isinstance(outcome, Failure), (outcome, want)
        assert type(outcome) is type(want) and outcome == want, (outcome, want)
        assert same_id(outcome.id, want.id)


# -- strategies -------------------------------------------------------------------------------

ABSENT: Any = object()  # a field left out of the frame

# Integers orjson reads as integers: outside [-2^63, 2^64) it reads a float (see the limit test).
json_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_scalars = (
    st.none()
    | st.booleans()
    | json_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
wrong_types = (
    st.none()
    | st.booleans()
    | json_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.lists(json_scalars, max_size=2)
    | st.dictionaries(st.text(max_size=4), json_scalars, max_size=2)
)

valid_rooms = st.text(
    alphabet="".join(sorted(ROOM_CHARS)), min_size=1, max_size=128
) | st.sampled_from(["r", "x" * 128, "a.b:c@d-e_f"])
near_rooms = (
    st.sampled_from(
        ["", "x" * 129, "has space", "uni\u00e9", "abc\n", "nul\x00", "a/b", "\u0661", "r#"]
    )
    | st.text(max_size=130)
    | wrong_types
)
valid_ids = (
    st.text(max_size=ID_MAX_CHARS)
    | st.integers(-MAX_SEQ, MAX_SEQ)
    | st.sampled_from(["", "x" * 128, "\U0001f600" * 128, 0, MAX_SEQ, -MAX_SEQ])
    | st.none()
)
near_ids = (
    st.sampled_from(
        [
            "x" * 129,
            MAX_SEQ + 1,
            -MAX_SEQ - 1,
            2**64,
            10**30,
            -(10**30),
            1.0,
            1.5,
            -0.0,
            True,
            False,
            [],
            {},
            [1],
        ]
    )
    | st.text(min_size=129, max_size=140)
    | wrong_types
)
valid_text_ids = st.text(min_size=1, max_size=ID_MAX_CHARS).filter(valid_text_id) | st.sampled_from(
    ["c", "x" * 128, "\U0001f600" * 32, "\u00e9" * 64]
)
near_text_ids = st.sampled_from(["", "x" * 129, "\U0001f600" * 129]) | wrong_types
valid_seqs = st.integers(0, MAX_SEQ) | st.sampled_from([0, 1, MAX_SEQ])
near_seqs = (
    st.sampled_from(
        [-1, MAX_SEQ + 1, 2**64 - 1, 2**64, 10**30, -(2**63), 1.0, 0.0, True, False, "1"]
    )
    | st.integers(max_value=-1)
    | wrong_types
)
valid_tokens = st.text(min_size=1, max_size=40) | st.just("eyJhbGciOiJIUzI1NiJ9.e30.sig")
near_tokens = st.just("") | wrong_types


def fit(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` within ``max_bytes`` UTF-8 bytes."""
    while len(text.encode()) > max_bytes:
        text = text[:-1]
    return text


def nested(levels: int, leaf: Any = 1) -> Any:
    """``levels`` containers, lists and dicts alternating, around ``leaf``."""
    value = leaf
    for i in range(levels):
        value = {"n": value} if i % 2 else [value]
    return value


class TopOffset(NamedTuple):
    """A history ``limit`` relative to the drawn ``history_max_limit``."""

    offset: int


# Strategies are built once: building them per example costs more than the decoding.
FIELD_STRATEGIES: dict[str, tuple[SearchStrategy[Any], SearchStrategy[Any]]] = {
    # name: (valid values, near-valid values); "body", "meta" and "limit" values are then
    # fitted to the drawn Limits by fit_field.
    "token": (valid_tokens, near_tokens),
    "room": (valid_rooms, near_rooms),
    "since": (valid_seqs, near_seqs),
    "before": (valid_seqs, near_seqs),
    "after": (valid_seqs, near_seqs),
    "body": (st.text(min_size=1, max_size=100), st.just("") | st.text(min_size=1) | wrong_types),
    "client_msg_id": (valid_text_ids, near_text_ids),
    "reply_to": (valid_text_ids, near_text_ids),
    "message_id": (valid_text_ids, near_text_ids),
    "meta": (
        st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        st.integers(META_MAX_DEPTH - 2, META_MAX_DEPTH + 3).map(lambda n: {"d": nested(n - 1)})
        | st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=6)
        | st.lists(json_scalars, max_size=3)
        | wrong_types,
    ),
    "active": (st.booleans(), st.sampled_from([None, 0, 1, "true"]) | wrong_types),
    "limit": (
        st.integers(1, 300)
        | st.integers(1, MAX_SEQ)
        | st.sampled_from([1, MAX_SEQ, 2**64 - 1])
        | st.sampled_from([-1, 0, 1]).map(TopOffset),
        st.sampled_from([0, -1, -(2**63), 1.0, 10.0, True, False, "10", None]) | wrong_types,
    ),
}


def fit_field(name: str, value: Any, valid: bool, limits: Limits) -> Any:
    """Fit a drawn value to ``limits``: valid bodies and metas within them, near-valid bodies
    1-8 bytes over, limits relative to the maximum resolved."""
    if name == "body" and isinstance(value, str) and value:
        top = limits.max_body_bytes
        inside = fit(value, top) or "a"
        return inside if valid else inside + "a" * (top - len(inside.encode()) + 1 + len(value) % 8)
    if name == "meta" and valid and value is not None:
        return value if len(orjson.dumps(value)) <= limits.max_meta_bytes else {}
    if isinstance(value, TopOffset):
        return max(1, limits.history_max_limit + value.offset)
    return value


limits_strategy = st.builds(
    Limits,
    max_body_bytes=st.integers(1, 300),
    max_meta_bytes=st.integers(2, 300),
    history_max_limit=st.integers(1, 1000),
)
request_kinds = st.sampled_from(sorted(FIELDS_BY_TYPE))
near_kinds = st.sampled_from(["room.delete", "", "PING", "auth "]) | wrong_types
extra_fields = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in KNOWN_FIELDS), json_scalars, max_size=2
)
field_modes = st.sampled_from(["valid", "valid", "near", "absent"])


@st.composite
def structured_requests(draw: DrawFn) -> tuple[Limits, dict[str, Any]]:
    """Random limits, and a request object of a random type: all fields valid (optional ones
    maybe absent), or each field valid, near-valid or absent; sometimes a wrong ``type``;
    unknown extra fields."""
    limits = draw(limits_strategy)
    kind = draw(request_kinds)
    all_valid = draw(st.booleans())
    obj: dict[str, Any] = draw(extra_fields)
    obj["type"] = kind if all_valid or draw(st.integers(0, 5)) else draw(near_kinds)
    id_mode = draw(
        st.sampled_from(["valid", "absent"] if all_valid else ["valid", "near", "absent"])
    )
    if id_mode != "absent":
        obj["id"] = draw(valid_ids if id_mode == "valid" else near_ids)
    for name in FIELDS_BY_TYPE[kind]:
        mode = draw(field_modes)
        if all_valid:
            mode = "valid" if name in REQUIRED or mode != "absent" else "absent"
        if mode == "absent":
            continue
        valid, near = FIELD_STRATEGIES[name]
        obj[name] = fit_field(
            name, draw(valid if mode == "valid" else near), mode == "valid", limits
        )
    return limits, obj


def as_payload(obj: Any, form: str) -> bytes | str:
    """``obj`` as JSON text: UTF-8 bytes or str, non-ASCII escaped or raw."""
    text = json.dumps(obj, ensure_ascii=form.endswith("ascii"))
    return text if form.startswith("str") else text.encode()


payload_forms = st.sampled_from(["bytes-ascii", "bytes-utf8", "str-ascii", "str-utf8"])
containers: SearchStrategy[Callable[[bytes], bytes | bytearray | memoryview]] = st.sampled_from(
    [bytes, bytearray, memoryview]
)


VALID_FRAMES = [
    json.dumps(obj, ensure_ascii=False).encode()
    for obj in (
        {"type": "auth", "id": 1, "token": "eyJhbGciOiJIUzI1NiJ9.e30.sig"},
        {"type": "ping", "id": "p\u00e9"},
        {"type": "room.join", "id": -7, "room": "general", "since": 41},
        {"type": "room.leave", "id": "l", "room": "a.b:c@d-e_f"},
        {
            "type": "message.send",
            "id": "s",
            "room": "r",
            "body": "h\u00e9llo \U0001f600",
            "client_msg_id": "c-1",
            "reply_to": "m-9",
            "meta": {"k": [1, 2.5, None, True]},
        },
        {"type": "message.edit", "id": 9, "room": "r", "message_id": "m", "body": "x"},
        {"type": "message.delete", "id": 10, "room": "r", "message_id": "m", "client_msg_id": "c"},
        {"type": "typing", "id": 11, "room": "r", "active": False},
        {"type": "history", "id": "h", "room": "r", "before": 120, "limit": 5},
    )
]


@st.composite
def mutated_frames(draw: DrawFn) -> bytes:
    """A valid request's bytes with a splice: truncation, junk, or invalid UTF-8."""
    data = draw(st.sampled_from(VALID_FRAMES))
    at = draw(st.integers(0, len(data)))
    cut = draw(st.integers(0, min(4, len(data) - at)))
    junk = draw(
        st.binary(max_size=4)
        | st.sampled_from(
            [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\\ud800", b'"']
        )
    )
    return data[:at] + junk + data[at + cut :]


# -- properties: any input --------------------------------------------------------------------


@fuzz
@given(st.binary(max_size=300) | mutated_frames(), containers)
@example(b"\xef\xbb\xbf{}", bytes)
@example(b'{"type":"ping","id":"\xff"}', bytes)
@example(b'{"type":"ping","id":7}\x00', bytes)
def test_random_bytes_give_a_request_or_a_nexus_error(
    data: bytes, container: Callable[[bytes], bytes | bytearray | memoryview]
) -> None:
    """Random bytes and corrupted frames (invalid UTF-8, truncation, junk): a request or a
    NexusError, the same each time, with the frame's id when it had a usable one."""
    check_any_input(container(data))


any_chars = st.characters(exclude_categories=())  # surrogates included


@fuzz
@given(
    st.text(any_chars, max_size=100)
    | st.builds(
        lambda obj, tail: json.dumps(obj)[:-1] + tail,
        st.fixed_dictionaries({"type": st.just("ping"), "id": valid_ids}),
        st.text(any_chars, max_size=5) | st.just("}"),
    )
)
@example('{"type": "ping", "id": "\ud800"}')
@example('{"type": "ping", "id": 3, "x": "\udfff"}')
def test_random_text_gives_a_request_or_a_nexus_error(text: str) -> None:
    """Frames handed over as ``str``, lone surrogates included."""
    check_any_input(text)


json_values_any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(sorted(KNOWN_FIELDS)) | st.text(max_size=8), children, max_size=6
        )
    ),
    max_leaves=12,
)


@fuzz
@given(json_values_any, payload_forms)
@example({"type": "ping", "id": float("nan")}, "bytes-ascii")
@example({"type": "ping", "id": 10**400}, "bytes-ascii")
@example({"type": "ping", "id": 7, "x": float("inf")}, "bytes-ascii")
def test_random_json_values_give_a_request_or_a_nexus_error(value: Any, form: str) -> None:
    """Any JSON value (NaN, infinities and integers of any size included, written as Python's
    json writes them): a request or a NexusError, with the documented id."""
    check_any_input(as_payload(value, form))


# -- properties: structured requests against the model ----------------------------------------


@fuzz
@given(structured_requests(), payload_forms)
def test_structured_requests_decode_as_documented(
    request: tuple[Limits, dict[str, Any]], form: str
) -> None:
    """Per request type, valid and near-valid fields (wrong types, boundary lengths, unicode,
    huge integers, negative seqs, unknown extras): valid frames decode to the request with the
    frame's field values; others get a documented error code carrying the frame's id."""
    limits, obj = request
    check_against_model(obj, as_payload(obj, form), limits)


# -- documented limits at their boundaries ----------------------------------------------------

wide_text = st.text(st.characters(codec="utf-8"), min_size=1)  # no surrogates in UTF-8


@fuzz
@given(st.integers(1, 400), wide_text, st.sampled_from(["message.send", "message.edit"]))
def test_body_limit_counts_utf8_bytes(limit: int, text: str, kind: str) -> None:
    """A body of exactly ``max_body_bytes`` UTF-8 bytes passes; one byte more is too_large."""
    decoder = Decoder(Limits(max_body_bytes=limit))
    body = fit(text, limit)
    body += "a" * (limit - len(body.encode()))
    frame = {"type": kind, "id": "b", "room": "r", "message_id": "m", "body": body}
    req = decoder.decode(orjson.dumps(frame))
    assert isinstance(req, MessageSend | MessageEdit) and req.body == body
    with pytest.raises(NexusError) as info:
        decoder.decode(orjson.dumps({**frame, "body": body + "a"}))
    assert (info.value.code, info.value.request_id) == ("too_large", "b")


# Characters compact JSON writes as themselves: no control characters, quotes or backslashes.
plain_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters='"\\'), min_size=1
)


@fuzz
@given(st.integers(8, 400), plain_text)
def test_meta_limit_counts_compact_json_bytes(limit: int, text: str) -> None:
    """``meta`` of exactly ``max_meta_bytes`` bytes as compact JSON passes; one more is
    too_large (non-ASCII counted as UTF-8, as the compact form writes it)."""
    decoder = Decoder(Limits(max_meta_bytes=limit))
    value = fit(text, limit - len(b'{"k":""}'))
    value += "v" * (limit - len(b'{"k":""}') - len(value.encode()))
    meta = {"k": value}
    assert len(json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode()) == limit
    frame = {"type": "message.send", "id": 5, "room": "r", "body": "x", "meta": meta}
    req = decoder.decode(json.dumps(frame))
    assert isinstance(req, MessageSend) and req.meta == meta
    with pytest.raises(NexusError) as info:
        decoder.decode(json.dumps({**frame, "meta": {"k": value + "v"}}))
    assert (info.value.code, info.value.request_id) == ("too_large", 5)


@pytest.mark.parametrize(
    "levels", [1, META_MAX_DEPTH - 1, META_MAX_DEPTH, META_MAX_DEPTH + 1, META_MAX_DEPTH + 50]
)
def test_meta_nesting_limit(levels: int) -> None:
    """``meta`` nested up to 254 levels (``meta`` itself is one) passes; deeper is bad_request."""
    meta = {"d": nested(levels - 1)}
    assert depth(meta) == levels
    frame = {"type": "message.send", "id": "n", "room": "r", "body": "x", "meta": meta}
    outcome = decode(Decoder(), json.dumps(frame))  # orjson will not write it that deep
    if levels <= META_MAX_DEPTH:
        assert isinstance(outcome, MessageSend) and outcome.meta == meta
    else:
        assert isinstance(outcome, Failure)
        assert (outcome.code, outcome.request_id) == ("bad_request", "n")


clamp_limits = (
    st.sampled_from([-1, 0, 1]).map(TopOffset)
    | st.sampled_from([1, MAX_SEQ])
    | st.integers(1, 2000)
    | st.integers(1, MAX_SEQ)
)


@fuzz
@given(st.integers(1, 1000), st.data())
def test_history_limit_is_clamped(top: int, data: st.DataObject) -> None:
    """``limit`` above ``history_max_limit`` is lowered to it; at or below it is kept; absent
    it is 50, clamped the same way."""
    limit = data.draw(clamp_limits)
    if isinstance(limit, TopOffset):
        limit = max(1, top + limit.offset)
    decoder = Decoder(Limits(history_max_limit=top))
    req = decoder.decode(orjson.dumps({"type": "history", "room": "r", "limit": limit}))
    assert isinstance(req, History) and req.limit == min(limit, top)
    req = decoder.decode(b'{"type": "history", "room": "r"}')
    assert isinstance(req, History) and req.limit == min(DEFAULT_HISTORY_LIMIT, top)


@pytest.mark.parametrize("limit", [2**63, 2**64 - 1])
def test_history_limit_clamps_integers_up_to_64_bits(limit: int) -> None:
    """protocol.md §4.9: an integer ``limit`` >= 1 above the maximum is lowered silently."""
    req = decode(
        Decoder(), json.dumps({"type": "history", "id": 1, "room": "r", "limit": limit}).encode()
    )
    assert isinstance(req, History), req
    assert req.limit == Limits().history_max_limit


@pytest.mark.parametrize("limit", [2**64, 10**30])
def test_history_limit_beyond_64_bits_is_not_an_integer(limit: int) -> None:
    """protocol.md §4.9: integers are JSON numbers up to 2^64-1; the parser reads larger ones
    as floats, and a float limit is refused like any other non-integer."""
    outcome = decode(
        Decoder(), json.dumps({"type": "history", "id": 1, "room": "r", "limit": limit}).encode()
    )
    assert isinstance(outcome, Failure) and outcome.code == "bad_request", outcome

"""RFC 6455 conformance of the gateway, driven byte by byte over raw sockets.

The groups follow the Autobahn testsuite's server cases, adapted to our JSON protocol:
where Autobahn expects an echo, we send a JSON ``ping`` request and expect its ``pong``
event (or an ``error`` event where our protocol says so).

Groups, the Autobahn cases each mirrors, and what they check:

- handshake (RFC 6455 4.2): version 13 only, else 426 with ``Sec-WebSocket-Version: 13``
  and a JSON body; the key (400), the Upgrade (426) and Connection tokens; 404.
- framing (1.1.x, 1.2.x): payload lengths across the 7-, 16- and 64-bit encodings,
  non-minimal lengths (1002), byte-by-byte and batched writes, binary frames.
- pings (2.1-2.11): a PONG echoes its PING's payload; oversized (2.5) and fragmented
  PINGs fail; unsolicited PONGs are ignored; ten PINGs get ten PONGs in order.
- reserved bits (3.1-3.7): RSV1/2/3 on data and control frames fail the connection (no
  extension is negotiated); a request before the bad frame is still answered.
- opcodes (4.1.x, 4.2.x): reserved data (3-7) and control (0xB-0xF) opcodes fail it.
- fragmentation (5.1-5.20): messages reassembled; empty fragments; control frames
  between fragments; CONTINUATION with nothing to continue; a new message mid-message.
- UTF-8 (6.2-6.4): valid multi-byte text passes, also cut mid-character by fragments;
  invalid UTF-8 closes 1007, also when spread over fragments.
- close (7.1.x, 7.3.x, 7.5.1, 7.7.x, 7.9.x): the close handshake, valid codes echoed,
  invalid codes and payloads fail (1002, 1007), frames after the client's CLOSE ignored.
- masking (RFC 6455 5.1): an unmasked client frame fails the connection.
- limits (9.1.x, 9.2.x scaled to ``max_frame_bytes`` = 4096): a message of exactly the
  limit passes, whole or fragmented; one byte more closes 1009, fragmented or not.

Where the server fails a connection, ``RawWebSocket.expect_close`` also checks that its
CLOSE frame is the next thing on the wire and that nothing follows it before TCP ends.
Cases that make sense before authentication run both ``authed`` and ``preauth``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from .harness import ServerProcess, module_server, token
from .rawws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    RSV1,
    RSV2,
    RSV3,
    TEXT,
    ByteStream,
    HttpResponse,
    RawWebSocket,
    build_frame,
    close_payload,
    text,
    upgrade,
)

SMALL_FRAME = 4096
small_server = module_server(max_frame_bytes=SMALL_FRAME, max_body_bytes=2048, max_meta_bytes=1024)

PROTOCOL_ERROR = 1002
INVALID_TEXT = 1007
MESSAGE_TOO_BIG = 1009

SESSION = pytest.mark.parametrize("authed", [True, False], ids=["authed", "preauth"])

_users = itertools.count()


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    """Close whatever sockets a test left open (a failed assertion skips its own cleanup)."""
    yield
    ByteStream.close_all()


# -- helpers ------------------------------------------------------------------------------------


async def authenticate(ws: RawWebSocket) -> None:
    """Send ``auth`` for a fresh user (fresh rate buckets) and expect ``auth.ok``."""
    await ws.send_text({"type": "auth", "id": "auth", "token": token(f"conf{next(_users)}")})
    event = await ws.recv_event()
    assert (event["type"], event["id"]) == ("auth.ok", "auth"), event


async def connect(srv: ServerProcess, authed: bool = True) -> RawWebSocket:
    ws = await RawWebSocket.connect(srv.port)
    if authed:
        await authenticate(ws)
    return ws


async def assert_alive(ws: RawWebSocket, authed: bool = True) -> None:
    """The connection still serves requests: a ``ping`` (or, before auth, ``auth``) round trip."""
    if authed:
        await ws.ping_roundtrip()
    else:
        await authenticate(ws)
    ws.close_transport()


async def assert_fails(ws: RawWebSocket, code: int) -> None:
    """The next frame is the server's CLOSE with ``code``; then TCP ends, nothing after."""
    got, reason = await ws.expect_close()
    assert got == code, f"expected close {code}, got {got} {reason!r}"


async def expect_pong(ws: RawWebSocket, payload: bytes) -> None:
    frame = await ws.recv_frame()
    assert (frame.opcode, frame.fin, frame.rsv) == (PONG, True, 0), frame
    assert frame.payload == payload, frame


def ping_json(rid: Any = "p") -> bytes:
    return orjson.dumps({"type": "ping", "id": rid})


def padded_ping(rid: Any, size: int) -> bytes:
    """A ``ping`` request padded with trailing whitespace to exactly ``size`` bytes."""
    body = ping_json(rid)
    assert len(body) <= size
    return body + b" " * (size - len(body))


def split(payload: bytes, parts: int) -> list[bytes]:
    """``payload`` cut into ``parts`` byte ranges as even as possible (empty ones allowed)."""
    step, extra = divmod(len(payload), parts)
    out, pos = [], 0
    for i in range(parts):
        n = step + (1 if i < extra else 0)
        out.append(payload[pos : pos + n])
        pos += n
    return out


def fragmented(pieces: list[bytes], opcode: int = TEXT) -> bytes:
    """One message as ``opcode`` (FIN=0) + CONTINUATION frames, the last with FIN=1."""
    frames = []
    for i, piece in enumerate(pieces):
        frames.append(
            build_frame(opcode if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
        )
    return b"".join(frames)


async def expect_pong_event(ws: RawWebSocket, rid: Any) -> None:
    event = await ws.recv_event()
    assert (event["type"], event["id"]) == ("pong", rid), event


async def expect_error_event(ws: RawWebSocket, code: str) -> None:
    event = await ws.recv_event()
    assert (event["type"], event["code"]) == ("error", code), event


# -- handshake (RFC 6455 4.2) -------------------------------------------------------------------


def accept_for(key: str) -> str:
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Connection": "keep-alive, Upgrade"},  # what Firefox sends
        {"Connection": "upgrade"},
        {"Upgrade": "WebSocket"},
    ],
    ids=["plain", "connection-keep-alive-upgrade", "connection-lowercase", "upgrade-mixed-case"],
)
async def test_handshake_accepted(server: ServerProcess, headers: dict[str, str | None]) -> None:
    key = base64.b64encode(b"conformance-key!").decode()
    answer = await upgrade(server.port, headers={"Sec-WebSocket-Key": key, **headers})
    assert isinstance(answer, RawWebSocket), answer
    assert answer.headers.get("sec-websocket-accept") == accept_for(key)
    assert answer.headers.get("upgrade", "").lower() == "websocket"
    await authenticate(answer)
    await assert_alive(answer)


def assert_json_error(answer: HttpResponse, code: str) -> None:
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    error = answer.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str), answer


@pytest.mark.parametrize(
    "version", ["8", "7", "12", "14", None], ids=["v8", "v7", "v12", "v14", "missing"]
)
async def test_handshake_other_version_gets_426(server: ServerProcess, version: str | None) -> None:
    answer = await upgrade(server.port, headers={"Sec-WebSocket-Version": version})
    assert isinstance(answer, HttpResponse), "upgraded with an unsupported version"
    assert answer.status == 426, answer
    assert answer.headers.get("sec-websocket-version") == "13", answer
    assert_json_error(answer, "bad_request")


async def test_handshake_without_upgrade_header_gets_426(server: ServerProcess) -> None:
    answer = await upgrade(server.port, headers={"Upgrade": None})
    assert isinstance(answer, HttpResponse) and answer.status == 426, answer
    assert_json_error(answer, "bad_request")


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "abc",
        "!!!!not-base64!!!!",
        base64.b64encode(b"fifteen bytes!!").decode(),
        base64.b64encode(b"seventeen bytes!!").decode(),
    ],
    ids=["missing", "empty", "short", "not-base64", "15-bytes", "17-bytes"],
)
async def test_handshake_bad_key_gets_400(server: ServerProcess, key: str | None) -> None:
    answer = await upgrade(server.port, headers={"Sec-WebSocket-Key": key})
    assert isinstance(answer, HttpResponse) and answer.status == 400, answer


async def test_handshake_unknown_path_gets_404(server: ServerProcess) -> None:
    answer = await upgrade(server.port, path="/nowhere")
    assert isinstance(answer, HttpResponse) and answer.status == 404, answer
    assert_json_error(answer, "not_found")


# -- framing (Autobahn 1.1.x, 1.2.x) ------------------------------------------------------------


async def test_empty_text_frame_is_bad_request(server: ServerProcess) -> None:
    ws = await connect(server)
    await ws.send_frame(TEXT, b"")
    await expect_error_event(ws, "bad_request")
    await assert_alive(ws)


@pytest.mark.parametrize("size", [125, 126, 127, 128, 65535, 65536], ids=lambda n: f"len{n}")
async def test_text_frame_lengths(server: ServerProcess, size: int) -> None:
    """7-bit (125), 16-bit (126..65535) and 64-bit (65536 = max_frame_bytes) lengths."""
    ws = await connect(server)
    await ws.send_frame(TEXT, padded_ping(size, size))
    await expect_pong_event(ws, size)
    await assert_alive(ws)


@pytest.mark.parametrize(
    "size, form",
    [(40, 16), (125, 16), (40, 64), (200, 64), (65535, 64)],
    ids=["40-as-16bit", "125-as-16bit", "40-as-64bit", "200-as-64bit", "65535-as-64bit"],
)
async def test_non_minimal_length_fails(server: ServerProcess, size: int, form: int) -> None:
    ws = await connect(server)
    await ws.send_frame(TEXT, padded_ping("nonminimal", size), length_form=form)
    await assert_fails(ws, PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "size, piece",
    [(40, 1), (300, 1), (300, 7)],
    ids=["short-bytewise", "16bit-bytewise", "16bit-7-byte-writes"],
)
async def test_frame_in_tiny_writes(server: ServerProcess, size: int, piece: int) -> None:
    ws = await connect(server)
    await ws.send_in_pieces(build_frame(TEXT, padded_ping("slow", size)), piece)
    await expect_pong_event(ws, "slow")
    await assert_alive(ws)


async def test_many_frames_in_one_write_answered_in_order(server: ServerProcess) -> None:
    ws = await connect(server)
    await ws.send_raw(b"".join(text({"type": "ping", "id": i}) for i in range(20)))
    for i in range(20):
        await expect_pong_event(ws, i)
    await assert_alive(ws)


@SESSION
@pytest.mark.parametrize(
    "payload", [b"", ping_json(), b"\x00\xff\xfe"], ids=["empty", "json", "bytes"]
)
async def test_binary_frame_is_bad_request(
    server: ServerProcess, authed: bool, payload: bytes
) -> None:
    ws = await connect(server, authed)
    await ws.send_frame(BINARY, payload)
    await expect_error_event(ws, "bad_request")
    await assert_alive(ws, authed)


# -- pings and pongs (Autobahn 2.x) -------------------------------------------------------------

PING_PAYLOADS = {
    "empty": b"",
    "text": b"Hello, world!",
    "binary": b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff",
    "125-text": b"*" * 125,
    "125-binary": bytes(range(125)),
}


@SESSION
@pytest.mark.parametrize("payload", list(PING_PAYLOADS.values()), ids=list(PING_PAYLOADS))
async def test_ping_gets_pong_with_same_payload(
    server: ServerProcess, authed: bool, payload: bytes
) -> None:
    ws = await connect(server, authed)
    await ws.send_frame(PING, payload)
    await expect_pong(ws, payload)
    await assert_alive(ws, authed)


@SESSION
async def test_ping_payload_over_125_fails(server: ServerProcess, authed: bool) -> None:
    ws = await connect(server, authed)
    await ws.send_frame(PING, b"x" * 126, length_form=16)
    await assert_fails(ws, PROTOCOL_ERROR)


@SESSION
@pytest.mark.parametrize("opcode", [PING, PONG], ids=["ping", "pong"])
async def test_fragmented_control_frame_fails(
    server: ServerProcess, authed: bool, opcode: int
) -> None:
    """Autobahn 5.1, 5.2: a control frame with FIN=0."""
    ws = await connect(server, authed)
    await ws.send_raw(build_frame(opcode, b"frag", fin=False) + build_frame(CONTINUATION, b"ment"))
    await assert_fails(ws, PROTOCOL_ERROR)


@SESSION
@pytest.mark.parametrize("payload", [b"", b"unsolicited"], ids=["empty", "payload"])
async def test_unsolicited_pong_is_ignored(
    server: ServerProcess, authed: bool, payload: bytes
) -> None:
    ws = await connect(server, authed)
    await ws.send_frame(PONG, payload)
    await assert_alive(ws, authed)


@pytest.mark.parametrize("separate_writes", [False, True], ids=["one-write", "ten-writes"])
async def test_ten_pings_get_ten_pongs_in_order(
    server: ServerProcess, separate_writes: bool
) -> None:
    ws = await connect(server)
    frames = [build_frame(PING, f"ping-{i}".encode()) for i in range(10)]
    if separate_writes:
        for frame in frames:
            await ws.send_raw(frame)
    else:
        await ws.send_raw(b"".join(frames))
    for i in range(10):
        await expect_pong(ws, f"ping-{i}".encode())
    await assert_alive(ws)


# -- reserved bits (Autobahn 3.x) ---------------------------------------------------------------

RSV_CASES = [
    *[(TEXT, rsv) for rsv in range(1, 8)],
    (BINARY, RSV1),
    (BINARY, RSV1 | RSV3),
    (PING, RSV2),
    (PING, RSV2 | RSV3),
    (PONG, RSV1),
    (CLOSE, RSV1),
    (CLOSE, RSV1 | RSV2 | RSV3),
]
OPCODE_NAMES = {
    CONTINUATION: "cont",
    TEXT: "text",
    BINARY: "binary",
    CLOSE: "close",
    PING: "ping",
    PONG: "pong",
}


def rsv_id(case: tuple[int, int]) -> str:
    opcode, rsv = case
    bits = "+".join(f"rsv{i}" for i, bit in ((1, RSV1), (2, RSV2), (3, RSV3)) if rsv & bit)
    return f"{OPCODE_NAMES[opcode]}-{bits}"


def rsv_payload(opcode: int) -> bytes:
    """What a frame of ``opcode`` would carry if the bits were ignored: a request, a code."""
    if opcode == CLOSE:
        return close_payload(1000)
    if opcode in (PING, PONG):
        return b"rsv"
    return ping_json("rsv")


@SESSION
@pytest.mark.parametrize("case", RSV_CASES, ids=[rsv_id(c) for c in RSV_CASES])
async def test_reserved_bits_fail(
    server: ServerProcess, authed: bool, case: tuple[int, int]
) -> None:
    opcode, rsv = case
    ws = await connect(server, authed)
    await ws.send_frame(opcode, rsv_payload(opcode), rsv=rsv)
    await assert_fails(ws, PROTOCOL_ERROR)


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "bytewise"])
@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3], ids=["rsv1", "rsv2", "rsv3"])
async def test_reserved_bits_after_valid_request(
    server: ServerProcess, rsv: int, bytewise: bool
) -> None:
    """Autobahn 3.2-3.4: the valid request is answered, then the connection fails; the PING
    that followed the bad frame gets no PONG."""
    ws = await connect(server)
    data = (
        text({"type": "ping", "id": "before"})
        + build_frame(TEXT, ping_json("rsv"), rsv=rsv)
        + build_frame(PING, b"after")
    )
    if bytewise:
        await ws.send_in_pieces(data)
    else:
        await ws.send_raw(data)
    await expect_pong_event(ws, "before")
    await assert_fails(ws, PROTOCOL_ERROR)


# -- opcodes (Autobahn 4.x) ---------------------------------------------------------------------

RESERVED_OPCODES = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]


@SESSION
@pytest.mark.parametrize("payload", [b"", b"reserved"], ids=["empty", "payload"])
@pytest.mark.parametrize("opcode", RESERVED_OPCODES, ids=lambda op: f"op{op:#x}")
async def test_reserved_opcode_fails(
    server: ServerProcess, authed: bool, opcode: int, payload: bytes
) -> None:
    ws = await connect(server, authed)
    await ws.send_frame(opcode, payload)
    await assert_fails(ws, PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [5, 0xD], ids=lambda op: f"op{op:#x}")
async def test_reserved_opcode_after_valid_request(server: ServerProcess, opcode: int) -> None:
    """Autobahn 4.1.3, 4.2.3, at the NON-STRICT level: picows parses one frame ahead and
    fails the connection on the bad opcode before the frame in front of it is handled, so
    that frame's answer may be missing; nothing may follow the close frame, and the pong for
    the PING behind the bad frame never comes."""
    ws = await connect(server)
    await ws.send_raw(
        text({"type": "ping", "id": "before"})
        + build_frame(opcode, b"x")
        + build_frame(PING, b"after")
    )
    first = await ws.recv_frame()
    if first.opcode != CLOSE:
        assert orjson.loads(first.payload) == {
            **orjson.loads(first.payload),
            "type": "pong",
            "id": "before",
        }
        await assert_fails(ws, PROTOCOL_ERROR)
    else:
        assert first.close_code() == PROTOCOL_ERROR
        await ws.send_close(PROTOCOL_ERROR)
        await ws.expect_eof()


# -- fragmentation (Autobahn 5.x) ---------------------------------------------------------------


@pytest.mark.parametrize("parts", [2, 3, 16, 0], ids=["2", "3", "16", "every-byte"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "bytewise"])
async def test_fragmented_text_is_one_request(
    server: ServerProcess, parts: int, bytewise: bool
) -> None:
    """Autobahn 5.3-5.5 (5.5: frames sent one by one)."""
    ws = await connect(server)
    payload = ping_json("frag")
    data = fragmented(split(payload, parts or len(payload)))
    if bytewise:
        await ws.send_in_pieces(data)
    else:
        await ws.send_raw(data)
    await expect_pong_event(ws, "frag")
    await assert_alive(ws)  # answered once: the next event is the barrier's pong


@pytest.mark.parametrize(
    "pieces",
    [
        [b"", b'{"type":"ping",', b"", b'"id":"frag"}'],
        [b'{"type":"ping","id":"frag"}', b""],
        [b"", b'{"type":"ping","id":"frag"}'],
        [b"", b"", b'{"type":"ping","id":"frag"}', b"", b""],
    ],
    ids=["empty-middle", "empty-last", "empty-first", "empty-around"],
)
async def test_fragments_may_be_empty(server: ServerProcess, pieces: list[bytes]) -> None:
    ws = await connect(server)
    await ws.send_raw(fragmented(pieces))
    await expect_pong_event(ws, "frag")
    await assert_alive(ws)


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "bytewise"])
async def test_ping_between_fragments(server: ServerProcess, bytewise: bool) -> None:
    """Autobahn 5.6-5.8: the PONG comes before the reply to the message it interrupted."""
    ws = await connect(server)
    first, second = split(ping_json("frag"), 2)
    data = (
        build_frame(TEXT, first, fin=False)
        + build_frame(PING, b"between")
        + build_frame(CONTINUATION, second)
    )
    if bytewise:
        await ws.send_in_pieces(data)
    else:
        await ws.send_raw(data)
    await expect_pong(ws, b"between")
    await expect_pong_event(ws, "frag")
    await assert_alive(ws)


async def test_unsolicited_pong_between_fragments(server: ServerProcess) -> None:
    ws = await connect(server)
    first, second = split(ping_json("frag"), 2)
    await ws.send_raw(
        build_frame(TEXT, first, fin=False)
        + build_frame(PONG, b"between")
        + build_frame(CONTINUATION, second)
    )
    await expect_pong_event(ws, "frag")
    await assert_alive(ws)


@SESSION
@pytest.mark.parametrize("fin", [True, False], ids=["fin", "no-fin"])
async def test_continuation_without_start_fails(
    server: ServerProcess, authed: bool, fin: bool
) -> None:
    """Autobahn 5.9-5.12."""
    ws = await connect(server, authed)
    await ws.send_raw(build_frame(CONTINUATION, ping_json("orphan"), fin=fin))
    await assert_fails(ws, PROTOCOL_ERROR)


@SESSION
@pytest.mark.parametrize(
    "start, interloper",
    [(TEXT, TEXT), (TEXT, BINARY), (BINARY, TEXT), (BINARY, BINARY)],
    ids=["text-then-text", "text-then-binary", "binary-then-text", "binary-then-binary"],
)
async def test_new_message_during_fragmented_one_fails(
    server: ServerProcess, authed: bool, start: int, interloper: int
) -> None:
    """Autobahn 5.15-5.20 shape: a start frame where a CONTINUATION was due."""
    ws = await connect(server, authed)
    first, second = split(ping_json("frag"), 2)
    await ws.send_raw(
        build_frame(start, first, fin=False)
        + build_frame(interloper, ping_json("interloper"))
        + build_frame(CONTINUATION, second)
    )
    await assert_fails(ws, PROTOCOL_ERROR)


@SESSION
async def test_fragmented_binary_is_one_bad_request(server: ServerProcess, authed: bool) -> None:
    ws = await connect(server, authed)
    await ws.send_raw(fragmented([b"\x00\x01", b"\x02", b"\x03"], BINARY))
    await expect_error_event(ws, "bad_request")
    await assert_alive(ws, authed)  # one error only: the next event answers the barrier


# -- UTF-8 (Autobahn 6.x) -----------------------------------------------------------------------

MULTIBYTE_ID = "ĸ κόσμε € 𝄞 \U0010ffff"  # 2-, 3- and 4-byte characters, the last code point


@pytest.mark.parametrize("parts", [1, 2, 0], ids=["whole", "2-fragments", "every-byte"])
async def test_valid_multibyte_text(server: ServerProcess, parts: int) -> None:
    """Autobahn 6.2.x, 6.5.x: fragments may cut a character; only the message must be valid."""
    ws = await connect(server)
    payload = ping_json(MULTIBYTE_ID)
    await ws.send_raw(fragmented(split(payload, parts or len(payload))))
    await expect_pong_event(ws, MULTIBYTE_ID)
    await assert_alive(ws)


INVALID_UTF8 = {
    # Autobahn 6.3.1: "κόσμε" then a UTF-16 surrogate, then "edited"
    "autobahn-6.3.1": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    "lone-continuation": b"\x80",
    "overlong-slash": b"\xc0\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "byte-fe": b"\xfe",
    "truncated-at-end": b"\xce",
}


def in_json_ping(raw: bytes) -> bytes:
    """``raw`` inside the id string of an otherwise valid ``ping``."""
    return b'{"type":"ping","id":"' + raw + b'"}'


@SESSION
@pytest.mark.parametrize("wrap", [False, True], ids=["bare", "in-json"])
@pytest.mark.parametrize("raw", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
async def test_invalid_utf8_fails(
    server: ServerProcess, authed: bool, raw: bytes, wrap: bool
) -> None:
    ws = await connect(server, authed)
    await ws.send_frame(TEXT, in_json_ping(raw) if wrap else raw)
    await assert_fails(ws, INVALID_TEXT)


@pytest.mark.parametrize("parts", [2, 3, 0], ids=["2-fragments", "3-fragments", "every-byte"])
@pytest.mark.parametrize(
    "raw",
    [INVALID_UTF8["autobahn-6.3.1"], INVALID_UTF8["surrogate"]],
    ids=["autobahn-6.3.1", "surrogate"],
)
async def test_invalid_utf8_across_fragments_fails(
    server: ServerProcess, raw: bytes, parts: int
) -> None:
    """Autobahn 6.4.x: checked on the whole message, wherever the fragments cut it."""
    ws = await connect(server)
    payload = in_json_ping(raw)
    await ws.send_raw(fragmented(split(payload, parts or len(payload))))
    await assert_fails(ws, INVALID_TEXT)


# -- close handling (Autobahn 7.x) --------------------------------------------------------------


@SESSION
async def test_close_without_payload_gets_1000(server: ServerProcess, authed: bool) -> None:
    """Autobahn 7.3.1."""
    ws = await connect(server, authed)
    await ws.send_close()
    assert (await ws.expect_close())[0] == 1000


VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@SESSION
@pytest.mark.parametrize("code", VALID_CLOSE_CODES, ids=str)
async def test_close_valid_code_is_echoed(server: ServerProcess, authed: bool, code: int) -> None:
    """Autobahn 7.7.x."""
    ws = await connect(server, authed)
    await ws.send_close(code, b"bye")
    assert (await ws.expect_close())[0] == code


@SESSION
@pytest.mark.parametrize("code", INVALID_CLOSE_CODES, ids=str)
async def test_close_invalid_code_fails(server: ServerProcess, authed: bool, code: int) -> None:
    """Autobahn 7.9.x."""
    ws = await connect(server, authed)
    await ws.send_close(code)
    await assert_fails(ws, PROTOCOL_ERROR)


@SESSION
async def test_close_one_byte_payload_fails(server: ServerProcess, authed: bool) -> None:
    """Autobahn 7.3.2."""
    ws = await connect(server, authed)
    await ws.send_frame(CLOSE, b"\x03")
    await assert_fails(ws, PROTOCOL_ERROR)


async def test_close_with_123_byte_reason_is_echoed(server: ServerProcess) -> None:
    """Autobahn 7.3.5: the longest reason that fits a control frame, multi-byte UTF-8."""
    reason = ("é" * 61 + "!").encode()
    assert len(reason) == 123
    ws = await connect(server)
    await ws.send_close(1000, reason)
    assert (await ws.expect_close())[0] == 1000


async def test_close_with_124_byte_reason_fails(server: ServerProcess) -> None:
    """Autobahn 7.3.6: a 126-byte CLOSE payload is over the control frame limit."""
    ws = await connect(server)
    await ws.send_frame(CLOSE, close_payload(1000, b"r" * 124), length_form=16)
    await assert_fails(ws, PROTOCOL_ERROR)


@SESSION
async def test_close_reason_invalid_utf8_fails(server: ServerProcess, authed: bool) -> None:
    """Autobahn 7.5.1."""
    ws = await connect(server, authed)
    await ws.send_close(1000, INVALID_UTF8["autobahn-6.3.1"])
    await assert_fails(ws, INVALID_TEXT)


@pytest.mark.parametrize("after", ["ping-request", "ping-frame", "second-close", "fragment"])
async def test_frames_after_client_close_are_ignored(server: ServerProcess, after: str) -> None:
    """Autobahn 7.1.2-7.1.5: nothing the client sends after its CLOSE is answered."""
    trailing = {
        "ping-request": text({"type": "ping", "id": "after-close"}),
        "ping-frame": build_frame(PING, b"after-close"),
        "second-close": build_frame(CLOSE, close_payload(1001)),
        "fragment": build_frame(TEXT, b'{"type":', fin=False),
    }[after]
    ws = await connect(server)
    await ws.send_raw(build_frame(CLOSE, close_payload(1000)) + trailing)
    # picows parses one frame ahead: a second CLOSE in the same read is refused (1002)
    # before the first is echoed. Either way nothing is answered after the close.
    expected = (1000, PROTOCOL_ERROR) if after == "second-close" else (1000,)
    assert (await ws.expect_close(echo=False))[0] in expected


async def test_close_in_the_middle_of_a_fragmented_message(server: ServerProcess) -> None:
    """Autobahn 7.1.5: text fragment, CLOSE, then the rest: the close is echoed, no reply."""
    ws = await connect(server)
    first, second = split(ping_json("frag"), 2)
    await ws.send_raw(
        build_frame(TEXT, first, fin=False)
        + build_frame(CLOSE, close_payload(1000))
        + build_frame(CONTINUATION, second)
    )
    assert (await ws.expect_close(echo=False))[0] == 1000


# -- masking (RFC 6455 5.1) ---------------------------------------------------------------------


@SESSION
@pytest.mark.parametrize(
    "opcode, payload",
    [
        (TEXT, ping_json("unmasked")),
        (BINARY, b"\x00"),
        (PING, b"unmasked"),
        (CLOSE, close_payload(1000)),
    ],
    ids=["text", "binary", "ping", "close"],
)
async def test_unmasked_frame_fails(
    server: ServerProcess, authed: bool, opcode: int, payload: bytes
) -> None:
    ws = await connect(server, authed)
    await ws.send_frame(opcode, payload, masked=False)
    await assert_fails(ws, PROTOCOL_ERROR)


# -- limits (Autobahn 9.1.x, 9.2.x scaled to max_frame_bytes = 4096) ----------------------------


async def test_frame_of_exactly_max_frame_bytes(small_server: ServerProcess) -> None:
    ws = await connect(small_server)
    await ws.send_frame(TEXT, padded_ping("max", SMALL_FRAME))
    await expect_pong_event(ws, "max")
    await assert_alive(ws)


async def test_frame_one_byte_over_max_frame_bytes_fails(small_server: ServerProcess) -> None:
    ws = await connect(small_server)
    await ws.send_frame(TEXT, padded_ping("max", SMALL_FRAME + 1))
    await assert_fails(ws, MESSAGE_TOO_BIG)


@pytest.mark.parametrize("parts", [1, 4, 64])
async def test_message_of_max_frame_bytes_in_fragments(
    small_server: ServerProcess, parts: int
) -> None:
    ws = await connect(small_server)
    await ws.send_raw(fragmented(split(padded_ping("max", SMALL_FRAME), parts)))
    await expect_pong_event(ws, "max")
    await assert_alive(ws)


@pytest.mark.parametrize("parts", [2, 4, 64])
async def test_fragmented_message_over_max_frame_bytes_fails(
    small_server: ServerProcess, parts: int
) -> None:
    """Every fragment is small; the message they add up to is one byte too big."""
    ws = await connect(small_server)
    await ws.send_raw(fragmented(split(padded_ping("max", SMALL_FRAME + 1), parts)))
    await assert_fails(ws, MESSAGE_TOO_BIG)

"""A raw RFC 6455 client on a non-blocking socket and the asyncio loop, for conformance tests.

No WebSocket library: the tests need to send what a library refuses to send (reserved
bits and opcodes, unmasked or non-minimal frames, broken UTF-8, bad close codes) and to
see exactly which bytes the server answers with, in order. Every read is bounded by a
timeout; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

RSV1 = 0b100
RSV2 = 0b010
RSV3 = 0b001

TIMEOUT = 5.0  # seconds any single read may take
MAX_HEAD = 16 * 1024  # bytes of HTTP response head accepted


class ProtocolViolation(AssertionError):
    """The server sent something RFC 6455 forbids (e.g. a masked frame)."""


@dataclass(frozen=True)
class Frame:
    """One server frame: header bits and the (already unmasked) payload."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    def close_code(self) -> int | None:
        """The status code of a CLOSE frame, None when it has no payload."""
        assert self.opcode == CLOSE, self
        if not self.payload:
            return None
        if len(self.payload) == 1:
            raise ProtocolViolation(f"the server sent a 1-byte CLOSE payload: {self.payload!r}")
        return int.from_bytes(self.payload[:2], "big")

    def close_reason(self) -> bytes:
        assert self.opcode == CLOSE, self
        return self.payload[2:]


@dataclass
class HttpResponse:
    """An upgrade answer that was not 101: status line, headers (lower-cased names), body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return orjson.loads(self.body)


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    masked: bool = True,
    length_form: int | None = None,
) -> bytes:
    """Encode one client frame.

    Args:
        opcode: any 4-bit value, reserved ones included.
        payload: the unmasked payload.
        fin: the FIN bit.
        rsv: RSV1..RSV3 as a 3-bit value (``RSV1 | RSV3`` ...).
        mask: the 4-byte masking key; random when None.
        masked: False sends the frame unmasked (a protocol error from a client).
        length_form: force the length encoding: 7 (in the second byte), 16 (126 + 2 bytes)
            or 64 (127 + 8 bytes); None picks the minimal one. A non-minimal form is a
            protocol error the server must refuse.
    """
    assert 0 <= opcode <= 0xF and 0 <= rsv <= 0b111
    n = len(payload)
    if length_form is None:
        length_form = 7 if n < 126 else 16 if n < 65536 else 64
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if length_form == 7:
        assert n < 126, "a 7-bit length holds at most 125"
        head.append(mask_bit | n)
    elif length_form == 16:
        assert n < 65536
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    elif length_form == 64:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    else:
        raise ValueError(f"length_form must be 7, 16 or 64, not {length_form}")
    if not masked:
        return bytes(head) + payload
    key = os.urandom(4) if mask is None else mask
    assert len(key) == 4
    return bytes(head) + key + apply_mask(payload, key)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``key`` (masking and unmasking alike)."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    """A CLOSE frame payload: 2-byte status code then the reason (nothing when code is None)."""
    if code is None:
        assert not reason
        return b""
    return code.to_bytes(2, "big") + reason


def text(obj: Any) -> bytes:
    """A JSON request as a masked, final TEXT frame."""
    return build_frame(TEXT, orjson.dumps(obj))


def handshake_request(
    port: int, path: str = "/ws", headers: dict[str, str | None] | None = None
) -> bytes:
    """An HTTP/1.1 upgrade request; ``headers`` override the defaults, None removes one."""
    merged: dict[str, str | None] = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    for name, value in (headers or {}).items():
        # case-insensitive override, so {"upgrade": None} removes "Upgrade"
        for existing in [k for k in merged if k.lower() == name.lower()]:
            del merged[existing]
        merged[name] = value
    lines = [f"GET {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in merged.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class ByteStream:
    """The client's end of the TCP connection: what arrived, and whether (and how) it ended.

    A plain non-blocking socket rather than an asyncio transport: a transport that fails a
    write (the server already closed) stops reading, and the bytes the server sent before
    closing, its CLOSE frame above all, would never reach the test. Here a failed write is
    recorded and ignored, and reads go on until the kernel reports EOF or a reset (Linux
    hands out data that arrived before a reset first).
    """

    # Every socket not yet closed, so a test's teardown can close what a failed test left.
    live: ClassVar[set[ByteStream]] = set()

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.ended = False
        self.error: OSError | None = None  # how reading ended, when not by EOF
        self.write_error: OSError | None = None
        ByteStream.live.add(self)

    @classmethod
    async def open(cls, port: int, timeout: float = TIMEOUT) -> ByteStream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        self.sock.close()
        ByteStream.live.discard(self)

    @classmethod
    def close_all(cls) -> None:
        for stream in list(cls.live):
            stream.close()

    # -- reading --------------------------------------------------------------
    def how_it_ended(self) -> str:
        return f"reset ({self.error})" if self.error else "EOF"

    async def _until(self, ready: Callable[[], bool], timeout: float, waiting_for: str) -> None:
        """Read until ``ready()`` holds or the connection ended; fail after ``timeout``."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not ready() and not self.ended:
                    try:
                        chunk = await loop.sock_recv(self.sock, 65536)
                    except OSError as exc:  # a reset, after everything queued before it
                        self.ended, self.error = True, exc
                        break
                    if not chunk:
                        self.ended = True
                    self.buffer += chunk
        except TimeoutError:
            raise AssertionError(
                f"no {waiting_for} from the server within {timeout} s "
                f"(buffered: {bytes(self.buffer[:200])!r})"
            ) from None

    async def read_exactly(self, n: int, timeout: float, waiting_for: str = "frame") -> bytes:
        await self._until(lambda: len(self.buffer) >= n, timeout, waiting_for)
        if len(self.buffer) < n:
            raise AssertionError(
                f"the connection ended ({self.how_it_ended()}) before a "
                f"complete {waiting_for}; buffered: {bytes(self.buffer)!r}"
            )
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def read_until(
        self, separator: bytes, limit: int, timeout: float, waiting_for: str
    ) -> bytes:
        await self._until(
            lambda: separator in self.buffer or len(self.buffer) > limit, timeout, waiting_for
        )
        end = self.buffer.find(separator)
        if end < 0:
            raise AssertionError(
                f"no complete {waiting_for} ({self.how_it_ended()}); "
                f"got {bytes(self.buffer[:200])!r}"
            )
        return await self.read_exactly(end + len(separator), timeout, waiting_for)

    async def read_to_end(
        self, timeout: float, waiting_for: str = "end of the connection"
    ) -> bytes:
        """Everything until the connection ends (EOF or reset)."""
        await self._until(lambda: False, timeout, waiting_for)
        out = bytes(self.buffer)
        self.buffer.clear()
        return out

    # -- writing --------------------------------------------------------------
    async def write(self, data: bytes, timeout: float = TIMEOUT) -> None:
        """Send all of ``data``; a write the server refused is recorded, not raised.

        A server that failed the connection while the client was still sending shows it
        in what it sent (its CLOSE, then EOF), which the test reads next.
        """
        if self.write_error is not None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_sendall(self.sock, data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.write_error = exc
        except TimeoutError:
            raise AssertionError(f"the server took no data for {timeout} s") from None


class RawWebSocket:
    """A client connection after a 101: write frames, read server frames in order."""

    def __init__(self, stream: ByteStream, headers: dict[str, str]) -> None:
        self.stream = stream
        self.headers = headers
        self.close_sent = False  # a CLOSE went out through send_frame / send_close

    # -- opening -------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        port: int,
        path: str = "/ws",
        headers: dict[str, str | None] | None = None,
        timeout: float = TIMEOUT,
    ) -> RawWebSocket:
        """Upgrade and return the connection; fail the test unless the answer is 101."""
        answer = await upgrade(port, path, headers, timeout)
        assert isinstance(answer, RawWebSocket), f"expected 101, got {answer}"
        return answer

    def close_transport(self) -> None:
        """Drop the TCP connection (no close frame); safe on a connection already gone."""
        self.stream.close()

    # -- writing -------------------------------------------------------------
    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are, in one write call."""
        await self.stream.write(data)

    async def send_in_pieces(self, data: bytes, size: int = 1) -> None:
        """Write ``data`` in ``size``-byte writes.

        Each piece is its own send() with TCP_NODELAY set, so it leaves as its own segment
        unless the kernel coalesces a backlog; the server must cope either way.
        """
        for i in range(0, len(data), size):
            await self.stream.write(data[i : i + size])

    async def send_frame(self, opcode: int, payload: bytes = b"", **kw: Any) -> None:
        """Build one frame (see ``build_frame`` for the options) and write it."""
        self.close_sent |= opcode == CLOSE
        await self.send_raw(build_frame(opcode, payload, **kw))

    async def send_text(self, obj: Any) -> None:
        """One JSON value as one final, masked TEXT frame."""
        await self.send_raw(text(obj))

    async def send_close(self, code: int | None = None, reason: bytes = b"") -> None:
        await self.send_frame(CLOSE, close_payload(code, reason))

    # -- reading -------------------------------------------------------------
    async def recv_frame(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame the server sent, whatever it is."""
        read = self.stream.read_exactly
        b0, b1 = await read(2, timeout)
        if b1 & 0x80:
            raise ProtocolViolation("the server sent a masked frame")
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await read(2, timeout), "big")
        elif n == 127:
            n = int.from_bytes(await read(8, timeout), "big")
        payload = await read(n, timeout) if n else b""
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 0b111, b0 & 0x0F, payload)

    async def recv_event(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next frame, which must be a final TEXT frame holding a JSON object.

        Skips nothing: a PING, PONG or CLOSE here fails the test with the frame shown.
        """
        frame = await self.recv_frame(timeout)
        if frame.opcode == CLOSE:
            raise AssertionError(
                f"expected an event, got CLOSE {frame.close_code()} {frame.close_reason()!r}"
            )
        assert (frame.opcode, frame.fin, frame.rsv) == (TEXT, True, 0), frame
        event = orjson.loads(frame.payload)
        assert isinstance(event, dict), event
        return event

    async def expect_close(
        self, timeout: float = TIMEOUT, echo: bool | None = None
    ) -> tuple[int | None, bytes]:
        """The next frame must be CLOSE; then the server must end TCP with nothing after it.

        Returns the close code (None for an empty CLOSE payload) and the reason bytes.
        ``echo``: answer the server's CLOSE with one of ours, as RFC 6455 5.5.1 asks of a
        client, so a server that waits for the echo before closing TCP is not slowed down.
        By default the client echoes unless it sent a CLOSE itself (through ``send_close``
        or ``send_frame``); a test that put a CLOSE in ``send_raw`` bytes passes False.
        """
        frame = await self.recv_frame(timeout)
        if frame.opcode != CLOSE:
            raise AssertionError(f"expected CLOSE, got {frame}")
        assert frame.fin and frame.rsv == 0, frame
        if echo is None:
            echo = not self.close_sent
        if echo:
            await self.send_close(frame.close_code())
        await self.expect_eof(timeout)
        return frame.close_code(), frame.close_reason()

    async def expect_eof(self, timeout: float = TIMEOUT) -> None:
        """The server must end the TCP connection, sending no further bytes first.

        A reset counts as the end too: a server may abort rather than shut down after
        its close frame (RFC 6455 7.1.1 only says the server closes TCP first).
        """
        rest = await self.stream.read_to_end(timeout, "end of TCP after the close frame")
        self.stream.close()
        assert rest == b"", f"bytes after the server's close frame: {rest!r}"

    async def answer_pings(self, count: int, timeout: float = TIMEOUT) -> None:
        """Read until the server has sent ``count`` PINGs, answering each with its PONG.

        Anything else (an event, a CLOSE) fails the test with the frame shown. Each PING is
        the server's heartbeat sweep reaching this connection and letting it live: heartbeat
        tests wait for these instead of sleeping through a guess of several sweeps.
        """
        for _ in range(count):
            frame = await self.recv_frame(timeout)
            if frame.opcode != PING:
                raise AssertionError(f"expected PING, got {frame}")
            await self.send_frame(PONG, frame.payload)

    async def ping_roundtrip(self, rid: Any = "barrier") -> None:
        """A JSON ``ping`` request answered by its ``pong``: the connection is alive."""
        await self.send_text({"type": "ping", "id": rid})
        event = await self.recv_event()
        assert (event["type"], event["id"]) == ("pong", rid), event


async def upgrade(
    port: int,
    path: str = "/ws",
    headers: dict[str, str | None] | None = None,
    timeout: float = TIMEOUT,
) -> RawWebSocket | HttpResponse:
    """Send an upgrade request; a 101 gives a RawWebSocket, anything else an HttpResponse."""
    stream = await ByteStream.open(port, timeout)
    await stream.write(handshake_request(port, path, headers))
    head = await stream.read_until(b"\r\n\r\n", MAX_HEAD, timeout, "HTTP response head")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    parsed: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
    if status == 101:
        # Whatever followed the head (a first event) stays buffered in the stream.
        return RawWebSocket(stream, parsed)
    try:
        if "content-length" in parsed:
            body = await stream.read_exactly(
                int(parsed["content-length"]), timeout, "HTTP response body"
            )
        else:
            body = await stream.read_to_end(timeout, "HTTP response body")
    finally:
        stream.close()
    return HttpResponse(status, parsed, body)

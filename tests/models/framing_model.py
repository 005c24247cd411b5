"""RFC 6455 server frames, the obvious way."""

from __future__ import annotations

import struct


def frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def frame_text(payload: bytes) -> bytes:
    return frame(0x1, payload)


def frame_ping(payload: bytes = b"") -> bytes:
    if len(payload) > 125:
        raise ValueError(len(payload))
    return frame(0x9, bytes(payload))


def frame_pong(payload: bytes = b"") -> bytes:
    if len(payload) > 125:
        raise ValueError(len(payload))
    return frame(0xA, bytes(payload))


def frame_close(code: int, reason: str = "") -> bytes:
    if not 1000 <= code <= 4999:
        raise ValueError(code)
    return frame(0x8, struct.pack("!H", code) + reason.encode()[:123])


def parse(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Complete unmasked frames in ``data`` as (opcode, payload), and the bytes they use."""
    frames, pos = [], 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        if b1 & 0x80:
            raise ValueError("masked")
        n, head = b1 & 0x7F, 2
        if n == 126:
            if len(data) - pos < 4:
                break
            n, head = struct.unpack_from("!H", data, pos + 2)[0], 4
        elif n == 127:
            if len(data) - pos < 10:
                break
            n, head = struct.unpack_from("!Q", data, pos + 2)[0], 10
        if len(data) - pos - head < n:
            break
        frames.append((b0 & 0x0F, data[pos + head : pos + head + n]))
        pos += head + n
    return frames, pos

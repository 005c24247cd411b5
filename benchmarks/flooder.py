"""A hostile client on a raw socket, run in its own process by ``benchmarks.flood``:
``python -m benchmarks.flooder KIND PORT SECONDS [--auth] [--no-read]``.

It writes one kind of masked frame (built once, see ``loadgen.client_frame``) as fast as
the socket takes it for SECONDS. Unless ``--no-read``, a separate task reads and discards
what the server sends, so the flooder is not cut as a slow consumer. It prints
``flooding`` when the flood starts and ``flooded`` when it stops (SIGUSR1 stops it early),
then one JSON line: frames and bytes sent and received, and whether, when and how the
server ended the connection (close code when a close frame arrived).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from dataclasses import asdict, dataclass

import uvloop

from .loadgen import OP_BINARY, OP_CLOSE, OP_PING, client_frame, count_frames, upgrade_request
from .targets import Nexus

HOST = "127.0.0.1"
FLOODER_USER = 1  # the bystander of benchmarks.flood is user 0
TARGET = Nexus("nexus")
# kind -> (request sent once before the flood, or None; the frame repeated)
FLOODS: dict[str, tuple[bytes | None, bytes]] = {
    "ping": (None, client_frame(b"flood!!!", OP_PING)),
    "binary": (None, client_frame(bytes(16), OP_BINARY)),
    "bad-json": (None, client_frame(b'{"type": "message.send", "room": ')),
    "send": (TARGET.join("flood"), client_frame(TARGET.send("flood", b"x"))),
}
CHUNK_BYTES = 64 * 1024
READ_BYTES = 1 << 20
CLOSE_FRAME_MAX = 2 + 125  # an unmasked control frame: 2-byte head, payload <= 125


class Inbound:
    """The server's frames, counted from raw bytes; remembers the bytes that ended the stream,
    where its close frame is, if it sent one."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self._buf = bytearray()
        self._tail = b""

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        buf = self._buf
        buf += data
        frames, end = count_frames(buf)
        self.frames += frames
        if end:
            self._tail = (self._tail + bytes(buf[max(0, end - CLOSE_FRAME_MAX) : end]))[
                -CLOSE_FRAME_MAX:
            ]
            del buf[:end]

    def close_frame(self) -> tuple[int, str] | None:
        """(code, reason) of the close frame that ended the stream, or None.

        A server frame that ends exactly at the end of the stream, with the CLOSE opcode
        byte and a length byte that matches, is the close frame (the payloads seen here
        are ASCII JSON and pong bytes, which never hold 0x88)."""
        tail = self._tail
        for i in range(len(tail) - 2, -1, -1):
            if tail[i] == 0x80 | OP_CLOSE and tail[i + 1] == len(tail) - i - 2:
                payload = tail[i + 2 :]
                if len(payload) < 2:
                    return 1005, ""  # no status code
                return int.from_bytes(payload[:2], "big"), payload[2:].decode(errors="replace")
        return None


@dataclass
class FloodResult:
    kind: str
    auth: bool
    read: bool
    flood_s: float = 0.0
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    # how the connection ended: "close" (close frame), "reset", "eof" (no close frame), "open"
    end: str = "open"
    ended_at_s: float | None = None  # since the flood started
    write_failed_at_s: float | None = None
    close_code: int | None = None
    close_reason: str | None = None
    linger_s: float = 0.0  # how long after the flood the flooder waited for a close
    connections: int = 0  # more than one with --reconnect: the server kept cutting it


async def _read(
    reader: asyncio.StreamReader,
    inbound: Inbound,
    result: FloodResult,
    t0: float,
    idle: float | None = None,
    until: float | None = None,
) -> None:
    """Read until the stream ends, ``idle`` seconds pass without data, or ``until``."""
    try:
        while True:
            left = None if until is None else until - time.monotonic()
            waits = [w for w in (idle, left) if w is not None]
            data = await asyncio.wait_for(
                reader.read(READ_BYTES), max(0.0, min(waits)) if waits else None
            )
            if not data:
                result.end = "eof"
                break
            inbound.feed(data)
    except TimeoutError:
        return  # still open
    except ConnectionError:
        result.end = "reset"
    result.ended_at_s = time.monotonic() - t0
    close = inbound.close_frame()
    if close is not None:
        result.end = "close"
        result.close_code, result.close_reason = close


async def flood(
    kind: str,
    port: int,
    seconds: float,
    *,
    auth: bool,
    read: bool,
    linger: float,
    drain: float,
    reconnect: bool = False,
) -> FloodResult:
    """Flood for ``seconds``; with ``reconnect`` a connection the server ends is replaced by
    a new one at once (a persistent attacker), and the result tells about the last one."""
    result = FloodResult(kind, auth, read, linger_s=linger)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
    t0 = time.monotonic()
    deadline = t0 + seconds
    print("flooding", flush=True)
    inbound = Inbound()
    while True:
        result.connections += 1
        inbound = Inbound()
        writer = await _flood_one(
            kind,
            port,
            deadline,
            stop,
            inbound,
            result,
            t0,
            auth=auth,
            read=read,
            linger=linger,
            drain=drain,
        )
        if not reconnect or stop.is_set() or time.monotonic() >= deadline:
            break
        writer.transport.abort()
    result.flood_s = time.monotonic() - t0
    print("flooded", flush=True)
    writer.transport.abort()
    result.frames_received += inbound.frames
    result.bytes_received += inbound.bytes
    result.bytes_sent = result.frames_sent * len(FLOODS[kind][1])
    return result


async def _flood_one(
    kind: str,
    port: int,
    deadline: float,
    stop: asyncio.Event,
    inbound: Inbound,
    result: FloodResult,
    t0: float,
    *,
    auth: bool,
    read: bool,
    linger: float,
    drain: float,
) -> asyncio.StreamWriter:
    """One connection's flood, until ``deadline``, a stop, or the server ending it."""
    setup, frame = FLOODS[kind]
    chunk = frame * max(1, CHUNK_BYTES // len(frame))
    frames_per_chunk = len(chunk) // len(frame)
    reader, writer = await asyncio.open_connection(HOST, port)
    headers = TARGET.headers(FLOODER_USER) if auth else {}
    writer.write(upgrade_request(f"{HOST}:{port}", TARGET.path, headers))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.decode(errors="replace"))
    if setup is not None:
        writer.write(client_frame(setup))
    result.end, result.ended_at_s, result.close_code, result.close_reason = "open", None, None, None
    reading = asyncio.create_task(_read(reader, inbound, result, t0)) if read else None
    try:
        while (
            time.monotonic() < deadline
            and not stop.is_set()
            and not (reading is not None and reading.done())
        ):
            writer.write(chunk)
            result.frames_sent += frames_per_chunk
            await writer.drain()
    except ConnectionError:
        result.write_failed_at_s = time.monotonic() - t0
    if reading is None:
        # Never read during the flood: read what piled up now, to see how it ended.
        await _read(reader, inbound, result, t0, idle=linger, until=time.monotonic() + drain)
    elif not reading.done():
        await asyncio.wait({reading}, timeout=linger if time.monotonic() >= deadline else 0.5)
        reading.cancel()
    return writer


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.flooder", description=__doc__)
    p.add_argument("kind", choices=sorted(FLOODS))
    p.add_argument("port", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--auth", action="store_true", help="send a valid token on the upgrade")
    p.add_argument(
        "--no-read", dest="read", action="store_false", help="never read during the flood"
    )
    p.add_argument(
        "--linger",
        type=float,
        default=3.0,
        help="after the flood: seconds to wait for the server's close (it aborts "
        "a socket 2 s after its close frame)",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="with --no-read: most seconds spent reading the backlog afterwards",
    )
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="when the server ends the connection, open another and go on",
    )
    args = p.parse_args()
    result = uvloop.run(
        flood(
            args.kind,
            args.port,
            args.seconds,
            auth=args.auth,
            read=args.read,
            linger=args.linger,
            drain=args.drain,
            reconnect=args.reconnect,
        )
    )
    print(json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()

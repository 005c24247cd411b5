"""The best a careful picows user writes by hand: picows + uvloop, orjson, each broadcast
framed once in pure Python, and the frames for a member collected during a loop iteration
and written with one ``write`` per member per tick. Nothing from nexus: this is the
baseline Nexus' own per-tick outbox is measured against.

Same minimal room protocol as ``picows_naive``.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from collections.abc import Iterable

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server


def frame_text(payload: bytes) -> bytes:
    """A final, unmasked TEXT frame (server to client frames carry no mask, RFC 6455 5.1)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


class Hub:
    """Rooms, and the members with frames waiting for this tick's flush."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.rooms: dict[str, set[Member]] = defaultdict(set)
        self.dirty: list[Member] = []

    def broadcast(self, members: Iterable[Member], frame: bytes) -> None:
        dirty = self.dirty
        if not dirty:
            # After the callbacks of this iteration: everything read in one tick is
            # written with one call per member. (``dirty`` is empty until then.)
            self.loop.call_soon(self.flush)
        for member in members:  # the per-member work, inlined: no call per member
            pending = member.pending
            if not pending:
                dirty.append(member)
            pending.append(frame)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for member in dirty:
            pending, member.pending = member.pending, []
            if not member.raw.is_closing():
                # join of one item returns it uncopied
                member.raw.write(b"".join(pending))


class Member(WSListener):  # type: ignore[misc]
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.joined: list[str] = []
        self.pending: list[bytes] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.raw = transport.underlying_transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            return
        msg = orjson.loads(frame.get_payload_as_memoryview())
        room = msg["room"]
        if msg["type"] == "send":
            out = orjson.dumps({"type": "message", "room": room, "body": msg["body"]})
            self.hub.broadcast(self.hub.rooms[room], frame_text(out))
        elif msg["type"] == "join":
            self.hub.rooms[room].add(self)
            self.joined.append(room)
            self.hub.broadcast((self,), frame_text(orjson.dumps({"type": "joined", "room": room})))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for room in self.joined:
            self.hub.rooms[room].discard(self)


async def main(port: int) -> None:
    hub = Hub(asyncio.get_running_loop())
    server = await ws_create_server(
        lambda _: Member(hub),
        "127.0.0.1",
        port,
        max_frame_size=1 << 20,
        backlog=2048,
        # The socket layer Nexus uses (uvloop's TCP transport, 2 KiB first read buffer), so
        # the comparison is about what runs above it, memory per connection included.
        read_buffer_init_size=2048,
        use_aiofastnet=False,
    )
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))

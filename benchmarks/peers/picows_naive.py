"""A room server as a picows user writes it first: picows + uvloop, orjson, and one
``transport.send`` per member per message (picows frames and writes each one). Nothing
from nexus.

Minimal room protocol (benchmarks/README.md): ``{"type":"join","room":R}`` is answered
with ``{"type":"joined","room":R}``; ``{"type":"send","room":R,"body":B}`` sends
``{"type":"message","room":R,"body":B}`` to every member, the sender included.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server


class Member(WSListener):  # type: ignore[misc]
    def __init__(self, rooms: dict[str, set[Member]]) -> None:
        self.rooms = rooms
        self.joined: list[str] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            return
        msg = orjson.loads(frame.get_payload_as_memoryview())
        room = msg["room"]
        if msg["type"] == "send":
            out = orjson.dumps({"type": "message", "room": room, "body": msg["body"]})
            for member in self.rooms[room]:
                member.transport.send(WSMsgType.TEXT, out)
        elif msg["type"] == "join":
            self.rooms[room].add(self)
            self.joined.append(room)
            transport.send(WSMsgType.TEXT, orjson.dumps({"type": "joined", "room": room}))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for room in self.joined:
            self.rooms[room].discard(self)


async def main(port: int) -> None:
    rooms: dict[str, set[Member]] = defaultdict(set)
    server = await ws_create_server(
        lambda _: Member(rooms),
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

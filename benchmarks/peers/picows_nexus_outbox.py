"""picows + uvloop with Nexus' own Cython delivery path: ``frame_text`` frames each
broadcast once, ``Router``/``Outbox``/``FlushQueue`` append it to every member's outbox and
write once per member per loop iteration. Everything else as ``picows_coalesced`` (orjson,
the same minimal room protocol), so the two differ only in the delivery path: what Nexus'
Cython outbox gains over a careful hand-written Python one. No auth, no storage.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from nexus._speedups.framing import frame_text
from nexus._speedups.router import FlushQueue, Outbox, Router

LIMIT = 64 << 20


class Member(WSListener):  # type: ignore[misc]
    def __init__(self, router: Router, queue: FlushQueue) -> None:
        self.router, self.queue = router, queue
        self.rooms: list[str] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.outbox = Outbox(transport.underlying_transport, self.queue, LIMIT, None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            return
        msg = orjson.loads(frame.get_payload_as_memoryview())
        room = msg["room"]
        if msg["type"] == "send":
            out = orjson.dumps({"type": "message", "room": room, "body": msg["body"]})
            self.router.broadcast(room, frame_text(out))
        elif msg["type"] == "join":
            self.rooms.append(room)
            self.router.join(room, self.outbox)
            self.outbox.push(frame_text(orjson.dumps({"type": "joined", "room": room})))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for room in self.rooms:
            self.router.leave(room, self.outbox)


async def main(port: int) -> None:
    router = Router()
    queue = FlushQueue(asyncio.get_running_loop())
    server = await ws_create_server(
        lambda _: Member(router, queue),
        "127.0.0.1",
        port,
        read_buffer_init_size=2048,
        max_frame_size=1 << 20,
        backlog=2048,
        use_aiofastnet=False,
    )
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))

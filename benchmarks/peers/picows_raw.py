"""The limit: picows + uvloop doing only framing and fan-out (no auth, no JSON, no storage).

Protocol: ``J:<room>`` joins; ``S:<room>:<payload>`` broadcasts ``<payload>`` to the room,
framed once and written to every member with one write per member per loop iteration.
"""

from __future__ import annotations

import sys

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from nexus._speedups.framing import frame_text
from nexus._speedups.router import FlushQueue, Outbox, Router

LIMIT = 64 << 20


class Member(WSListener):  # type: ignore[misc]
    def __init__(self, router: Router, queue: FlushQueue) -> None:
        self.router, self.queue = router, queue

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.outbox = Outbox(transport.underlying_transport, self.queue, LIMIT, None)
        self.rooms: list[bytes] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        if data[:2] == b"S:":
            end = data.index(b":", 2)
            self.router.broadcast(data[2:end], frame_text(data[end + 1 :]))
        elif data[:2] == b"J:":
            self.rooms.append(data[2:])
            self.router.join(data[2:], self.outbox)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for room in self.rooms:
            self.router.leave(room, self.outbox)


async def main(port: int) -> None:
    import asyncio

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

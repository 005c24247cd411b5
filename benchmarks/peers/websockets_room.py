"""A room server as most Python users would write it with the `websockets` library:
``websockets.broadcast`` (which writes to every member without awaiting) for fan-out.

``python -m benchmarks.peers.websockets_room PORT [uvloop|asyncio]``: on uvloop (the
``websockets`` target, the loop Nexus runs on) or on the stock asyncio loop
(``websockets-asyncio``, what many users run).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

rooms: dict[str, set[ServerConnection]] = defaultdict(set)


async def handler(ws: ServerConnection) -> None:
    joined: list[str] = []
    try:
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "join":
                rooms[msg["room"]].add(ws)
                joined.append(msg["room"])
                answer = {"type": "joined", "room": msg["room"]}
                await ws.send(json.dumps(answer, separators=(",", ":")))
            elif msg["type"] == "send":
                out = json.dumps(
                    {"type": "message", "room": msg["room"], "body": msg["body"]},
                    separators=(",", ":"),
                )
                broadcast(rooms[msg["room"]], out)
    finally:
        for room in joined:
            rooms[room].discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, max_size=1 << 20, compression=None) as server:
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    loop = sys.argv[2] if len(sys.argv) > 2 else "uvloop"
    (uvloop.run if loop == "uvloop" else asyncio.run)(main(port))

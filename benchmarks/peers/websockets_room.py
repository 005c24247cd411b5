"""A room server as most Python users would write it with the `websockets` library."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict

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
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))

"""An MCP server for trying agents' MCP tools, built with the official MCP Python SDK.

Runs over stdio (the default: a Nexus operator points ``command`` at this file) or over
Streamable HTTP on a loopback port, printing its URL on stdout::

    python examples/mcp/fixture_server.py                      # stdio
    python examples/mcp/fixture_server.py --http --port 0      # http://127.0.0.1:PORT/mcp
    python examples/mcp/fixture_server.py --http --require-header "Authorization=Bearer s3cret"

Its tools: ``echo``, ``add`` (structured output), ``slow`` (sleeps: timeouts), ``fail``
(an error result), ``big`` (a long output: caps), ``pid`` (which process answers: a
restart), and ``delete_item`` (an operator would mark it destructive). The tests in
tests/integration/test_mcp_*.py drive it; docs/mcp.md shows the matching settings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

server = MCPServer(
    "nexus-fixture", instructions="Tools for testing Nexus agents.", log_level="WARNING"
)
deleted: list[str] = []


@server.tool()
def echo(text: str) -> str:
    """Answer with the given text."""
    return text


@server.tool()
def add(a: int, b: int) -> dict[str, int]:
    """Add two integers."""
    return {"sum": a + b}


@server.tool()
async def slow(seconds: float) -> str:
    """Wait the given number of seconds, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds:g} s"


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message."""
    raise ToolError(message)


@server.tool()
def big(chars: int) -> str:
    """Answer with a text of the given length."""
    return "x" * chars


@server.tool()
def pid() -> str:
    """The id of the process answering."""
    return str(os.getpid())


@server.tool()
def delete_item(name: str) -> str:
    """Delete an item for good."""
    deleted.append(name)
    return f"deleted {name} (deleted so far: {', '.join(deleted)})"


def require_header(app: App, name: str, value: str) -> App:
    """Refuse (401) requests without header ``name: value``."""
    wanted = (name.lower().encode(), value.encode())

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and wanted not in list(scope.get("headers", ())):
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    return guarded


async def serve_http(port: int, header: str | None) -> None:
    import uvicorn

    app: App = server.streamable_http_app()
    if header:
        name, _, value = header.partition("=")
        app = require_header(app, name.strip(), value.strip())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)  # connections made as soon as the URL is printed wait, not fail
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    http = uvicorn.Server(config)
    print(f"mcp fixture on http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    await http.serve(sockets=[sock])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="Streamable HTTP, not stdio")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0: any free one)")
    parser.add_argument("--require-header", help="NAME=VALUE every HTTP request must carry")
    args = parser.parse_args()
    if args.http:
        asyncio.run(serve_http(args.port, args.require_header))
    else:
        server.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())

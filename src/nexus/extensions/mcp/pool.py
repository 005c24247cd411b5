"""The connections to the operator's MCP servers: one per server, shared by every agent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .config import ServerConfig
from .connection import ServerConnection


class ConnectionPool:
    def __init__(self, configs: dict[str, ServerConfig]) -> None:
        self._connections = {name: ServerConnection(c) for name, c in configs.items()}

    def get(self, name: str) -> ServerConnection | None:
        return self._connections.get(name)

    def all(self) -> list[ServerConnection]:
        return list(self._connections.values())

    def warm(self, names: Iterable[str]) -> None:
        """Start connecting to ``names`` (in the background: a server is opened when an
        agent may use it, not at start for nobody)."""
        for name in names:
            connection = self._connections.get(name)
            if connection is not None:
                connection.warm()

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._connections.values()))

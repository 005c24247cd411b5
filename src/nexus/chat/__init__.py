"""``nexus chat``: a terminal chat on the Python SDK (docs/client.md)."""

from __future__ import annotations

from ..client import NexusClient
from .app import ChatApp


def run_chat(url: str, token: str, rooms: list[str]) -> int:
    app = ChatApp(NexusClient(url, token), rooms)
    app.run()
    return 1 if app.return_code else 0


__all__ = ["ChatApp", "run_chat"]

"""A blocking wrapper for scripts: the asyncio client runs on a loop in a thread of its
own; each method waits for its answer.

    with SyncClient("ws://127.0.0.1:8765/ws", token) as nexus:
        nexus.join("general")
        nexus.send("general", "hello")
        print(nexus.ask("general", "@helper what did we decide?").text)
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .client import NexusClient, TokenSource
from .events import Event, ReplyEnded

T = TypeVar("T")


class SyncClient:
    def __init__(self, url: str, token: TokenSource, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._events: queue.Queue[Event] = queue.Queue()
        self.client: NexusClient = self._call(self._make(url, token, options))
        self._pump = asyncio.run_coroutine_threadsafe(self._forward(), self._loop)

    @staticmethod
    async def _make(url: str, token: TokenSource, options: dict[str, Any]) -> NexusClient:
        client = NexusClient(url, token, **options)
        await client.connect()
        return client

    async def _forward(self) -> None:
        async for event in self.client.events():
            self._events.put(event)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def join(self, room: str, since: int | None = None) -> dict[str, Any]:
        return self._call(self.client.join(room, since))

    def leave(self, room: str) -> dict[str, Any]:
        return self._call(self.client.leave(room))

    def send(self, room: str, body: str, **fields: Any) -> dict[str, Any]:
        return self._call(self.client.send(room, body, **fields))

    def history(self, room: str, **query: Any) -> dict[str, Any]:
        return self._call(self.client.history(room, **query))

    def request(self, type: str, **fields: Any) -> dict[str, Any]:
        return self._call(self.client.request(type, **fields))

    def ask(self, room: str, body: str, timeout: float = 120.0) -> ReplyEnded:
        return self._call(self.client.ask(room, body, timeout))

    def next_event(self, timeout: float | None = None) -> Event:
        """The next event (``queue.Empty`` after ``timeout`` seconds)."""
        return self._events.get(timeout=timeout)

    def close(self) -> None:
        try:
            self._call(self.client.close(), 10)
        finally:
            self._pump.cancel()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._loop.is_running():
                self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

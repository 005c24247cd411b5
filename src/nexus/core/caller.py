"""Who a pipeline entry answers to: a WebSocket session or an HTTP request."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import orjson

from ..auth import Principal
from ..errors import Unavailable, error_for


class Caller(Protocol):
    """Anything with a principal that can be sent encoded events (ack, error)."""

    @property
    def principal(self) -> Principal | None: ...

    def send(self, payload: bytes) -> None: ...


class OneWrite:
    """A ``Caller`` for one write by an in-process component (tasks, memory): the pipeline's
    ack or error resolves ``result()``."""

    def __init__(self, principal: Principal, timeout: float, what: str = "the write") -> None:
        self._principal = principal
        self._timeout = timeout
        self._what = what
        self.future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    @property
    def principal(self) -> Principal:
        return self._principal

    def send(self, payload: bytes) -> None:
        if not self.future.done():
            self.future.set_result(orjson.loads(payload))

    async def result(self) -> dict[str, Any]:
        """The ack; raises the NexusError of an error answer, Unavailable on a timeout."""
        try:
            event = await asyncio.wait_for(self.future, self._timeout)
        except TimeoutError:
            raise Unavailable(f"{self._what} was not committed in time") from None
        if event.get("type") == "error":
            raise error_for(event.get("code", "internal"), event.get("message", ""))
        return event

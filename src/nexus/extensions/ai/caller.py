"""An agent writing into rooms: a ``Caller`` whose acks and errors resolve futures.

The runtime writes like any client — through ``RoomWrites`` and the one pipeline, with
interceptors, sequencing, durability and fan-out — and awaits the answer to each write.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import orjson

from ...auth import Principal
from ...errors import NexusError, error_for

WRITE_TIMEOUT_S = 30.0


class AgentCaller:
    def __init__(self, principal: Principal) -> None:
        self._principal = principal
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    @property
    def principal(self) -> Principal:
        return self._principal

    def send(self, payload: bytes) -> None:
        event = orjson.loads(payload)
        future = self._pending.pop(str(event.get("id")), None)
        if future is not None and not future.done():
            future.set_result(event)

    async def write(self, submit: Callable[[str], None]) -> dict[str, Any]:
        """Run ``submit(request_id)`` (a RoomWrites call) and wait for its ack; raises the
        NexusError of an error answer."""
        rid = f"agent-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            submit(rid)
            # asyncio.wait, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # comes as the ack does (a member's message.cancel sent on seeing this very
            # entry), and the turn would go on.
            done, _ = await asyncio.wait({future}, timeout=WRITE_TIMEOUT_S)
            if not done:
                raise TimeoutError
            event = future.result()
        except NexusError:
            raise
        finally:
            self._pending.pop(rid, None)
        if event.get("type") == "error":
            raise error_for(event.get("code", "internal"), event.get("message", ""))
        return event

"""Who a pipeline entry answers to: a WebSocket session or an HTTP request."""

from __future__ import annotations

from typing import Protocol

from ..auth import Principal


class Caller(Protocol):
    """Anything with a principal that can be sent encoded events (ack, error)."""

    @property
    def principal(self) -> Principal | None: ...

    def send(self, payload: bytes) -> None: ...

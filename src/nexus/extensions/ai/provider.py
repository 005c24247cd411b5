"""The provider interface: one async stream of parts per request.

``stream`` returns an async iterator of ``Part``; the last part is a ``Finish`` or a
``StreamError``. Closing the iterator early (``aclose()``) must close the upstream HTTP
response: that is how a cancelled reply stops costing tokens. Adapters never raise for a
provider's failure: they yield a ``StreamError`` (raising is for bugs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from .parts import ChatRequest, Part


class Provider(Protocol):
    name: str  # the configured name (e.g. "openai", "local-llama")

    def stream(self, request: ChatRequest) -> AsyncIterator[Part]: ...

    async def close(self) -> None:
        """Release connections (at shutdown)."""

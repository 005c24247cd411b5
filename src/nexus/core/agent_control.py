"""What the edges (WebSocket handlers, HTTP API) may ask of the agent runtime, which lives
in extensions/ai and is wired in app.py: core and the edges never import it."""

from __future__ import annotations

from typing import Any, Protocol

from ..auth import Principal
from .rooms import Room


class AgentControl(Protocol):
    def cancel(self, principal: Principal, room: Room, message_id: str) -> None:
        """Stop the reply ``message_id`` streaming in ``room`` (NotFound if none is)."""

    async def context_trace(self, principal: Principal, room: Room, agent: str) -> dict[str, Any]:
        """What ``agent`` would see in ``room`` now: the prompt and the trace of choices."""

    def room_summaries(self, principal: Principal, room: Room, agent: str) -> list[dict[str, Any]]:
        """The rolling summaries ``agent`` keeps of ``room``, oldest range first."""

    async def rebuild_summaries(
        self, principal: Principal, room: Room, agent: str
    ) -> list[dict[str, Any]]:
        """Write ``agent``'s summaries of ``room`` again from the log as it is now."""

    def usage(self, tenant: str, day: str | None, agent: str | None) -> list[dict[str, Any]]:
        """Token usage per agent, model and UTC day."""

    def provider_names(self) -> list[str]:
        """Names of the configured providers."""

    def tool_list(self) -> list[dict[str, str]]:
        """The tools agents may be given: name and description."""

"""What the HTTP API (and later MCP) may know and do about live WebSocket sessions.

The gateway implements it; the API depends on this interface only, never on the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    user_id: str
    kind: str
    remote: str
    rooms: tuple[str, ...]


class LiveSessions(Protocol):
    def sessions_of(self, tenant: str) -> list[SessionInfo]:
        """The tenant's authenticated sessions on this node."""

    def online_users(self, tenant: str) -> set[str]:
        """User ids of the tenant with at least one open session."""

    def disconnect(self, tenant: str, session_id: str, code: int, reason: str) -> bool:
        """Close the tenant's session ``session_id``; False if there is none."""

    def connection_count(self) -> int:
        """Open connections, authenticated or not."""


class Readiness(Protocol):
    """Liveness and readiness, answered alike on both ports."""

    @property
    def draining(self) -> bool: ...

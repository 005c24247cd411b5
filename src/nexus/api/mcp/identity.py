"""Who is calling: the principal the request guard verified, for MCP handlers and for the
SDK's session-ownership check."""

from __future__ import annotations

from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST

from ...auth import Principal
from ..guard import PRINCIPAL_KEY


def principal_of(request: Any) -> Principal:
    """The caller of one MCP message (the HTTP request that carried it)."""
    scope = getattr(request, "scope", None) or {}
    who = scope.get("state", {}).get(PRINCIPAL_KEY)
    if not isinstance(who, Principal):  # only if the guard is not in front of /mcp
        raise MCPError(INVALID_REQUEST, "unauthorized: missing bearer token")
    return who


def session_user(who: Principal) -> AuthenticatedUser:
    """The SDK's view of the caller: a stateful session (protocol 2025-11-25) answers only
    requests from the principal that opened it (tenant and user, not the token: a
    refreshed token keeps its session)."""
    return AuthenticatedUser(
        AccessToken(
            token="",  # never kept: the identity is enough
            client_id=f"{who.tenant}/{who.user_id}",
            scopes=sorted(who.roles),
            subject=who.user_id,
            claims={"iss": who.tenant},
        )
    )

"""Who may see and change what: one place for roles and room visibility.

Used by the WebSocket handlers, the HTTP API and, later, agents, plugins and MCP, so a rule
is written once. Reads membership from the store (memory-mapped, no I/O wait).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..auth import Principal
from ..errors import Forbidden, NotFound
from .rooms import Room

ADMIN_ROLE = "admin"  # tenant administrator: every room of the tenant


class MemberSource(Protocol):
    def member(self, rkey: str, user_id: str) -> dict[str, Any] | None: ...


class AccessRules:
    def __init__(self, members: MemberSource) -> None:
        self._members = members

    @staticmethod
    def is_tenant_admin(principal: Principal) -> bool:
        return ADMIN_ROLE in principal.roles

    def require_tenant_admin(self, principal: Principal) -> None:
        if not self.is_tenant_admin(principal):
            raise Forbidden("requires the admin role")

    def is_room_admin(self, principal: Principal, room: Room) -> bool:
        """Tenant admin role, the room's creator, or a member with the room role admin
        (all within the room's own tenant)."""
        if room.tenant != principal.tenant:
            return False
        if ADMIN_ROLE in principal.roles or room.meta.get("created_by") == principal.user_id:
            return True
        member = self._members.member(room.key, principal.user_id)
        return member is not None and member.get("role") == ADMIN_ROLE

    def require_room_admin(self, principal: Principal, room: Room) -> None:
        if not self.is_room_admin(principal, room):
            raise Forbidden("requires a room admin")

    def may_see(self, principal: Principal, room: Room) -> bool:
        """Anyone of the tenant sees a public room; a private one only its members and admins.

        Rooms are looked up by the principal's tenant; the tenant is compared here too, so
        a rule never depends on how its caller found the room."""
        if room.tenant != principal.tenant:
            return False
        if not room.meta.get("private"):
            return True
        return self._members.member(room.key, principal.user_id) is not None or self.is_room_admin(
            principal, room
        )

    def require_visible(self, principal: Principal, room: Room | None, name: str) -> Room:
        """``room`` if the principal may see it; NotFound otherwise (absent or hidden alike,
        so a private room's existence is not revealed)."""
        if room is None or not self.may_see(principal, room):
            raise NotFound(f"no room {name}")
        return room

    def may_change_message(self, principal: Principal, room: Room, record: dict[str, Any]) -> bool:
        return record.get("sender") == principal.user_id or self.is_room_admin(principal, room)

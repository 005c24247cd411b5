"""Room settings and membership: changes take effect in memory only once they are durable.

An archive, a new topic or a privacy change is written as the room's metadata record with
the next group commit; the in-memory room (what every permission check reads) is replaced
when that commit succeeds, never before: a failed commit leaves the room as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from ..auth import Principal
from ..errors import Conflict, Forbidden, NotFound
from ..store.keys import member_key
from .access import AccessRules, MemberSource
from .pipeline import MessagePipeline
from .rooms import Room, RoomDirectory

MemberRecord = dict[str, Any]


class RoomAdmin:
    def __init__(
        self,
        rooms: RoomDirectory,
        pipeline: MessagePipeline,
        members: MemberSource,
        access: AccessRules,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rooms = rooms
        self._pipeline = pipeline
        self._members = members
        self._access = access
        self._clock = clock

    async def create(self, principal: Principal, name: str, **settings: Any) -> Room:
        """Create ``name`` with ``settings`` (topic, metadata, private, retention)."""
        if not self._rooms.may_create(principal):
            raise Forbidden("your roles may not create rooms")
        if self._rooms.find(principal.tenant, name) is not None:
            raise Conflict(f"room {name} exists")
        room = self._rooms.create(principal, name, **settings)

        def persisted() -> None:
            room.persisted = True

        try:
            await self._pipeline.submit_meta(
                [("room", room.key.encode(), room.meta_json())], persisted
            )
        except Exception:
            self._rooms.forget(room)
            raise
        return room

    async def update(self, principal: Principal, room: Room, changes: dict[str, Any]) -> Room:
        """Apply ``changes`` to the room's metadata once they are committed (room admin)."""
        self._access.require_room_admin(principal, room)
        await self._commit_meta(room, {**room.meta, **changes})
        return room

    async def archive(self, principal: Principal, room: Room) -> Room:
        """Make the room read-only (room admin); archiving twice changes nothing."""
        self._access.require_room_admin(principal, room)
        if not room.meta.get("archived"):
            await self._commit_meta(room, {**room.meta, "archived": int(self._clock() * 1000)})
        return room

    async def _commit_meta(self, room: Room, meta: dict[str, Any]) -> None:
        def committed() -> None:
            room.meta = meta
            room.persisted = True

        await self._pipeline.submit_meta(
            [("room", room.key.encode(), orjson.dumps(meta))], committed
        )

    async def put_member(
        self, principal: Principal, room: Room, user_id: str, role: str
    ) -> MemberRecord:
        self._access.require_room_admin(principal, room)
        member = {
            "user_id": user_id,
            "role": role,
            "added_by": principal.user_id,
            "added_at": int(self._clock() * 1000),
        }
        await self._pipeline.submit_meta(
            [("member", member_key(room.key, user_id), orjson.dumps(member))]
        )
        return member

    async def remove_member(self, principal: Principal, room: Room, user_id: str) -> None:
        """Members may leave on their own; removing someone else needs a room admin."""
        if user_id != principal.user_id:
            self._access.require_room_admin(principal, room)
        if self._members.member(room.key, user_id) is None:
            raise NotFound(f"{user_id} is not a member of {room.name}")
        await self._pipeline.submit_meta([("member", member_key(room.key, user_id), None)])

"""Rooms: tenant-scoped, created on first join by a permitted role, sequenced.

A room is addressed by (tenant, name); the tenant comes from the verified
token, never from the client, so one tenant cannot name another's room.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import islice
from typing import Any, Protocol

import orjson

from ..auth import Principal
from ..errors import NotFound
from ..store.keys import room_key


class RoomSource(Protocol):
    def room_meta(self, rkey: str) -> dict[str, Any] | None: ...
    def last_seq(self, rkey: str) -> int: ...


class Room:
    """In-memory state of one room on this node."""

    __slots__ = ("key", "tenant", "name", "seq", "delivered", "meta", "presence", "persisted")

    def __init__(
        self, tenant: str, name: str, meta: dict[str, Any], last_seq: int, persisted: bool
    ) -> None:
        self.key = room_key(tenant, name)
        self.tenant = tenant
        self.name = name
        self.seq = last_seq  # last seq handed to a commit batch
        self.delivered = last_seq  # last seq fanned out to members (<= seq)
        self.meta = meta
        self.persisted = persisted
        # user id -> [kind, open sessions in this room]
        self.presence: dict[str, list[Any]] = {}

    def add_presence(self, user_id: str, kind: str) -> bool:
        """Count a session of ``user_id``; True if the user was not present before."""
        entry = self.presence.get(user_id)
        if entry is None:
            self.presence[user_id] = [kind, 1]
            return True
        entry[1] += 1
        return False

    def remove_presence(self, user_id: str) -> bool:
        """Uncount a session; True if it was the user's last one here."""
        entry = self.presence.get(user_id)
        if entry is None:
            return False
        entry[1] -= 1
        if entry[1] <= 0:
            del self.presence[user_id]
            return True
        return False

    def members(self, limit: int | None = None) -> list[dict[str, str]]:
        """Present users, in arrival order, at most ``limit``."""
        items = islice(self.presence.items(), limit)  # O(limit), not O(room)
        return [{"user_id": uid, "kind": entry[0]} for uid, entry in items]

    def meta_json(self) -> bytes:
        return orjson.dumps(self.meta)


class RoomDirectory:
    """Finds rooms in memory, then in the store; creates them for permitted roles."""

    def __init__(
        self,
        source: RoomSource,
        create_roles: tuple[str, ...],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._create_roles = frozenset(create_roles)
        self._clock = clock
        self._rooms: dict[str, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def find(self, tenant: str, name: str) -> Room | None:
        key = room_key(tenant, name)
        room = self._rooms.get(key)
        if room is None:
            meta = self._source.room_meta(key)
            if meta is None:
                return None
            room = Room(tenant, name, meta, self._source.last_seq(key), persisted=True)
            self._rooms[key] = room
        return room

    def require(self, principal: Principal, name: str) -> Room:
        """The caller's tenant's room ``name``, or NotFound."""
        room = self.find(principal.tenant, name)
        if room is None:
            raise NotFound(f"no room {name}")
        return room

    def may_create(self, principal: Principal) -> bool:
        return principal.has_any_role(self._create_roles)

    def open(self, principal: Principal, name: str) -> tuple[Room, bool]:
        """The room, created if absent and the principal may create rooms. (room, created)."""
        room = self.find(principal.tenant, name)
        if room is not None:
            return room, False
        if not self.may_create(principal):
            # Same answer as for a missing room: do not reveal what exists.
            raise NotFound(f"no room {name}")
        return self.create(principal, name), True

    def create(self, principal: Principal, name: str, **settings: Any) -> Room:
        """A new room of the principal's tenant, in memory (not yet persisted), with
        ``settings`` (topic, metadata, private, retention) in its metadata from the start."""
        meta = {
            "tenant": principal.tenant,
            "name": name,
            "created_by": principal.user_id,
            "created_at": int(self._clock() * 1000),
            **settings,
        }
        room = Room(principal.tenant, name, meta, 0, persisted=False)
        self._rooms[room.key] = room
        return room

    def forget(self, room: Room) -> None:
        """Drop a room whose creation did not commit (and that holds no entry)."""
        if not room.persisted and room.seq == 0 and self._rooms.get(room.key) is room:
            del self._rooms[room.key]

    def head(self, rkey: str) -> int:
        """The newest delivered seq of a room (from memory, else the store)."""
        room = self._rooms.get(rkey)
        return room.delivered if room is not None else self._source.last_seq(rkey)

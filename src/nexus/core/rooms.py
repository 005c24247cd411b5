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

    __slots__ = (
        "key",
        "tenant",
        "name",
        "seq",
        "delivered",
        "meta",
        "presence",
        "persisted",
        "remote",
        "on_presence",
    )

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
        # user id -> [kind, open sessions in this room on this node]
        self.presence: dict[str, list[Any]] = {}
        # Cluster mode: users present on other nodes (user id -> node -> kind), and the
        # hook told when a user's first (last) session on this node starts (ends).
        self.remote: dict[str, dict[str, str]] = {}
        self.on_presence: Callable[[Room, str, str, bool], None] | None = None

    def add_presence(self, user_id: str, kind: str) -> bool:
        """Count a session of ``user_id``; True if the user was not present before
        (on any node)."""
        entry = self.presence.get(user_id)
        if entry is None:
            self.presence[user_id] = [kind, 1]
            if self.on_presence is not None:
                self.on_presence(self, user_id, kind, True)
            return user_id not in self.remote
        entry[1] += 1
        return False

    def remove_presence(self, user_id: str) -> bool:
        """Uncount a session; True if it was the user's last one (on any node)."""
        entry = self.presence.get(user_id)
        if entry is None:
            return False
        entry[1] -= 1
        if entry[1] <= 0:
            del self.presence[user_id]
            if self.on_presence is not None:
                self.on_presence(self, user_id, entry[0], False)
            return user_id not in self.remote
        return False

    def remote_join(self, user_id: str, node: str, kind: str) -> bool:
        """Another node has the user here now; True if the user was present nowhere."""
        nodes = self.remote.get(user_id)
        if nodes is None:
            self.remote[user_id] = {node: kind}
            return user_id not in self.presence
        nodes[node] = kind
        return False

    def remote_leave(self, user_id: str, node: str) -> bool:
        """Another node no longer has the user here; True if the user is present nowhere."""
        nodes = self.remote.get(user_id)
        if nodes is None or nodes.pop(node, None) is None:
            return False
        if nodes:
            return False
        del self.remote[user_id]
        return user_id not in self.presence

    @property
    def present_count(self) -> int:
        """Users present on any node."""
        if not self.remote:
            return len(self.presence)
        return len(self.presence) + sum(1 for u in self.remote if u not in self.presence)

    def members(self, limit: int | None = None) -> list[dict[str, str]]:
        """Present users (this node's first, in arrival order), at most ``limit``."""
        items = islice(self.presence.items(), limit)  # O(limit), not O(room)
        out = [{"user_id": uid, "kind": entry[0]} for uid, entry in items]
        if self.remote and (limit is None or len(out) < limit):
            for uid, nodes in self.remote.items():
                if uid not in self.presence:
                    out.append({"user_id": uid, "kind": next(iter(nodes.values()))})
                    if limit is not None and len(out) >= limit:
                        break
        return out

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
        # Cluster mode: told of every room loaded or created here (the engine follows it).
        self.on_load: Callable[[Room], None] | None = None

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
            if self.on_load is not None:
                self.on_load(room)
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
        if self.on_load is not None:
            self.on_load(room)
        return room

    def loaded(self, rkey: str) -> Room | None:
        """The room if it is in memory here (no store read)."""
        return self._rooms.get(rkey)

    def refresh(self, rkey: str, meta: dict[str, Any]) -> None:
        """Another node changed the room's settings: take them."""
        room = self._rooms.get(rkey)
        if room is not None:
            room.meta = meta
            room.persisted = True

    def forget(self, room: Room) -> None:
        """Drop a room whose creation did not commit (and that holds no entry)."""
        if not room.persisted and room.seq == 0 and self._rooms.get(room.key) is room:
            del self._rooms[room.key]

    def head(self, rkey: str) -> int:
        """The newest delivered seq of a room (from memory, else the store)."""
        room = self._rooms.get(rkey)
        return room.delivered if room is not None else self._source.last_seq(rkey)

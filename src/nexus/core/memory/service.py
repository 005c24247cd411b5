"""Search and memory for one principal at a time: who may find what, and every memory
change written as a room event through the one write path.

The WebSocket handlers, the HTTP API and the agents' tools call ``Memory``; none of them
reads the search file or decides visibility on its own. Blocking SQLite work runs on a
worker thread.

Memory changes, in order: the event (``memory.written``, ``memory.superseded``,
``memory.forgotten``) is committed to a room log as the acting principal and acknowledged;
then the record is stored (committed to SQLite) and returned. A crash between the two
loses nothing: the indexer applies the same event from the log when it catches up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from ...auth import Principal
from ...errors import BadRequest, Conflict, Forbidden, NotFound
from ..access import AccessRules
from ..caller import OneWrite
from ..context import RetrievedItem
from ..rooms import Room, RoomDirectory
from ..writes import RoomWrites
from .query import match_expression, ranked
from .store import (
    MEMORY_FORGOTTEN,
    MEMORY_SUPERSEDED,
    MEMORY_WRITTEN,
    MemoryScopeFilter,
    SearchStore,
)

AUDIT_ROOM = "memory-audit"  # per tenant, private: events of memories that have no room
SCOPES = ("tenant", "room", "user", "agent")
TEXT_MAX_BYTES = 4096
MS_MAX = 1 << 53  # JSON-safe integers
SEARCH_LIMIT_MAX = 50
CANDIDATES = 5  # BM25 candidates per wanted hit, re-ranked with recency
ROOMS_SCANNED_MAX = 10_000  # rooms of a tenant checked for visibility per search
WRITE_TIMEOUT_S = 10.0


def _int_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MS_MAX:
        raise BadRequest(f"{name} must be an integer from 0 to 2^53 (ms since the epoch)")
    return value


class Memory:
    def __init__(
        self,
        store: SearchStore,
        rooms: RoomDirectory,
        access: AccessRules,
        writes: RoomWrites,
        room_list: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._rooms = rooms
        self._access = access
        self._writes = writes
        self._room_list = room_list  # LmdbStore: list_rooms(tenant, after, limit)
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock() * 1000)

    # -- visibility -------------------------------------------------------------------
    def visible_rooms(self, principal: Principal) -> list[Room]:
        """Rooms of the principal's tenant it may see (at most ``ROOMS_SCANNED_MAX``
        checked). Room values built for the check only: the directory's cache is left
        alone."""
        out: list[Room] = []
        after: str | None = None
        scanned = 0
        while scanned < ROOMS_SCANNED_MAX:
            page = self._room_list.list_rooms(principal.tenant, after, 1000)
            if not page:
                break
            for meta in page:
                room = Room(principal.tenant, str(meta["name"]), meta, 0, persisted=True)
                if self._access.may_see(principal, room):
                    out.append(room)
            scanned += len(page)
            after = str(page[-1]["name"])
        return out

    def _room(self, principal: Principal, name: Any, what: str = "room") -> Room:
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{what} must be a room name")
        return self._access.require_visible(
            principal, self._rooms.find(principal.tenant, name), name
        )

    def _scope_filter(self, principal: Principal) -> MemoryScopeFilter:
        return MemoryScopeFilter(
            principal.tenant,
            tuple(r.name for r in self.visible_rooms(principal)),
            principal.user_id,
            all_agents=self._access.is_tenant_admin(principal),
        )

    def _may_see_record(self, principal: Principal, record: dict[str, Any]) -> bool:
        if record["tenant"] != principal.tenant:
            return False
        scope, scope_id = record["scope"], record["scope_id"]
        if scope == "tenant":
            return True
        if scope == "room":
            room = self._rooms.find(principal.tenant, scope_id)
            return room is not None and self._access.may_see(principal, room)
        if scope == "user":
            return bool(scope_id == principal.user_id)
        return scope_id == principal.user_id or self._access.is_tenant_admin(principal)

    def _may_change_record(self, principal: Principal, record: dict[str, Any]) -> bool:
        if record["author"] == principal.user_id or self._access.is_tenant_admin(principal):
            return True
        if record["scope"] in ("user", "agent"):
            return bool(record["scope_id"] == principal.user_id)
        if record["scope"] == "room":
            room = self._rooms.find(principal.tenant, record["scope_id"])
            return room is not None and self._access.is_room_admin(principal, room)
        return False

    # -- message search ---------------------------------------------------------------
    async def search(
        self, principal: Principal, q: str, *, room: str | None = None, limit: int = 10
    ) -> list[dict[str, Any]]:
        """Messages (and finished agent replies) matching ``q`` in the rooms the principal
        may see (or in ``room``), best first: BM25 boosted by recency."""
        match = match_expression(q)
        if match is None:
            raise BadRequest("q must contain at least one word")
        if not 1 <= limit <= SEARCH_LIMIT_MAX:
            raise BadRequest(f"limit must be 1-{SEARCH_LIMIT_MAX}")
        rooms = [self._room(principal, room)] if room is not None else self.visible_rooms(principal)
        names = {r.key: r.name for r in rooms}
        hits = await asyncio.to_thread(
            self.store.search_messages, principal.tenant, list(names), match, limit * CANDIDATES
        )
        now = self._now()
        scored = sorted(hits, key=lambda h: ranked(h.bm25, h.ts, now), reverse=True)[:limit]
        return [
            {
                "room": names[h.room_key],
                "seq": h.seq,
                "message_id": h.entry_id,
                "kind": h.kind,
                "sender": h.sender,
                "ts": h.ts,
                "snippet": h.snippet,
                "score": round(ranked(h.bm25, h.ts, now), 4),
            }
            for h in scored
        ]

    # -- memory records ---------------------------------------------------------------
    async def write(self, principal: Principal, fields: dict[str, Any]) -> dict[str, Any]:
        """A new record from ``fields`` (text, scope, room, agent, source, valid_from,
        valid_until); its ``memory.written`` event is committed first."""
        text = self._text(fields.get("text"))
        scope = fields.get("scope") or ("room" if fields.get("room") else "tenant")
        if scope not in SCOPES:
            raise BadRequest(f"scope must be one of {', '.join(SCOPES)}")
        scope_room: Room | None = None
        if scope == "tenant":
            scope_id = ""
        elif scope == "room":
            scope_room = self._room(principal, fields.get("room"))
            scope_id = scope_room.name
        elif scope == "user":
            scope_id = principal.user_id
        else:
            agent = fields.get("agent") or principal.user_id
            if agent != principal.user_id and not self._access.is_tenant_admin(principal):
                raise Forbidden("only the agent itself or a tenant admin writes an agent's memory")
            if principal.kind != "agent" and agent == principal.user_id:
                raise BadRequest("agent scope: name the agent (field agent)")
            scope_id = str(agent)
        source = self._source(principal, fields.get("source"))
        record = self._record(
            principal, (principal.tenant, scope, scope_id), text, fields, None, source, None
        )
        # Where the event goes: the room the memory belongs to or came from; private
        # memories (user, agent) and tenant ones without a room go to the audit room.
        if scope_room is not None:
            room = scope_room
        elif scope == "tenant" and source is not None:
            room = self._room(principal, source["room"])
        else:
            room = self._audit_room(principal)
        ack = await self._append(principal, room, MEMORY_WRITTEN, {"memory": record})
        record["event_room"], record["event_seq"] = ack["room"], ack["seq"]
        await asyncio.to_thread(self.store.insert_memory, record)
        return record

    def _record(
        self,
        principal: Principal,
        where: tuple[str, str, str],
        text: str,
        fields: dict[str, Any],
        valid_until_before: int | None,
        source: dict[str, Any] | None,
        supersedes: str | None,
    ) -> dict[str, Any]:
        """A new record by ``principal`` at ``where`` (tenant, scope, scope id); its
        validity from ``fields`` (an absent valid_until keeps ``valid_until_before``)."""
        now = self._now()
        valid_from = _int_or_none(fields.get("valid_from"), "valid_from") or now
        valid_until = (
            _int_or_none(fields.get("valid_until"), "valid_until")
            if "valid_until" in fields
            else valid_until_before
        )
        if valid_until is not None and valid_until <= valid_from:
            raise BadRequest("valid_until must be after valid_from")
        tenant, scope, scope_id = where
        return {
            "id": uuid.uuid4().hex,
            "tenant": tenant,
            "scope": scope,
            "scope_id": scope_id,
            "text": text,
            "author": principal.user_id,
            "author_kind": principal.kind,
            "created_at": now,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "superseded_by": None,
            "supersedes": supersedes,
            "source": source,
        }

    async def update(
        self, principal: Principal, memory_id: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Supersede record ``memory_id`` with a new one (the fields given replace the
        old record's: text, valid_from, valid_until, source). The old record stays, with
        ``superseded_by`` set and ``valid_until`` closed at the new one's ``valid_from``."""
        old = await self._changeable(principal, memory_id)
        if old["superseded_by"] is not None:
            raise Conflict(f"memory {memory_id} was superseded by {old['superseded_by']}")
        text = self._text(fields["text"]) if "text" in fields else old["text"]
        source = (
            self._source(principal, fields.get("source")) if "source" in fields else old["source"]
        )
        record = self._record(
            principal,
            (old["tenant"], old["scope"], old["scope_id"]),
            text,
            fields,
            old["valid_until"],
            source,
            memory_id,
        )
        room = self._event_room(principal, old)
        ack = await self._append(
            principal, room, MEMORY_SUPERSEDED, {"memory": record, "superseded": memory_id}
        )
        record["event_room"], record["event_seq"] = ack["room"], ack["seq"]
        await asyncio.to_thread(self.store.supersede_memory, memory_id, record)
        return record

    async def forget(self, principal: Principal, memory_id: str) -> dict[str, Any]:
        """Remove record ``memory_id``: a ``memory.forgotten`` event, and the text of the
        event that created it blanked in the log (the record is gone from search and from
        a rebuild). Records it superseded are kept."""
        old = await self._changeable(principal, memory_id)
        room = self._event_room(principal, old)
        now = self._now()
        await self._append(
            principal,
            room,
            MEMORY_FORGOTTEN,
            {"memory_id": memory_id},
            patch=(int(old["event_seq"]), {"memory": {"id": memory_id}, "forgotten": now}),
        )
        await asyncio.to_thread(self.store.forget_memory, memory_id)
        return {**old, "text": "", "forgotten": now}

    async def get(self, principal: Principal, memory_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.memory, principal.tenant, memory_id)
        if record is None or not self._may_see_record(principal, record):
            raise NotFound(f"no memory {memory_id[:64]}")
        return record

    async def find(
        self,
        principal: Principal,
        q: str | None = None,
        *,
        scope: str | None = None,
        room: str | None = None,
        limit: int = 10,
        history: bool = False,
    ) -> list[dict[str, Any]]:
        """Records the principal may see: matching ``q`` by BM25 (newest first without
        it), current ones only unless ``history``; ``scope``/``room`` narrow them."""
        if not 1 <= limit <= SEARCH_LIMIT_MAX:
            raise BadRequest(f"limit must be 1-{SEARCH_LIMIT_MAX}")
        match = None
        if q is not None and q.strip():
            match = match_expression(q)
            if match is None:
                raise BadRequest("q must contain at least one word")
        only: tuple[str, str | None] | None = None
        if room is not None:
            only = ("room", self._room(principal, room).name)
        elif scope is not None:
            if scope not in SCOPES:
                raise BadRequest(f"scope must be one of {', '.join(SCOPES)}")
            # room: every room record the caller may see; agent: an admin's are all agents'
            only = (scope, principal.user_id if scope == "user" else None)
        rows = await asyncio.to_thread(
            self.store.search_memory,
            self._scope_filter(principal),
            match,
            limit,
            self._now(),
            history=history,
            only_scope=only,
        )
        return [{**record, "score": round(-score, 4)} for record, score in rows]

    async def retrieve(
        self, principal: Principal, room: Room, text: str, limit: int = 3
    ) -> tuple[RetrievedItem, ...]:
        """Current records relevant to ``text`` for an agent answering in ``room``:
        tenant-wide ones, the room's, and the agent's own (top ``limit`` by BM25)."""
        match = match_expression(text)
        if match is None:
            return ()
        scope = MemoryScopeFilter(principal.tenant, (room.name,), principal.user_id)
        rows = await asyncio.to_thread(self.store.search_memory, scope, match, limit, self._now())
        items = []
        for record, score in rows:
            source = record.get("source") or {}
            items.append(
                RetrievedItem(
                    id=f"memory:{record['id']}",
                    text=record["text"],
                    score=-score,
                    room=str(source.get("room", "")),
                    first_seq=source.get("first_seq"),
                    last_seq=source.get("last_seq"),
                )
            )
        return tuple(items)

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _text(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise BadRequest("text must be a non-empty string")
        if len(value.encode("utf-8", "surrogatepass")) > TEXT_MAX_BYTES:
            raise BadRequest(f"text exceeds {TEXT_MAX_BYTES} bytes")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("text is not valid UTF-8") from None
        return value

    def _source(self, principal: Principal, value: Any) -> dict[str, Any] | None:
        """Provenance: {room, first_seq, last_seq} (seqs optional), in a visible room."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise BadRequest("source must be an object {room, first_seq, last_seq}")
        room = self._room(principal, value.get("room"), "source.room")
        first = _int_or_none(value.get("first_seq"), "source.first_seq")
        last = _int_or_none(value.get("last_seq"), "source.last_seq")
        if first is not None and last is None:
            last = first
        if first is not None and last is not None and last < first:
            raise BadRequest("source.last_seq must not be below source.first_seq")
        return {"room": room.name, "first_seq": first, "last_seq": last}

    async def _changeable(self, principal: Principal, memory_id: str) -> dict[str, Any]:
        record = await self.get(principal, memory_id)
        if not self._may_change_record(principal, record):
            raise Forbidden("only the author, the owner or an admin may change this memory")
        return record

    def _event_room(self, principal: Principal, record: dict[str, Any]) -> Room:
        """The room of the record's first event: a record's whole history is one room's."""
        room = self._rooms.find(principal.tenant, str(record["event_room"]))
        if room is None:
            raise NotFound(f"room {record['event_room']} of memory {record['id']} is gone")
        return room

    def _audit_room(self, principal: Principal) -> Room:
        room = self._rooms.find(principal.tenant, AUDIT_ROOM)
        if room is None:
            # Private, and created by nobody (no user id is empty): only tenant admins see
            # it, whoever wrote the first memory.
            room = self._rooms.create(
                principal,
                AUDIT_ROOM,
                private=True,
                created_by="",
                topic="memory changes without a room of their own",
            )
            self._writes.persist_room(room)
        return room

    async def _append(
        self,
        principal: Principal,
        room: Room,
        kind: str,
        fields: dict[str, Any],
        patch: tuple[int, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        caller = OneWrite(principal, WRITE_TIMEOUT_S, "the memory event")
        self._writes.append(caller, room, kind, fields, rid="memory", patch=patch)
        return await caller.result()

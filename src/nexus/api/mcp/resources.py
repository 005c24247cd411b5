"""Rooms, their messages and tasks as MCP resources (JSON documents).

URIs (room names percent-encoded):
- ``nexus://rooms`` the rooms the caller may see;
- ``nexus://rooms/{room}`` one room;
- ``nexus://rooms/{room}/messages`` its newest entries; ``?after_seq=N`` the entries after
  seq N, oldest first (``limit`` up to ``history_max_limit``), with ``next_after_seq`` to
  go on from: the cursor a subscriber resumes from, so it misses nothing;
- ``nexus://rooms/{room}/tasks`` the room's tasks; ``nexus://tasks`` all the caller may
  see; ``nexus://tasks/{task_id}`` one task.
Permissions are the HTTP API's: a room the caller may not see does not exist for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import orjson

from ...auth import Principal
from ...errors import BadRequest, NotFound
from ..deps import ApiContext, visible_room

SCHEME = "nexus"
ROOMS_LISTED = 200  # rooms named in resources/list (templates cover the rest)
TEMPLATES = (
    ("nexus://rooms/{room}", "room", "A room: topic, privacy, newest seq"),
    (
        "nexus://rooms/{room}/messages{?after_seq,limit}",
        "room-messages",
        "A room's log: the newest entries, or those after after_seq (oldest first)",
    ),
    ("nexus://rooms/{room}/tasks", "room-tasks", "A room's tasks"),
    ("nexus://tasks/{task_id}", "task", "One task"),
)


def messages_uri(room: str) -> str:
    return f"{SCHEME}://rooms/{quote(room, safe='')}/messages"


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # rooms | room | messages | room-tasks | tasks | task
    name: str = ""  # room name or task id
    query: dict[str, list[str]] | None = None


def parse(uri: str) -> Target:
    """What a Nexus URI names; NotFound for anything else."""
    parts = urlsplit(uri)
    if parts.scheme != SCHEME:
        raise NotFound(f"no resource {uri[:200]}")
    path = [unquote(p) for p in parts.path.split("/")[1:] if p] if parts.path else []
    query = parse_qs(parts.query, keep_blank_values=True) if parts.query else None
    if parts.netloc == "rooms":
        if not path:
            return Target("rooms")
        if len(path) == 1:
            return Target("room", path[0])
        if len(path) == 2 and path[1] == "messages":
            return Target("messages", path[0], query)
        if len(path) == 2 and path[1] == "tasks":
            return Target("room-tasks", path[0])
    if parts.netloc == "tasks":
        if not path:
            return Target("tasks")
        if len(path) == 1:
            return Target("task", path[0])
    raise NotFound(f"no resource {uri[:200]}")


def int_param(query: dict[str, list[str]] | None, name: str, low: int) -> int | None:
    values = (query or {}).get(name)
    if not values:
        return None
    value = values[-1]
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) < low:
        raise BadRequest(f"{name} must be an integer >= {low}")
    return int(value)


def room_view(ctx: ApiContext, room: Any) -> dict[str, Any]:
    return {
        "name": room.name,
        "topic": room.meta.get("topic"),
        "private": bool(room.meta.get("private")),
        "archived": bool(room.meta.get("archived")),
        "head_seq": room.delivered,
        "messages": messages_uri(room.name),
    }


def visible_rooms(ctx: ApiContext, who: Principal, limit: int) -> list[Any]:
    rooms = []
    for meta in ctx.store.list_rooms(who.tenant, None, limit):
        room = ctx.rooms.find(who.tenant, meta["name"])
        if room is not None and ctx.access.may_see(who, room):
            rooms.append(room)
    return rooms


def read(ctx: ApiContext, who: Principal, uri: str) -> dict[str, Any]:
    """The JSON document at ``uri`` as the caller sees it."""
    target = parse(uri)
    if target.kind == "rooms":
        return {"rooms": [room_view(ctx, r) for r in visible_rooms(ctx, who, ROOMS_LISTED)]}
    if target.kind == "room":
        return room_view(ctx, visible_room(ctx, who, target.name))
    if target.kind == "messages":
        return _messages(ctx, who, target)
    if ctx.tasks is None:
        raise NotFound("tasks are not enabled on this server")
    if target.kind == "room-tasks":
        visible_room(ctx, who, target.name)
        return {"tasks": ctx.tasks.query(who, room=target.name, limit=200)}
    if target.kind == "tasks":
        return {"tasks": ctx.tasks.query(who, limit=200)}
    return ctx.tasks.get(who, target.name)


def _messages(ctx: ApiContext, who: Principal, target: Target) -> dict[str, Any]:
    room = visible_room(ctx, who, target.name)
    after = int_param(target.query, "after_seq", 0)
    limit = min(int_param(target.query, "limit", 1) or 100, ctx.settings.history_max_limit)
    if after is not None:
        records, more = ctx.writes.history(room, after=after, limit=limit)
    else:
        records, more = ctx.writes.history(room, limit=limit)
    entries = [orjson.loads(r) for r in records]
    last = entries[-1]["seq"] if entries else (after if after is not None else room.delivered)
    return {
        "room": room.name,
        "entries": entries,
        "has_more": more,
        "head_seq": room.delivered,
        # Read ``?after_seq=<next_after_seq>`` next: nothing is skipped, nothing repeated.
        "next_after_seq": last,
    }

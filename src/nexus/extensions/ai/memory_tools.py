"""The agents' memory tools: ``search_messages``, ``remember``, ``recall``.

Each runs as the agent's principal through ``core.memory.Memory``, so an agent finds only
what it may see (rooms it can see, its own and tenant-wide memories) and every memory it
writes is a ``memory.written`` event in the room log like anyone's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ...core.memory import Memory
from ...errors import NexusError
from .parts import ToolSpec
from .tools import Tool, ToolContext, ToolError

LIMIT_MAX = 20


def _limit(args: dict[str, Any], default: int) -> int:
    limit = args.get("limit", default)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= LIMIT_MAX:
        raise ToolError(f"limit must be an integer 1-{LIMIT_MAX}")
    return limit


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def memory_tools(memory: Memory) -> tuple[Tool, ...]:
    async def search_messages(ctx: ToolContext, args: dict[str, Any]) -> str:
        query, room = args.get("query"), args.get("room")
        if not isinstance(query, str) or not query.strip():
            raise ToolError("query must be a non-empty string")
        if room is not None and not isinstance(room, str):
            raise ToolError("room must be a room name")
        try:
            hits = await memory.search(ctx.principal, query, room=room, limit=_limit(args, 10))
        except NexusError as exc:
            raise ToolError(exc.message) from None
        if not hits:
            return f"no message I can see matches {query!r}"
        return "\n".join(
            f"[{h['room']} #{h['seq']} {_day(h['ts'])}] {h['sender']}: {h['snippet']}" for h in hits
        )

    async def remember(ctx: ToolContext, args: dict[str, Any]) -> str:
        text, scope = args.get("text"), args.get("scope", "room")
        if scope not in ("room", "tenant", "agent"):
            raise ToolError("scope must be room, tenant or agent")
        fields: dict[str, Any] = {"text": text, "scope": scope}
        if scope == "room":
            fields["room"] = ctx.room.name
        if scope != "agent":
            fields["source"] = {"room": ctx.room.name}
        until = args.get("valid_until")
        if until is not None:
            fields["valid_until"] = until
        try:
            record = await memory.write(ctx.principal, fields)
        except NexusError as exc:
            raise ToolError(exc.message) from None
        return f"remembered ({record['scope']} memory {record['id']})"

    async def recall(ctx: ToolContext, args: dict[str, Any]) -> str:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolError("query must be a non-empty string")
        try:
            records = await memory.find(ctx.principal, query, limit=_limit(args, 5))
        except NexusError as exc:
            raise ToolError(exc.message) from None
        if not records:
            return f"I remember nothing about {query!r}"
        return "\n".join(
            f"- {r['text']} ({r['scope']} memory {r['id']}, since {_day(r['valid_from'])},"
            f" by {r['author']})"
            for r in records
        )

    return (
        Tool(
            ToolSpec(
                "search_messages",
                "Search the messages of every room I can see (or one room), best matches "
                "first, each with its room and #seq.",
                {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "room": {"type": "string"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
                    },
                    "required": ["query"],
                },
            ),
            search_messages,
        ),
        Tool(
            ToolSpec(
                "remember",
                "Remember a fact for later: scope room (this room's members), tenant "
                "(everyone) or agent (only me).",
                {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "scope": {"type": "string", "enum": ["room", "tenant", "agent"]},
                        "valid_until": {"type": "integer", "description": "ms since the epoch"},
                    },
                    "required": ["text"],
                },
            ),
            remember,
        ),
        Tool(
            ToolSpec(
                "recall",
                "Recall remembered facts relevant to a query (current ones only).",
                {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
                    },
                    "required": ["query"],
                },
            ),
            recall,
        ),
    )

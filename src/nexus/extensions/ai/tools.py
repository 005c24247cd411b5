"""The tools agents may call, in one registry: built-ins here, the memory and task tools,
and per-agent sources (MCP servers' tools, skills) that say which tools an agent has in a
room when its turn starts.

Every call is visible in the room: the runtime writes ``tool.call`` before running it and
``tool.result`` after (arguments and results capped in size). A tool answers with text
(JSON where structure helps the model); a failure is an error text for the model, never an
exception that ends the turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ...auth import Principal
from ...core.agents import AgentConfig
from ...core.extension_host import ExtensionHost
from ...core.rooms import Room
from ...errors import NexusError
from ...protocol import MessageSend
from .caller import AgentCaller
from .parts import ToolSpec

RESULT_MAX_CHARS = 8_000
SEARCH_SCAN = 2_000  # newest entries a room search looks through


@dataclass(frozen=True, slots=True)
class ToolContext:
    host: ExtensionHost
    principal: Principal  # the agent
    caller: AgentCaller
    room: Room  # where the turn runs
    agent: AgentConfig | None = None
    message_id: str = ""  # the reply this turn writes (tool events point at it)
    call_id: str = ""  # the model's id of the call being run


Run = Callable[[ToolContext, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    run: Run


class ToolError(Exception):
    """A tool could not do what was asked: the message goes back to the model."""


class ToolSource(Protocol):
    """Tools that depend on the agent and the room (an agent's MCP servers, the skills in
    scope): asked once per turn, before the first round."""

    def tools_for(self, agent: AgentConfig, room: Room) -> Sequence[Tool]: ...


@dataclass(frozen=True, slots=True)
class TurnTools:
    """The tools of one turn: what the model is offered and what may run."""

    specs: tuple[ToolSpec, ...]
    tools: dict[str, Tool]


def _line(record: dict[str, Any]) -> str:
    kind = record.get("type")
    text = record.get("body") if kind == "message" else record.get("text", "")
    return f"[#{record.get('seq')}] {record.get('sender', record.get('by', '?'))}: {text}"


async def read_history(ctx: ToolContext, args: dict[str, Any]) -> str:
    limit = args.get("limit", 20)
    before = args.get("before_seq")
    if not isinstance(limit, int) or not 1 <= limit <= 50:
        raise ToolError("limit must be an integer 1-50")
    if before is not None and (not isinstance(before, int) or before < 1):
        raise ToolError("before_seq must be a positive integer")
    records, more = ctx.host.writes.history(ctx.room, before=before, limit=limit)
    lines = [_line(orjson.loads(r)) for r in records]
    return "\n".join(lines) + ("\n(older entries exist)" if more else "")


async def search_room(ctx: ToolContext, args: dict[str, Any]) -> str:
    query = args.get("query")
    limit = args.get("limit", 10)
    if not isinstance(query, str) or not query.strip():
        raise ToolError("query must be a non-empty string")
    if not isinstance(limit, int) or not 1 <= limit <= 20:
        raise ToolError("limit must be an integer 1-20")
    terms = [t.lower() for t in query.split() if t]
    records, _ = ctx.host.writes.history(ctx.room, limit=SEARCH_SCAN)
    hits = []
    for raw in reversed(records):  # newest first
        record = orjson.loads(raw)
        text = str(record.get("body") or record.get("text") or "").lower()
        if text and all(t in text for t in terms):
            hits.append(_line(record))
            if len(hits) >= limit:
                break
    return "\n".join(hits) if hits else f"no entry of this room mentions {query!r}"


async def post_message(ctx: ToolContext, args: dict[str, Any]) -> str:
    name, body = args.get("room"), args.get("body")
    if not isinstance(name, str) or not isinstance(body, str) or not body.strip():
        raise ToolError("room and body must be non-empty strings")
    host = ctx.host
    room = host.rooms.find(ctx.principal.tenant, name)
    if (
        room is None
        or not host.access.may_see(ctx.principal, room)
        or host.store.member(room.key, ctx.principal.user_id) is None
    ):
        raise ToolError(f"I am not a member of a room named {name}")
    try:
        ack = await ctx.caller.write(
            lambda rid: host.writes.post(
                ctx.caller, room, MessageSend(rid, room.name, body[: host.settings.max_body_bytes])
            )
        )
    except NexusError as exc:
        raise ToolError(f"could not post: {exc.message}") from None
    return f"posted to {room.name} as #{ack['seq']}"


BUILT_INS: tuple[Tool, ...] = (
    Tool(
        ToolSpec(
            "read_history",
            "Read earlier entries of this room (newest first unless before_seq is given).",
            {
                "type": "object",
                "properties": {
                    "before_seq": {"type": "integer", "minimum": 1},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                },
            },
        ),
        read_history,
    ),
    Tool(
        ToolSpec(
            "search_room",
            "Find entries of this room containing all the given words.",
            {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                },
                "required": ["query"],
            },
        ),
        search_room,
    ),
    Tool(
        ToolSpec(
            "post_message",
            "Post a message to another room I am a member of.",
            {
                "type": "object",
                "properties": {"room": {"type": "string"}, "body": {"type": "string"}},
                "required": ["room", "body"],
            },
        ),
        post_message,
    ),
)


class ToolRegistry:
    def __init__(self, tools: tuple[Tool, ...] = BUILT_INS) -> None:
        self._tools = {t.spec.name: t for t in tools}
        self._sources: list[ToolSource] = []

    def add_source(self, source: ToolSource) -> None:
        self._sources.append(source)

    def add(self, tool: Tool) -> None:
        if tool.spec.name in self._tools:
            raise ValueError(f"tool {tool.spec.name} exists")
        self._tools[tool.spec.name] = tool

    def names(self) -> set[str]:
        return set(self._tools)

    def describe(self) -> list[dict[str, str]]:
        return [
            {"name": t.spec.name, "description": t.spec.description}
            for t in sorted(self._tools.values(), key=lambda t: t.spec.name)
        ]

    def specs(self, allowed: tuple[str, ...]) -> tuple[ToolSpec, ...]:
        return tuple(self._tools[n].spec for n in allowed if n in self._tools)

    def for_turn(self, agent: AgentConfig, room: Room) -> TurnTools:
        """The agent's listed tools, then what each source gives it in ``room`` (a name
        taken already is not offered twice)."""
        tools = {n: self._tools[n] for n in agent.tools if n in self._tools}
        for source in self._sources:
            for tool in source.tools_for(agent, room):
                tools.setdefault(tool.spec.name, tool)
        return TurnTools(tuple(t.spec for t in tools.values()), tools)

    async def call(
        self, ctx: ToolContext, name: str, arguments: str, turn: TurnTools
    ) -> tuple[str, bool]:
        """Run tool ``name``; (result text, ok). Never raises for the tool's failures."""
        tool = turn.tools.get(name)
        if tool is None:
            return f"error: no tool named {name} is available", False
        try:
            args = orjson.loads(arguments or "{}")
        except orjson.JSONDecodeError:
            return "error: the arguments are not valid JSON", False
        if not isinstance(args, dict):
            return "error: the arguments must be a JSON object", False
        try:
            result = await tool.run(ctx, args)
        except ToolError as exc:
            return f"error: {exc}", False
        return result[:RESULT_MAX_CHARS], True

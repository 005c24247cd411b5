"""The tools Nexus offers MCP clients: each acts as the caller, through the same core calls
as the HTTP API (so tenant and room permissions are exactly the HTTP API's).

A tool answers a JSON object: in ``structuredContent`` and, for clients that read only
text, the same JSON as a text block. A refusal (not found, forbidden, bad input, a
conflict) is a tool error (``isError``) carrying ``{"error": {"code", "message"}}`` with
the API's error codes, so a model can read it and correct itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...auth import Principal
from ...core.tasks.model import STATES
from ...errors import BadRequest, NotFound, TooLarge
from ...protocol import MessageSend
from ...protocol.decoder import QUERY_MAX_CHARS
from ..deps import ApiContext, http_reply, json_size, visible_room
from ..schemas import ROOM_NAME, USER_ID
from .resources import room_view, visible_rooms

ID = Field(min_length=1, max_length=128)
RoomField = Field(pattern=ROOM_NAME, description="room name")


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PostMessage(Args):
    room: str = RoomField
    body: str = Field(min_length=1)
    reply_to: str | None = Field(None, min_length=1, max_length=128)
    client_msg_id: str | None = Field(
        None, min_length=1, max_length=128, description="makes a retry idempotent"
    )


class ReadHistory(Args):
    room: str = RoomField
    after_seq: int | None = Field(None, ge=0, description="entries after this seq, oldest first")
    before_seq: int | None = Field(None, ge=1, description="the newest entries before this seq")
    limit: int = Field(50, ge=1, le=200)


class SearchMessages(Args):
    query: str = Field(min_length=1, max_length=QUERY_MAX_CHARS)
    room: str | None = Field(None, pattern=ROOM_NAME)
    limit: int = Field(10, ge=1, le=50)


class SearchMemory(Args):
    query: str | None = Field(None, max_length=QUERY_MAX_CHARS)
    scope: Literal["tenant", "room", "user", "agent"] | None = None
    room: str | None = Field(None, pattern=ROOM_NAME)
    limit: int = Field(10, ge=1, le=50)


class TaskFields(Args):
    title: str | None = None
    description: str | None = None
    state: str | None = Field(None, description=" | ".join(STATES))
    assignees: list[str] | None = None
    due: int | None = Field(None, description="ms since the epoch")
    reminders: list[int] | None = None
    parent: str | None = None
    labels: list[str] | None = None


class CreateTask(TaskFields):
    room: str = RoomField
    title: str | None = Field(None, min_length=1)
    client_msg_id: str | None = Field(None, min_length=1, max_length=128)


class UpdateTask(TaskFields):
    task_id: str = ID
    expected_version: int = Field(ge=1, description="the version this change builds on")
    client_msg_id: str | None = Field(None, min_length=1, max_length=128)


class ContextTrace(Args):
    room: str = RoomField
    agent: str = Field(pattern=USER_ID)


class ListRooms(Args):
    limit: int = Field(100, ge=1, le=500)


Handler = Callable[[ApiContext, Principal, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class McpTool:
    name: str
    title: str
    description: str
    args: type[Args]
    run: Handler
    read_only: bool

    def input_schema(self) -> dict[str, Any]:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        return schema


def _check_body(ctx: ApiContext, body: str) -> None:
    json_size(body, "body")
    if len(body.encode("utf-8")) > ctx.settings.max_body_bytes:
        raise TooLarge(f"body exceeds {ctx.settings.max_body_bytes} bytes")


async def post_message(ctx: ApiContext, who: Principal, a: PostMessage) -> dict[str, Any]:
    room = visible_room(ctx, who, a.room)
    _check_body(ctx, a.body)
    reply = http_reply(who)
    ctx.writes.post(
        reply,
        room,
        MessageSend(None, a.room, a.body, client_msg_id=a.client_msg_id, reply_to=a.reply_to),
    )
    ack = await reply.result()
    return {k: ack.get(k) for k in ("room", "seq", "message_id", "client_msg_id", "duplicate")}


async def read_history(ctx: ApiContext, who: Principal, a: ReadHistory) -> dict[str, Any]:
    if a.after_seq is not None and a.before_seq is not None:
        raise BadRequest("give after_seq or before_seq, not both")
    room = visible_room(ctx, who, a.room)
    limit = min(a.limit, ctx.settings.history_max_limit)
    if a.after_seq is not None:
        records, more = ctx.writes.history(room, after=a.after_seq, limit=limit)
    else:
        records, more = ctx.writes.history(room, before=a.before_seq, limit=limit)
    entries = [orjson.loads(r) for r in records]
    return {"room": a.room, "entries": entries, "has_more": more, "head_seq": room.delivered}


def _memory(ctx: ApiContext) -> Any:
    if ctx.memory is None:
        raise NotFound("search and memory are not enabled on this server")
    return ctx.memory


async def search_messages(ctx: ApiContext, who: Principal, a: SearchMessages) -> dict[str, Any]:
    hits = await _memory(ctx).search(who, a.query, room=a.room, limit=a.limit)
    return {"query": a.query, "hits": hits}


async def search_memory(ctx: ApiContext, who: Principal, a: SearchMemory) -> dict[str, Any]:
    records = await _memory(ctx).find(who, a.query, scope=a.scope, room=a.room, limit=a.limit)
    return {"memories": records}


def _tasks(ctx: ApiContext) -> Any:
    if ctx.tasks is None:
        raise NotFound("tasks are not enabled on this server")
    return ctx.tasks


def _task_fields(a: Args, drop: tuple[str, ...]) -> dict[str, Any]:
    # Only what the client sent: an absent field is unchanged, an explicit null clears it.
    return {k: v for k, v in a.model_dump(exclude_unset=True).items() if k not in drop}


async def create_task(ctx: ApiContext, who: Principal, a: CreateTask) -> dict[str, Any]:
    fields = _task_fields(a, ("room", "client_msg_id"))
    task: dict[str, Any] = await _tasks(ctx).create(
        who, a.room, fields, client_msg_id=a.client_msg_id
    )
    return task


async def update_task(ctx: ApiContext, who: Principal, a: UpdateTask) -> dict[str, Any]:
    fields = _task_fields(a, ("task_id", "expected_version", "client_msg_id"))
    task: dict[str, Any] = await _tasks(ctx).update(
        who, a.task_id, fields, expected_version=a.expected_version, client_msg_id=a.client_msg_id
    )
    return task


async def context_trace(ctx: ApiContext, who: Principal, a: ContextTrace) -> dict[str, Any]:
    room = visible_room(ctx, who, a.room)
    return await ctx.agent_control.context_trace(who, room, a.agent)


async def list_rooms(ctx: ApiContext, who: Principal, a: ListRooms) -> dict[str, Any]:
    return {"rooms": [room_view(ctx, r) for r in visible_rooms(ctx, who, a.limit)]}


TOOLS: tuple[McpTool, ...] = (
    McpTool(
        "post_message",
        "Post a message",
        "Post a message to a room as the caller. Acknowledged once stored; a retry with the "
        "same client_msg_id is not posted twice.",
        PostMessage,
        post_message,
        read_only=False,
    ),
    McpTool(
        "read_history",
        "Read a room's history",
        "Read a room's log: with after_seq the entries after it (oldest first, to resume "
        "without a gap), otherwise the newest entries (before before_seq if given).",
        ReadHistory,
        read_history,
        read_only=True,
    ),
    McpTool(
        "search_messages",
        "Search messages",
        "Full-text search over the messages of the rooms the caller may see, best first.",
        SearchMessages,
        search_messages,
        read_only=True,
    ),
    McpTool(
        "search_memory",
        "Search memory",
        "List or search the memory records the caller may see (tenant, room, own).",
        SearchMemory,
        search_memory,
        read_only=True,
    ),
    McpTool(
        "create_task",
        "Create a task",
        "Create a task in a room (title required; assignees, due, reminders, labels optional).",
        CreateTask,
        create_task,
        read_only=False,
    ),
    McpTool(
        "update_task",
        "Update a task",
        "Change a task's fields or state; expected_version must be its current version "
        "(a stale one is refused with conflict: read the task and try again).",
        UpdateTask,
        update_task,
        read_only=False,
    ),
    McpTool(
        "get_context_trace",
        "An agent's context trace",
        "What an agent would see in a room now: its prompt and a trace of what was "
        "included or left out and why, with token counts.",
        ContextTrace,
        context_trace,
        read_only=True,
    ),
    McpTool(
        "list_rooms",
        "List rooms",
        "The rooms of the caller's tenant that the caller may see, with their newest seq.",
        ListRooms,
        list_rooms,
        read_only=True,
    ),
)
BY_NAME = {t.name: t for t in TOOLS}


def parse_args(tool: McpTool, arguments: dict[str, Any] | None) -> Args:
    """The tool's arguments, checked; BadRequest naming the first bad field."""
    try:
        return tool.args.model_validate(arguments or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "arguments"
        raise BadRequest(f"{where}: {first.get('msg', 'invalid')}") from None

"""Client -> server requests after validation. ``id`` is the client's request id, echoed back.

Plain (not frozen) slotted dataclasses: a frozen one costs ~0.35 us more to build, per
request, and nothing mutates these after decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RequestId = str | int | None


@dataclass(slots=True)
class Auth:
    id: RequestId
    token: str


@dataclass(slots=True)
class Ping:
    id: RequestId


@dataclass(slots=True)
class RoomJoin:
    id: RequestId
    room: str
    since: int | None = None


@dataclass(slots=True)
class RoomLeave:
    id: RequestId
    room: str


@dataclass(slots=True)
class MessageSend:
    id: RequestId
    room: str
    body: str
    client_msg_id: str | None = None
    reply_to: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(slots=True)
class MessageEdit:
    id: RequestId
    room: str
    message_id: str
    body: str
    client_msg_id: str | None = None


@dataclass(slots=True)
class MessageDelete:
    id: RequestId
    room: str
    message_id: str
    client_msg_id: str | None = None


@dataclass(slots=True)
class MessageCancel:
    """Stop a reply that is streaming (an agent's): it ends with finish_reason cancelled."""

    id: RequestId
    room: str
    message_id: str


@dataclass(slots=True)
class Typing:
    id: RequestId
    room: str
    active: bool = True


@dataclass(slots=True)
class History:
    id: RequestId
    room: str
    before: int | None = None
    after: int | None = None
    limit: int = 50


@dataclass(slots=True)
class TaskRequest:
    """``task.create`` / ``task.update`` / ``task.get`` / ``task.list``: the fields are
    checked by core/tasks, where HTTP and agent tools are checked too."""

    id: RequestId
    type: str
    params: dict[str, Any]


@dataclass(slots=True)
class Search:
    """Full-text search of the rooms the caller may see (or of one room)."""

    id: RequestId
    q: str
    room: str | None = None
    limit: int = 10


@dataclass(slots=True)
class MemoryWrite:
    id: RequestId
    fields: dict[str, Any]  # text, scope, room, agent, source, valid_from, valid_until


@dataclass(slots=True)
class MemorySearch:
    id: RequestId
    q: str | None = None
    scope: str | None = None
    room: str | None = None
    limit: int = 10
    history: bool = False


@dataclass(slots=True)
class MemoryUpdate:
    id: RequestId
    memory_id: str
    fields: dict[str, Any]  # text, valid_from, valid_until, source


@dataclass(slots=True)
class MemoryForget:
    id: RequestId
    memory_id: str


@dataclass(slots=True)
class ToolApprove:
    """A room member's decision on an agent's destructive tool call (a ``tool.approval``)."""

    id: RequestId
    room: str
    approval_id: str
    approve: bool


Request = (
    Auth
    | Ping
    | RoomJoin
    | RoomLeave
    | MessageSend
    | MessageEdit
    | MessageDelete
    | MessageCancel
    | Typing
    | History
    | TaskRequest
    | Search
    | MemoryWrite
    | MemorySearch
    | MemoryUpdate
    | MemoryForget
    | ToolApprove
)

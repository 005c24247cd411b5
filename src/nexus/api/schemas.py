"""Request and response bodies. The OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..protocol.decoder import ID_MAX_BYTES

ROOM_NAME = r"^[A-Za-z0-9_.:@-]{1,128}$"
USER_ID = r"^[A-Za-z0-9_.@:+-]{1,128}$"


def _id_bytes(value: str) -> str:
    if len(value.encode("utf-8", "surrogatepass")) > ID_MAX_BYTES:
        raise ValueError(f"at most {ID_MAX_BYTES} UTF-8 bytes")
    return value


# client_msg_id, reply_to, message ids: stored or looked up as LMDB keys, so bounded in bytes
KeyId = Annotated[
    str,
    Field(min_length=1, max_length=ID_MAX_BYTES, description=f"1-{ID_MAX_BYTES} UTF-8 bytes"),
    AfterValidator(_id_bytes),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorDetail(BaseModel):
    code: str
    message: str
    retry_after_ms: int | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Retention(Strict):
    max_count: int = Field(
        0, ge=0, le=2**31, description="keep at most this many entries (0: no limit)"
    )
    max_age: float = Field(0, ge=0, le=10 * 365 * 86400, description="seconds (0: no limit)")


class RoomCreate(Strict):
    name: str = Field(pattern=ROOM_NAME)
    topic: str | None = Field(None, max_length=512)
    metadata: dict[str, Any] = Field(default_factory=dict)
    private: bool = False
    retention: Retention | None = None


class RoomUpdate(Strict):
    topic: str | None = Field(None, max_length=512)
    metadata: dict[str, Any] | None = None
    private: bool | None = None
    retention: Retention | None = None


class Room(BaseModel):
    name: str
    tenant: str
    created_by: str
    created_at: int
    topic: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    private: bool = False
    archived: int | None = None
    retention: Retention | None = None
    seq: int
    first_seq: int
    online: int


class RoomList(BaseModel):
    rooms: list[Room]
    next_cursor: str | None


class MemberPut(Strict):
    role: Literal["admin", "member"] = "member"


class Member(BaseModel):
    user_id: str
    role: Literal["admin", "member"]
    added_by: str
    added_at: int


class MemberList(BaseModel):
    members: list[Member]
    next_cursor: str | None


class PresenceMember(BaseModel):
    user_id: str
    kind: Literal["human", "agent"]


class Presence(BaseModel):
    room: str
    members: list[PresenceMember]


class MessagePost(Strict):
    body: str = Field(min_length=1)
    reply_to: KeyId | None = None
    meta: dict[str, Any] | None = None
    client_msg_id: KeyId | None = None


class MessageEdit(Strict):
    body: str = Field(min_length=1)
    client_msg_id: KeyId | None = None


class MessageDelete(Strict):
    client_msg_id: KeyId | None = None


class Entry(BaseModel):
    """One room log entry: a message (current state), an edit/delete event, or an entry an
    extension wrote (an agent's ``message.started`` with its final text, ``message.completed``
    / ``message.failed``, ``tool.call`` / ``tool.result``, ``agent.notice``; see protocol.md
    §5.12-5.14). Fields beyond the common ones are the kind's own."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(examples=["message", "message.edited", "message.started"])
    room: str
    seq: int
    id: str
    ts: int
    sender: str | None = None
    sender_kind: Literal["human", "agent", "plugin"] | None = None
    body: str | None = None
    reply_to: str | None = None
    meta: dict[str, Any] | None = None
    edited: int | None = None
    edited_by: str | None = None
    deleted: int | None = None
    deleted_by: str | None = None
    target_id: str | None = None
    target_seq: int | None = None
    by: str | None = None


class EntryPage(BaseModel):
    messages: list[Entry]
    has_more: bool
    next_cursor: str | None


class WriteAck(BaseModel):
    room: str
    seq: int
    message_id: str
    client_msg_id: str | None
    duplicate: bool


class User(BaseModel):
    user_id: str
    kind: Literal["human", "agent"]
    roles: list[str]
    first_seen: int
    last_seen: int
    online: bool


class UserList(BaseModel):
    users: list[User]
    next_cursor: str | None


class ConnectionInfo(BaseModel):
    session_id: str
    user_id: str
    kind: Literal["human", "agent"]
    remote: str
    rooms: list[str]


class ConnectionList(BaseModel):
    connections: list[ConnectionInfo]


class ServerInfo(BaseModel):
    version: str
    started_at: int
    uptime_s: float
    connections: int
    rooms_loaded: int
    config: dict[str, Any]

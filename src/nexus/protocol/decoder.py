"""Decode one text frame into a validated request, or raise a NexusError with the request id."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import BadRequest, NexusError, TooLarge
from .requests import (
    Auth,
    History,
    MemoryForget,
    MemorySearch,
    MemoryUpdate,
    MemoryWrite,
    MessageCancel,
    MessageDelete,
    MessageEdit,
    MessageSend,
    Ping,
    Request,
    RequestId,
    RoomJoin,
    RoomLeave,
    Search,
    TaskRequest,
    ToolApprove,
    Typing,
)

ROOM_PATTERN = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
CLIENT_ID_MAX = 128  # request ids: characters (echoed, never stored)
# client_msg_id, message_id, reply_to: UTF-8 bytes. They become LMDB keys (limit 511 bytes
# for a whole key: tenant + user + client_msg_id must fit), so they are bounded in bytes.
ID_MAX_BYTES = 128
MAX_SEQ = (1 << 63) - 1
ROOMS_SEEN_MAX = 65536
TASK_REQUESTS = ("task.create", "task.update", "task.get", "task.list")
QUERY_MAX_CHARS = 1024  # search and memory.search queries
MEMORY_FIELDS_MAX_BYTES = 8192  # a memory.write / memory.update request's fields
MEMORY_WRITE_FIELDS = ("text", "scope", "room", "agent", "source", "valid_from", "valid_until")
MEMORY_UPDATE_FIELDS = ("text", "source", "valid_from", "valid_until")


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 16384
    max_meta_bytes: int = 4096
    history_max_limit: int = 100


class Decoder:
    """Turns frame payloads into request objects. Stateless apart from its limits."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        # Room names already validated: a set lookup instead of a regex per message.
        self._rooms_seen: set[str] = set()
        self._parsers: dict[str, Callable[[dict[str, Any], RequestId], Request]] = {
            "auth": self._auth,
            "ping": self._ping,
            "room.join": self._join,
            "room.leave": self._leave,
            "message.send": self._send,
            "message.edit": self._edit,
            "message.delete": self._delete,
            "message.cancel": self._cancel,
            "typing": self._typing,
            "history": self._history,
            **dict.fromkeys(TASK_REQUESTS, self._task),
            "search": self._search,
            "memory.write": self._memory_write,
            "memory.search": self._memory_search,
            "memory.update": self._memory_update,
            "memory.forget": self._memory_forget,
            "tool.approve": self._approve,
        }

    def decode(self, payload: bytes | bytearray | memoryview | str) -> Request:
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise BadRequest("frame is not valid JSON") from None
        if type(obj) is dict and obj.get("type") == "message.send":
            send = self._fast_send(obj)
            if send is not None:
                return send
        if not isinstance(obj, dict):
            raise BadRequest("frame must be a JSON object")
        rid = obj.get("id")
        if rid is not None and not (
            (isinstance(rid, str) and len(rid) <= CLIENT_ID_MAX)
            or (isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) <= MAX_SEQ)
        ):
            raise BadRequest("id must be a string of at most 128 characters or an integer")
        kind = obj.get("type")
        if not isinstance(kind, str):
            raise BadRequest("missing or non-string field: type", request_id=rid)
        parser = self._parsers.get(kind)
        if parser is None:
            raise BadRequest(f"unknown type: {kind[:64]}", request_id=rid)
        try:
            return parser(obj, rid)
        except NexusError as exc:
            exc.request_id = rid
            raise

    def _fast_send(self, obj: dict[str, Any]) -> MessageSend | None:
        """The common ``message.send``, checked inline (about 1 µs less than the general
        parser). None hands anything unusual to the general path, which gives the exact
        error; both accept exactly the same frames (tests/unit/test_decoder_fuzz.py)."""
        rid = obj.get("id")
        if rid is not None:
            kind = type(rid)
            if not (
                (kind is str and len(rid) <= CLIENT_ID_MAX)
                or (kind is int and -MAX_SEQ <= rid <= MAX_SEQ)
            ):
                return None
        room = obj.get("room")
        if type(room) is not str or room not in self._rooms_seen:
            if type(room) is not str or not ROOM_PATTERN.fullmatch(room):
                return None
            if len(self._rooms_seen) >= ROOMS_SEEN_MAX:
                self._rooms_seen.clear()
            self._rooms_seen.add(room)
        body = obj.get("body")
        limit = self.limits.max_body_bytes
        if (
            type(body) is not str
            or not body
            or (len(body) * 4 > limit and len(body.encode("utf-8", "surrogatepass")) > limit)
        ):
            return None
        if obj.get("meta") is not None or obj.get("reply_to") is not None:
            return None  # the general parser measures meta and checks reply_to
        cmid = obj.get("client_msg_id")
        if cmid is not None and (
            type(cmid) is not str
            or not cmid
            or (len(cmid) > ID_MAX_BYTES // 4 and len(cmid.encode("utf-8")) > ID_MAX_BYTES)
        ):
            return None
        return MessageSend(rid, room, body, cmid)

    # -- field helpers -------------------------------------------------------
    @staticmethod
    def _room(obj: dict[str, Any]) -> str:
        room = obj.get("room")
        if not isinstance(room, str):
            raise BadRequest("missing or non-string field: room")
        if not ROOM_PATTERN.fullmatch(room):
            raise BadRequest("room must be 1-128 characters of A-Z a-z 0-9 _ . : @ -")
        return room

    @staticmethod
    def _seq(obj: dict[str, Any], name: str) -> int | None:
        value = obj.get(name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
            raise BadRequest(f"{name} must be a non-negative integer")
        return value

    @staticmethod
    def _opt_id(obj: dict[str, Any], name: str) -> str | None:
        """An optional id stored or looked up as a key: 1-128 UTF-8 bytes."""
        value = obj.get(name)
        if value is None:
            return None
        if (
            not isinstance(value, str)
            or not value
            or (
                len(value) > ID_MAX_BYTES // 4
                and len(value.encode("utf-8", "surrogatepass")) > ID_MAX_BYTES
            )
        ):
            raise BadRequest(f"{name} must be a string of 1-{ID_MAX_BYTES} UTF-8 bytes")
        return value

    # -- one parser per type -------------------------------------------------
    def _auth(self, obj: dict[str, Any], rid: RequestId) -> Auth:
        token = obj.get("token")
        if not isinstance(token, str) or not token:
            raise BadRequest("missing or non-string field: token")
        return Auth(rid, token)

    def _ping(self, obj: dict[str, Any], rid: RequestId) -> Ping:
        return Ping(rid)

    def _join(self, obj: dict[str, Any], rid: RequestId) -> RoomJoin:
        return RoomJoin(rid, self._room(obj), self._seq(obj, "since"))

    def _leave(self, obj: dict[str, Any], rid: RequestId) -> RoomLeave:
        return RoomLeave(rid, self._room(obj))

    def _body(self, obj: dict[str, Any]) -> str:
        body = obj.get("body")
        if not isinstance(body, str):
            raise BadRequest("missing or non-string field: body")
        if not body:
            raise BadRequest("body must not be empty")
        # A str's UTF-8 size is at most 4 bytes a character: encode only when that bound
        # does not settle it.
        if len(body) * 4 > self.limits.max_body_bytes and (
            len(body.encode("utf-8", "surrogatepass")) > self.limits.max_body_bytes
        ):
            raise TooLarge(f"body exceeds {self.limits.max_body_bytes} bytes")
        return body

    def _target(self, obj: dict[str, Any]) -> str:
        target = self._opt_id(obj, "message_id")
        if target is None:
            raise BadRequest("missing field: message_id")
        return target

    def _edit(self, obj: dict[str, Any], rid: RequestId) -> MessageEdit:
        return MessageEdit(
            rid,
            self._room(obj),
            self._target(obj),
            self._body(obj),
            self._opt_id(obj, "client_msg_id"),
        )

    def _delete(self, obj: dict[str, Any], rid: RequestId) -> MessageDelete:
        return MessageDelete(
            rid, self._room(obj), self._target(obj), self._opt_id(obj, "client_msg_id")
        )

    def _cancel(self, obj: dict[str, Any], rid: RequestId) -> MessageCancel:
        return MessageCancel(rid, self._room(obj), self._target(obj))

    def _send(self, obj: dict[str, Any], rid: RequestId) -> MessageSend:
        room = self._room(obj)
        body = self._body(obj)
        meta = obj.get("meta")
        if meta is not None:
            if not isinstance(meta, dict):
                raise BadRequest("meta must be an object")
            try:
                size = len(orjson.dumps(meta))
            except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
                raise BadRequest("meta is nested too deeply") from None
            if size > self.limits.max_meta_bytes:
                raise TooLarge(f"meta exceeds {self.limits.max_meta_bytes} bytes")
        return MessageSend(
            rid,
            room,
            body,
            client_msg_id=self._opt_id(obj, "client_msg_id"),
            reply_to=self._opt_id(obj, "reply_to"),
            meta=meta,
        )

    def _approve(self, obj: dict[str, Any], rid: RequestId) -> ToolApprove:
        approval_id = self._opt_id(obj, "approval_id")
        if approval_id is None:
            raise BadRequest("missing field: approval_id")
        approve = obj.get("approve")
        if not isinstance(approve, bool):
            raise BadRequest("approve must be a boolean")
        return ToolApprove(rid, self._room(obj), approval_id, approve)

    def _typing(self, obj: dict[str, Any], rid: RequestId) -> Typing:
        active = obj.get("active", True)
        if not isinstance(active, bool):
            raise BadRequest("active must be a boolean")
        return Typing(rid, self._room(obj), active)

    def _history(self, obj: dict[str, Any], rid: RequestId) -> History:
        room = self._room(obj)
        before, after = self._seq(obj, "before"), self._seq(obj, "after")
        if before is not None and after is not None:
            raise BadRequest("give before or after, not both")
        limit = obj.get("limit", 50)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest("limit must be a positive integer")
        return History(rid, room, before, after, min(limit, self.limits.history_max_limit))

    def _task(self, obj: dict[str, Any], rid: RequestId) -> TaskRequest:
        params = {k: v for k, v in obj.items() if k not in ("type", "id")}
        if "room" in params:
            params["room"] = self._room(obj)
        return TaskRequest(rid, obj["type"], params)

    # -- search and memory (docs/memory.md) ----------------------------------
    @staticmethod
    def _query(obj: dict[str, Any], required: bool) -> str | None:
        q = obj.get("q")
        if q is None and not required:
            return None
        if not isinstance(q, str) or not q.strip():
            raise BadRequest("q must be a non-empty string")
        if len(q) > QUERY_MAX_CHARS:
            raise TooLarge(f"q exceeds {QUERY_MAX_CHARS} characters")
        return q

    def _opt_room(self, obj: dict[str, Any]) -> str | None:
        return None if obj.get("room") is None else self._room(obj)

    @staticmethod
    def _limit(obj: dict[str, Any], default: int = 10, most: int = 50) -> int:
        limit = obj.get("limit", default)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= most:
            raise BadRequest(f"limit must be an integer 1-{most}")
        return limit

    @staticmethod
    def _fields(obj: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
        fields = {k: obj[k] for k in allowed if k in obj}
        try:
            size = len(orjson.dumps(fields))
        except orjson.JSONEncodeError:
            raise BadRequest("fields are not storable JSON") from None
        if size > MEMORY_FIELDS_MAX_BYTES:
            raise TooLarge(f"memory fields exceed {MEMORY_FIELDS_MAX_BYTES} bytes")
        return fields

    def _memory_id(self, obj: dict[str, Any]) -> str:
        memory_id = self._opt_id(obj, "memory_id")
        if memory_id is None:
            raise BadRequest("missing field: memory_id")
        return memory_id

    def _search(self, obj: dict[str, Any], rid: RequestId) -> Search:
        q = self._query(obj, True)
        assert q is not None
        return Search(rid, q, self._opt_room(obj), self._limit(obj))

    def _memory_write(self, obj: dict[str, Any], rid: RequestId) -> MemoryWrite:
        return MemoryWrite(rid, self._fields(obj, MEMORY_WRITE_FIELDS))

    def _memory_search(self, obj: dict[str, Any], rid: RequestId) -> MemorySearch:
        scope = obj.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise BadRequest("scope must be a string")
        history = obj.get("history", False)
        if not isinstance(history, bool):
            raise BadRequest("history must be a boolean")
        return MemorySearch(
            rid, self._query(obj, False), scope, self._opt_room(obj), self._limit(obj), history
        )

    def _memory_update(self, obj: dict[str, Any], rid: RequestId) -> MemoryUpdate:
        return MemoryUpdate(rid, self._memory_id(obj), self._fields(obj, MEMORY_UPDATE_FIELDS))

    def _memory_forget(self, obj: dict[str, Any], rid: RequestId) -> MemoryForget:
        return MemoryForget(rid, self._memory_id(obj))

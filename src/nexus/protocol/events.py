"""Server -> client events, encoded to JSON bytes (the frame payload).

A ``message`` event is encoded once when it is accepted; the same bytes are
stored in the room log, framed once and written to every member.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ..errors import NexusError
from .requests import RequestId

_dumps = orjson.dumps


def auth_ok(
    rid: RequestId, user_id: str, tenant: str, session_id: str, kind: str, roles: Iterable[str]
) -> bytes:
    return _dumps(
        {
            "type": "auth.ok",
            "id": rid,
            "user_id": user_id,
            "tenant": tenant,
            "session_id": session_id,
            "kind": kind,
            "roles": sorted(roles),
        }
    )


def pong(rid: RequestId, ts: int) -> bytes:
    return _dumps({"type": "pong", "id": rid, "ts": ts})


def room_joined(
    rid: RequestId,
    room: str,
    seq: int,
    first_seq: int,
    members: Sequence[dict[str, str]],
    members_total: int,
) -> bytes:
    return _dumps(
        {
            "type": "room.joined",
            "id": rid,
            "room": room,
            "seq": seq,
            "first_seq": first_seq,
            "members": list(members),
            "members_total": members_total,
        }
    )


def room_left(rid: RequestId, room: str) -> bytes:
    return _dumps({"type": "room.left", "id": rid, "room": room})


_MESSAGE = (
    b'{"type":"message","room":"%s","seq":%d,"id":"%s","sender":"%s","sender_kind":"%s",'
    b'"ts":%d,"body":%s,"reply_to":%s,"meta":%s}'
)


def message(
    room: str,
    seq: int,
    msg_id: str,
    sender: str,
    sender_kind: str,
    ts: int,
    body: str,
    reply_to: str | None,
    meta: dict[str, Any] | None,
) -> bytes:
    """A message record (stored, fanned out, replayed): byte for byte what orjson makes of
    the same dict, filled into a template. Room names, user ids, entry ids and kinds are
    validated against JSON-safe alphabets at intake; body, reply_to and meta are encoded
    by orjson (tests/unit/test_events.py checks the two agree)."""
    return _MESSAGE % (
        room.encode(),
        seq,
        msg_id.encode(),
        sender.encode(),
        sender_kind.encode(),
        ts,
        _dumps(body),
        b"null" if reply_to is None else _dumps(reply_to),
        b"null" if meta is None else _dumps(meta),
    )


def message_edited(
    room: str, seq: int, event_id: str, target_id: str, target_seq: int, by: str, ts: int, body: str
) -> bytes:
    return _dumps(
        {
            "type": "message.edited",
            "room": room,
            "seq": seq,
            "id": event_id,
            "target_id": target_id,
            "target_seq": target_seq,
            "by": by,
            "ts": ts,
            "body": body,
        }
    )


def message_deleted(
    room: str, seq: int, event_id: str, target_id: str, target_seq: int, by: str, ts: int
) -> bytes:
    return _dumps(
        {
            "type": "message.deleted",
            "room": room,
            "seq": seq,
            "id": event_id,
            "target_id": target_id,
            "target_seq": target_seq,
            "by": by,
            "ts": ts,
        }
    )


def room_event(
    kind: str,
    room: str,
    seq: int,
    event_id: str,
    sender: str,
    sender_kind: str,
    ts: int,
    fields: dict[str, Any],
) -> bytes:
    """A sequenced event of an extension's kind: the common head, then its own fields (which
    cannot override the head)."""
    head = {
        "type": kind,
        "room": room,
        "seq": seq,
        "id": event_id,
        "sender": sender,
        "sender_kind": sender_kind,
        "ts": ts,
    }
    return _dumps({**head, **{k: v for k, v in fields.items() if k not in head}})


_ACK = (
    b'{"type":"ack","id":%s,"room":"%s","seq":%d,"message_id":"%s","client_msg_id":%s,'
    b'"duplicate":%s}'
)


def ack(
    rid: RequestId,
    room: str,
    seq: int,
    msg_id: str,
    client_msg_id: str | None,
    duplicate: bool = False,
) -> bytes:
    """The writer's answer, once per write: filled into a template (room names and entry
    ids are from JSON-safe alphabets; the client's strings are encoded by orjson)."""
    return _ACK % (
        b"null" if rid is None else _dumps(rid),
        room.encode(),
        seq,
        msg_id.encode(),
        b"null" if client_msg_id is None else _dumps(client_msg_id),
        b"true" if duplicate else b"false",
    )


def cancel_ok(rid: RequestId, room: str, message_id: str) -> bytes:
    """A ``message.cancel`` was accepted: the reply will end with finish_reason cancelled."""
    return _dumps({"type": "cancel.ok", "id": rid, "room": room, "message_id": message_id})


def approval_decided(rid: RequestId, decision: dict[str, Any]) -> bytes:
    """A ``tool.approve`` was committed: ``decision`` has room, approval_id, approved, seq."""
    return _dumps({"type": "tool.approve.ok", "id": rid, **decision})


def presence(room: str, user_id: str, kind: str, action: str) -> bytes:
    return _dumps(
        {"type": "presence", "room": room, "user_id": user_id, "kind": kind, "action": action}
    )


def typing(room: str, user_id: str, kind: str, active: bool) -> bytes:
    return _dumps(
        {"type": "typing", "room": room, "user_id": user_id, "kind": kind, "active": active}
    )


def history_page(rid: RequestId, room: str, records: Sequence[bytes], has_more: bool) -> bytes:
    """Splice stored message records into a page without decoding them."""
    head = _dumps({"type": "history.page", "id": rid, "room": room, "has_more": has_more})
    return b"".join((head[:-1], b',"messages":[', b",".join(records), b"]}"))


def error(exc: NexusError) -> bytes:
    body: dict[str, Any] = {
        "type": "error",
        "id": exc.request_id,
        "code": exc.code,
        "message": exc.message,
    }
    body.update(exc.details())
    return _dumps(body)


# -- search and memory answers (docs/memory.md) ------------------------------------------
def search_results(rid: RequestId, q: str, hits: Sequence[dict[str, Any]]) -> bytes:
    return _dumps({"type": "search.results", "id": rid, "q": q, "hits": list(hits)})


def memory_record(rid: RequestId, record: dict[str, Any]) -> bytes:
    """The answer to memory.write, memory.update (the new record) and memory.forget."""
    return _dumps({"type": "memory.record", "id": rid, "memory": record})


def memory_results(rid: RequestId, records: Sequence[dict[str, Any]]) -> bytes:
    return _dumps({"type": "memory.results", "id": rid, "memories": list(records)})

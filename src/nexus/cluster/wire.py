"""Names and encodings on the NATS side: one subject per room (hex-encoded tenant and room
name: subject tokens cannot hold ``.``, ``*``, ``>`` or spaces), the envelope of one stored
entry, the keys of the metadata and presence buckets."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..store.keys import room_key, split_room_key

SEQ_HEADER = "Nexus-Seq"
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a failed expected-last check


def room_subject(stream: str, rkey: str) -> str:
    tenant, name = split_room_key(rkey)
    return f"{stream}.r.{tenant.encode().hex()}.{name.encode().hex()}"


def room_key_of(tenant_hex: str, room_hex: str) -> str:
    """The room key of a subject's two hex tokens."""
    return room_key(bytes.fromhex(tenant_hex).decode(), bytes.fromhex(room_hex).decode())


def stream_subjects(stream: str) -> str:
    return f"{stream}.r.>"


def msg_id(ckey: bytes | None, event_id: str) -> str:
    """JetStream's dedup key: the client key (tenant, user, client_msg_id) when there is
    one, so a resend on any node is the same message; else the entry id."""
    if ckey is None:
        return event_id
    return "c" + hashlib.sha256(ckey).hexdigest()


def encode(kind: str, entry: Any) -> bytes:
    """``[head]\\n<record>``: the record (exactly what clients receive) after one JSON
    line of what the cache needs besides it."""
    _, seq, event_id, record, ckey, accepted_ms, patch = entry
    head: bytes = orjson.dumps(
        [kind, seq, event_id, None if ckey is None else ckey.hex(), accepted_ms, patch]
    )
    return b"%b\n%b" % (head, bytes(record))


def decode(payload: bytes) -> tuple[str, int, str, bytes | None, int, Any, bytes]:
    """(kind, seq, event id, client key, accepted ms, patch, record)."""
    head, _, record = payload.partition(b"\n")
    kind, seq, event_id, ckey, accepted_ms, patch = orjson.loads(head)
    if patch is not None:
        patch = (int(patch[0]), dict(patch[1]))
    return (
        str(kind),
        int(seq),
        str(event_id),
        None if ckey is None else bytes.fromhex(ckey),
        int(accepted_ms),
        patch,
        record,
    )


def meta_key(db: str, key: bytes) -> str:
    return f"{db}.{key.hex()}"


def parse_meta_key(key: str) -> tuple[str, bytes] | None:
    db, _, hexed = key.partition(".")
    try:
        return db, bytes.fromhex(hexed)
    except ValueError:
        return None


def presence_key(node: str, rkey: str, user: str) -> str:
    return f"{node}.{rkey.encode().hex()}.{user.encode().hex()}"


def parse_presence_key(key: str) -> tuple[str, str, str] | None:
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        return parts[0], bytes.fromhex(parts[1]).decode(), bytes.fromhex(parts[2]).decode()
    except ValueError:
        return None

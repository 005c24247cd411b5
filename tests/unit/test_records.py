"""records.pyx (message and ack records, entry ids) against the plain-Python model:
``protocol.events`` encodes the same records with orjson."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexus._speedups import records
from nexus.protocol import events


def _json(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value)


@given(
    st.from_regex(r"[A-Za-z0-9_.:@-]{1,128}", fullmatch=True),
    st.integers(0, 2**63 - 1),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_.@:+-]{1,128}", fullmatch=True),
    st.sampled_from(["human", "agent"]),
    st.integers(0, 2**53),
    st.text(min_size=1).map(lambda t: t.encode("utf-8", "ignore").decode() or "x"),
    st.none()
    | st.text(min_size=1, max_size=40).map(lambda t: t.encode("utf-8", "ignore").decode() or "y"),
    st.none() | st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1)),
)
def test_message_record_is_the_models_bytes(
    room: str,
    seq: int,
    msg_id: str,
    sender: str,
    kind: str,
    ts: int,
    body: str,
    reply_to: str | None,
    meta: dict[str, Any] | None,
) -> None:
    fast = records.message_record(
        room, seq, msg_id, sender, kind, ts, orjson.dumps(body), _json(reply_to), _json(meta)
    )
    assert fast == events.message(room, seq, msg_id, sender, kind, ts, body, reply_to, meta)
    assert orjson.loads(fast)["body"] == body


@given(
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=128).map(lambda t: t.encode("utf-8", "ignore").decode()),
    st.from_regex(r"[A-Za-z0-9_.:@-]{1,128}", fullmatch=True),
    st.integers(0, 2**63 - 1),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    st.none()
    | st.text(min_size=1, max_size=40).map(lambda t: t.encode("utf-8", "ignore").decode() or "c"),
    st.booleans(),
)
def test_ack_record_is_the_models_bytes(
    rid: str | int | None, room: str, seq: int, msg_id: str, cmid: str | None, dup: bool
) -> None:
    fast = records.ack_record(_json(rid), room, seq, msg_id, _json(cmid), dup)
    assert fast == events.ack(rid, room, seq, msg_id, cmid, duplicate=dup)


def test_negative_numbers_are_refused() -> None:
    with pytest.raises(ValueError):
        records.ack_record(None, "r", -1, "id", None)
    with pytest.raises(ValueError):
        records.message_record("r", 1, "id", "u", "human", -5, b'"b"', None, None)


def test_entry_ids_are_unique_time_ordered_hex() -> None:
    ids = records.EventIds()
    ids.head(1_700_000_000_000)
    first = [ids.next() for _ in range(1000)]
    ids.head(1_700_000_000_001)
    later = ids.next()
    assert len(set(first)) == 1000 and all(len(i) == 32 for i in first)
    assert all(c in "0123456789abcdef" for c in "".join(first))
    assert first == sorted(first) and later > first[-1]
    assert first[0][:12] == f"{1_700_000_000_000:012x}"
    other = records.EventIds()  # another process: another tag
    other.head(1_700_000_000_000)
    assert other.next()[12:22] != first[0][12:22]

"""LmdbStore on a real LMDB file: what a batch writes, how patches, retention and the
idempotency window change it, and the bounds of every read."""

from __future__ import annotations

from typing import Any

import lmdb
import orjson
import pytest

from nexus.core.observers import cursor_key, cursor_value
from nexus.protocol import events
from nexus.protocol.decoder import ID_MAX_BYTES
from nexus.store import LmdbStore, LogEntry, WriteBatch
from nexus.store.keys import client_key, log_prefix, member_key, room_key, user_key
from nexus.store.lmdb_store import ClientMessageRef

GENERAL = room_key("acme", "general")
GEN = room_key("acme", "gen")  # its log prefix sorts right before general's
GENERAL2 = room_key("acme", "general2")  # ...and this one right after


def message(
    rkey: str,
    seq: int,
    body: str = "",
    ts: int = 0,
    *,
    sender: str = "ann",
    client_msg_id: str | None = None,
    accepted_ms: int = 0,
    patch: tuple[int, dict[str, Any]] | None = None,
) -> LogEntry:
    event_id = f"{rkey.split(chr(0x1F))[1]}-{seq}"
    record = events.message(
        rkey.split("\x1f")[1], seq, event_id, sender, "human", ts, body or f"m{seq}", None, None
    )
    ckey = None if client_msg_id is None else client_key("acme", sender, client_msg_id)
    return LogEntry(rkey, seq, event_id, record, ckey, accepted_ms, patch)


def fill(store: LmdbStore, rkey: str, n: int, first: int = 1, ts_step: int = 0) -> None:
    store.apply(
        WriteBatch(entries=[message(rkey, s, ts=s * ts_step) for s in range(first, first + n)])
    )


def body(store: LmdbStore, rkey: str, seq: int) -> dict[str, Any]:
    raw = store.read_record(rkey, seq)
    assert raw is not None
    return dict(orjson.loads(raw))


def seqs(records: list[bytes]) -> list[int]:
    return [orjson.loads(r)["seq"] for r in records]


# -- apply ---------------------------------------------------------------------------------


def test_apply_writes_the_log_and_its_indexes(store: LmdbStore) -> None:
    meta = orjson.dumps({"tenant": "acme", "name": "general"})
    entry = message(GENERAL, 1, "hello", client_msg_id="c1", accepted_ms=5)
    store.apply(WriteBatch(rooms=[(GENERAL, meta)], entries=[entry]))
    assert store.read_record(GENERAL, 1) == entry.record
    assert store.message_location(entry.event_id) == (log_prefix(GENERAL), 1)
    assert store.client_message("acme", "ann", "c1") == ClientMessageRef(GENERAL, 1, entry.event_id)
    assert store.client_message("acme", "bob", "c1") is None
    assert store.room_meta(GENERAL) == {"tenant": "acme", "name": "general"}
    assert store.room_keys() == [GENERAL]
    assert (store.first_seq(GENERAL), store.last_seq(GENERAL)) == (1, 1)


def test_a_seq_is_written_once_and_a_refused_batch_writes_nothing(store: LmdbStore) -> None:
    fill(store, GENERAL, 1)
    fresh = message(GENERAL, 2, "new", client_msg_id="c2")
    clash = message(GENERAL, 1, "again")
    with pytest.raises(RuntimeError, match="log key exists"):
        store.apply(WriteBatch(rooms=[(GEN, b"{}")], entries=[fresh, clash]))
    assert store.last_seq(GENERAL) == 1 and body(store, GENERAL, 1)["body"] == "m1"
    assert store.message_location(fresh.event_id) is None
    assert store.client_message("acme", "ann", "c2") is None
    assert store.room_meta(GEN) is None


def test_meta_ops_put_and_delete(store: LmdbStore) -> None:
    member = orjson.dumps({"user_id": "bob", "role": "admin"})
    user = orjson.dumps({"user_id": "bob", "kind": "human"})
    store.apply(
        WriteBatch(
            meta=[
                ("member", member_key(GENERAL, "bob"), member),
                ("user", user_key("acme", "bob"), user),
            ]
        )
    )
    assert store.member(GENERAL, "bob") == {"user_id": "bob", "role": "admin"}
    assert store.members(GENERAL, None, 10) == [{"user_id": "bob", "role": "admin"}]
    assert store.user("acme", "bob") == {"user_id": "bob", "kind": "human"}
    store.apply(WriteBatch(meta=[("member", member_key(GENERAL, "bob"), None)]))
    assert store.member(GENERAL, "bob") is None and store.members(GENERAL, None, 10) == []


# -- patches -------------------------------------------------------------------------------


def test_an_edit_patches_its_target(store: LmdbStore) -> None:
    fill(store, GENERAL, 1)
    store.apply(
        WriteBatch(entries=[message(GENERAL, 2, patch=(1, {"body": "fixed", "edited": 7}))])
    )
    target = body(store, GENERAL, 1)
    assert (target["body"], target["edited"], target["seq"]) == ("fixed", 7, 1)


def test_a_patch_of_a_trimmed_target_is_ignored(store: LmdbStore) -> None:
    fill(store, GENERAL, 3)
    assert store.trim_room(GENERAL, 1, 0) == 2
    store.apply(WriteBatch(entries=[message(GENERAL, 4, patch=(1, {"body": "late edit"}))]))
    assert store.read_record(GENERAL, 1) is None  # not brought back by the patch
    assert store.first_seq(GENERAL) == 3 and store.last_seq(GENERAL) == 4


@pytest.mark.parametrize("same_batch", [False, True])
def test_a_delete_is_final(store: LmdbStore, same_batch: bool) -> None:
    fill(store, GENERAL, 1)
    delete = message(GENERAL, 2, patch=(1, {"body": "", "meta": None, "deleted": 9}))
    edit = message(GENERAL, 3, patch=(1, {"body": "resurrected", "edited": 10}))
    if same_batch:
        store.apply(WriteBatch(entries=[delete, edit]))
    else:
        store.apply(WriteBatch(entries=[delete]))
        store.apply(WriteBatch(entries=[edit]))
    target = body(store, GENERAL, 1)
    assert target["body"] == "" and target["deleted"] == 9 and "edited" not in target
    assert store.last_seq(GENERAL) == 3  # the edit event itself is still logged


# -- retention -----------------------------------------------------------------------------


def test_trim_by_count(store: LmdbStore) -> None:
    fill(store, GENERAL, 10)
    fill(store, GENERAL2, 3)
    assert store.trim_room(GENERAL, 3, 0) == 7
    assert (store.first_seq(GENERAL), store.last_seq(GENERAL)) == (8, 10)
    assert seqs(store.read_range(GENERAL, 0, 100, 100)) == [8, 9, 10]
    assert store.message_location("general-7") is None  # the id index follows
    assert store.message_location("general-8") == (log_prefix(GENERAL), 8)
    assert store.first_seq(GENERAL2) == 1  # the neighbour is untouched
    assert store.trim_room(GENERAL, 3, 0) == 0


def test_trim_by_age(store: LmdbStore) -> None:
    fill(store, GENERAL, 10, ts_step=1000)  # seq s stamped s * 1000 ms
    assert store.trim_room(GENERAL, 0, 5500) == 5
    assert store.first_seq(GENERAL) == 6
    assert store.trim_room(GENERAL, 0, 6000) == 0  # seq 6 is stamped exactly 6000: kept


@pytest.mark.parametrize("keep_last, older_than_ms", [(1, 0), (0, 10**15), (1, 10**15)])
def test_trim_keeps_the_newest_entry(store: LmdbStore, keep_last: int, older_than_ms: int) -> None:
    fill(store, GENERAL, 10, ts_step=1000)
    assert store.trim_room(GENERAL, keep_last, older_than_ms) == 9
    assert (store.first_seq(GENERAL), store.last_seq(GENERAL)) == (10, 10)


def test_trim_without_a_policy_or_past_its_budget(store: LmdbStore) -> None:
    fill(store, GENERAL, 10)
    assert store.trim_room(GENERAL, 0, 0) == 0
    assert store.trim_room(GENERAL, 1, 0, max_items=4) == 4
    assert store.first_seq(GENERAL) == 5
    assert store.trim_room(GEN, 1, 0) == 0  # an empty room


def test_prune_client_ids(store: LmdbStore) -> None:
    store.apply(
        WriteBatch(
            entries=[
                message(GENERAL, s, client_msg_id=f"c{s}", accepted_ms=s * 100) for s in (1, 2, 3)
            ]
        )
    )
    assert store.prune_client_ids(250) == 2
    assert store.client_message("acme", "ann", "c1") is None
    assert store.client_message("acme", "ann", "c2") is None
    assert store.client_message("acme", "ann", "c3") is not None
    assert store.read_record(GENERAL, 1) is not None  # only the idempotency key goes
    assert store.prune_client_ids(250) == 0


def test_prune_client_ids_stops_at_its_budget(store: LmdbStore) -> None:
    store.apply(
        WriteBatch(
            entries=[
                message(GENERAL, s, client_msg_id=f"c{s}", accepted_ms=1 if s < 6 else 100)
                for s in range(1, 7)
            ]
        )
    )  # c6, the last key, is recent
    assert store.prune_client_ids(10, max_items=3) == 3
    assert store.prune_client_ids(10, max_items=3) == 2
    assert store.prune_client_ids(10, max_items=3) == 0
    assert store.client_message("acme", "ann", "c6") is not None


@pytest.mark.parametrize("expired", [1, 3])
def test_prune_client_ids_when_the_last_key_is_expired(store: LmdbStore, expired: int) -> None:
    """py-lmdb's Cursor.delete() returns True after deleting the last key, leaving the
    cursor on nothing: the prune must stop there, not read an empty value (it raised, and
    an idle server's sweep failed every time once all its client ids had expired)."""
    store.apply(
        WriteBatch(
            entries=[
                message(GENERAL, s, client_msg_id=f"c{s}", accepted_ms=s * 100)
                for s in range(1, expired + 1)
            ]
        )
    )
    assert store.prune_client_ids(10**6) == expired
    assert store.client_message("acme", "ann", "c1") is None


# -- reads ---------------------------------------------------------------------------------


def test_first_and_last_seq_stay_in_their_room(store: LmdbStore) -> None:
    assert (store.first_seq(GENERAL), store.last_seq(GENERAL)) == (0, 0)
    fill(store, GEN, 4)
    fill(store, GENERAL2, 3, first=11)
    # general lies between gen and general2 in key order, and is empty
    assert (store.first_seq(GENERAL), store.last_seq(GENERAL)) == (0, 0)
    fill(store, GENERAL, 5, first=3)
    assert (store.first_seq(GEN), store.last_seq(GEN)) == (1, 4)
    assert (store.first_seq(GENERAL), store.last_seq(GENERAL)) == (3, 7)
    assert (store.first_seq(GENERAL2), store.last_seq(GENERAL2)) == (11, 13)  # last in the db
    assert store.last_seq(room_key("zzz", "z")) == 0  # past every key


def test_read_range_and_page_bounds(store: LmdbStore) -> None:
    fill(store, GEN, 3)
    fill(store, GENERAL, 10)
    fill(store, GENERAL2, 3)
    assert seqs(store.read_range(GENERAL, 0, 100, 100)) == list(range(1, 11))
    assert seqs(store.read_range(GENERAL, 2, 5, 100)) == [3, 4, 5]  # after < seq <= upto
    assert seqs(store.read_range(GENERAL, 2, 5, 2)) == [3, 4]
    assert seqs(store.read_range(GENERAL, 5, 5, 100)) == []
    assert seqs(store.read_range(GENERAL, 6, 5, 100)) == []
    assert seqs(store.read_range(GENERAL, 0, 100, 0)) == []
    records, last = store.read_page(GENERAL, 2, 5, 2)
    assert (seqs(records), last) == ([3, 4], 4)
    assert store.read_page(GENERAL, 10, 20, 5) == ([], 10)  # nothing: last is "after"
    assert store.read_page(GENERAL, 4, 4, 5) == ([], 4)
    assert seqs(store.read_range(GEN, 0, 100, 100)) == [1, 2, 3]
    assert seqs(store.read_range(GENERAL2, 0, 100, 100)) == [1, 2, 3]


def test_read_before_bounds(store: LmdbStore) -> None:
    fill(store, GEN, 3)
    fill(store, GENERAL, 10)
    assert seqs(store.read_before(GENERAL, 5, 2)) == [3, 4]  # the highest below, ascending
    assert seqs(store.read_before(GENERAL, 5, 100)) == [1, 2, 3, 4]
    assert seqs(store.read_before(GENERAL, 2, 100)) == [1]
    assert seqs(store.read_before(GENERAL, 1, 100)) == []
    assert seqs(store.read_before(GENERAL, 100, 3)) == [8, 9, 10]  # past the last key
    assert seqs(store.read_before(GENERAL, 5, 0)) == []
    assert seqs(store.read_before(GEN, 100, 100)) == [1, 2, 3]  # stops at general's keys
    fill(store, GENERAL2, 2)
    assert seqs(store.read_before(GENERAL, 100, 100)) == list(range(1, 11))


def test_reads_after_trimming_start_at_the_first_kept(store: LmdbStore) -> None:
    fill(store, GENERAL, 10)
    store.trim_room(GENERAL, 4, 0)
    assert seqs(store.read_range(GENERAL, 0, 10, 100)) == [7, 8, 9, 10]
    assert seqs(store.read_before(GENERAL, 9, 100)) == [7, 8]


def test_cursors_round_trip(store: LmdbStore) -> None:
    store.apply(
        WriteBatch(
            meta=[
                ("cursor", cursor_key("search", GENERAL), cursor_value(7)),
                ("cursor", cursor_key("search", GEN), cursor_value(2**40)),
                ("cursor", cursor_key("searcher", GENERAL), cursor_value(1)),
            ]
        )
    )
    assert store.cursors("search") == {GENERAL: 7, GEN: 2**40}
    assert store.cursors("searcher") == {GENERAL: 1}
    assert store.cursors("sear") == {}
    store.apply(
        WriteBatch(
            meta=[
                ("cursor", cursor_key("search", GENERAL), cursor_value(9)),
                ("cursor", cursor_key("search", GEN), None),
            ]
        )
    )
    assert store.cursors("search") == {GENERAL: 9}


# -- key sizes -----------------------------------------------------------------------------


def test_the_longest_keys_the_server_forms_fit(store: LmdbStore) -> None:
    """Tenant and user ids are at most 128 ASCII characters (auth.principal.ID_PATTERN),
    room names 128 (protocol.decoder.ROOM_PATTERN), client_msg_id and message ids 128 UTF-8
    bytes (ID_MAX_BYTES): every key built from them must fit LMDB's key limit."""
    assert store.max_key_bytes == 511
    tenant, user, room = "t" * 128, "u" * 128, "r" * 128
    cid = "\u00e9" * (ID_MAX_BYTES // 2)  # 2 bytes each in UTF-8
    assert len(cid.encode()) == ID_MAX_BYTES
    rkey = room_key(tenant, room)
    ckey = client_key(tenant, user, cid)
    assert len(ckey) == 128 + 128 + ID_MAX_BYTES + 2 <= store.max_key_bytes
    record = events.message(room, 1, "x" * ID_MAX_BYTES, user, "human", 0, "b", None, None)
    entry = LogEntry(rkey, 1, "x" * ID_MAX_BYTES, record, ckey, 0)
    store.apply(
        WriteBatch(
            rooms=[(rkey, b"{}")],
            entries=[entry],
            meta=[
                ("member", member_key(rkey, user), b"{}"),
                ("user", user_key(tenant, user), b"{}"),
                ("cursor", cursor_key("o" * 64, rkey), cursor_value(1)),
            ],
        )
    )
    assert store.client_message(tenant, user, cid) == ClientMessageRef(rkey, 1, "x" * 128)
    assert store.last_seq(rkey) == 1 and store.member(rkey, user) == {}


def test_a_key_over_the_limit_is_refused_whole(store: LmdbStore) -> None:
    entry = message(GENERAL, 1, client_msg_id="x" * 600)
    with pytest.raises(lmdb.BadValsizeError):
        store.apply(WriteBatch(entries=[entry]))
    assert store.last_seq(GENERAL) == 0

"""The write pipeline on a real LMDB file, with the writer run synchronously on the loop:
batching, acks after commit, duplicates, and failed commits isolated to the bad entry."""

from __future__ import annotations

import orjson

from doubles import Inbox, make_pipeline, new_room, post
from nexus.core.pipeline import PendingEntry
from nexus.store import LmdbStore
from nexus.store.keys import room_key


async def test_one_batch_per_iteration_acks_in_seq_order(store: LmdbStore) -> None:
    pipeline, writer = make_pipeline(store)
    room = new_room()
    ann = Inbox("ann")
    for i in range(10):
        post(pipeline, ann, room, f"m{i}", f"c{i}")
    await pipeline.wait_idle()
    assert writer.jobs == 1  # the ten entries shared one commit
    assert [e["seq"] for e in ann.events] == list(range(1, 11))
    assert [e["id"] for e in ann.events] == [f"m{i}" for i in range(10)]
    assert store.last_seq(room.key) == 10 and room.persisted


async def test_a_resend_in_flight_gets_the_same_ack(store: LmdbStore) -> None:
    pipeline, _ = make_pipeline(store)
    room = new_room()
    ann, again = Inbox("ann"), Inbox("ann")
    post(pipeline, ann, room, "once", "same")
    assert pipeline.answered_duplicate(again, "again", "same")
    await pipeline.wait_idle()
    [first], [second] = ann.events, again.events
    assert second["duplicate"] and second["seq"] == first["seq"] == 1
    # ...and after the commit the store answers it
    late = Inbox("ann")
    assert pipeline.answered_duplicate(late, "late", "same")
    assert late.events[0]["message_id"] == first["message_id"]


async def test_a_bad_entry_fails_alone(store: LmdbStore) -> None:
    """An entry LMDB refuses (its idempotency key is over the 511-byte key limit) gets an
    error; every other entry of its batch, other users' and other tenants', is stored,
    acknowledged and gaplessly sequenced."""
    pipeline, writer = make_pipeline(store)
    general, other = new_room(), new_room("general", tenant="globex")
    users = [Inbox(f"u{i}") for i in range(7)]
    outsider = Inbox("zed", tenant="globex")
    poison = Inbox("mallory")
    for i, user in enumerate(users[:3]):
        post(pipeline, user, general, f"before {i}", f"b{i}")
    post(pipeline, poison, general, "poison", "\U0001f600" * 128)  # 512 bytes of UTF-8
    for i, user in enumerate(users[3:]):
        post(pipeline, user, general, f"after {i}", f"a{i}")
    post(pipeline, outsider, other, "elsewhere", "z1")
    await pipeline.wait_idle()

    [refusal] = poison.events
    assert refusal["type"] == "error" and refusal["code"] == "internal"
    acks = [e for user in users for e in user.events]
    assert all(e["type"] == "ack" for e in acks) and len(acks) == 7
    assert sorted(e["seq"] for e in acks) == list(range(1, 8))  # no gap where it was
    assert outsider.events[0]["type"] == "ack" and outsider.events[0]["seq"] == 1
    stored = [orjson.loads(r) for r in store.read_range(general.key, 0, 100, 100)]
    assert [m["body"] for m in stored] == [
        "before 0",
        "before 1",
        "before 2",
        "after 0",
        "after 1",
        "after 2",
        "after 3",
    ]
    assert general.seq == general.delivered == 7
    assert writer.jobs > 1 and pipeline.failed_commits >= 1
    # The pipeline keeps working afterwards.
    post(pipeline, users[0], general, "later", "later")
    await pipeline.wait_idle()
    assert users[0].events[-1]["seq"] == 8


async def test_a_failed_room_creation_does_not_take_the_batch_down(store: LmdbStore) -> None:
    pipeline, _ = make_pipeline(store)
    good = new_room("good")
    bad = new_room("bad")
    bad.key = room_key("acme", "x" * 600)  # a room key LMDB cannot store
    pipeline.persist_room(bad)
    ann = Inbox("ann")
    post(pipeline, ann, good, "hello", "h1")
    done = pipeline.submit_meta([("user", b"acme\x1fann", b"{}")])
    await pipeline.wait_idle()
    assert ann.events[0]["type"] == "ack" and good.persisted and not bad.persisted
    await done  # the metadata write of the same batch was committed too
    assert store.user("acme", "ann") == {}


async def test_entries_of_a_room_that_cannot_be_created_fail_with_it(store: LmdbStore) -> None:
    pipeline, _ = make_pipeline(store)
    bad = new_room("bad")
    bad.key = room_key("acme", "x" * 600)
    ann, bob = Inbox("ann"), Inbox("bob")
    post(pipeline, ann, bad, "lost", "l1")
    post(pipeline, bob, new_room("fine"), "kept", "k1")
    await pipeline.wait_idle()
    assert ann.events[0]["type"] == "error" and bob.events[0]["type"] == "ack"
    assert bad.seq == 0  # nothing was handed out for it


async def test_an_entry_that_cannot_be_encoded_is_refused_alone(store: LmdbStore) -> None:
    """Fields validation let through but JSON cannot hold (an integer past 64 bits) get a
    bad_request; the entries around it are stored with gapless seqs."""
    pipeline, _ = make_pipeline(store)
    room, ann, bad = new_room(), Inbox("ann"), Inbox("bob")
    post(pipeline, ann, room, "first")
    pipeline.submit(
        PendingEntry(bad, bad.principal, "odd", room, "memory.written", None, fields={"n": 1 << 70})
    )
    post(pipeline, ann, room, "second")
    await pipeline.wait_idle()
    [refusal] = bad.events
    assert (refusal["type"], refusal["code"], refusal["id"]) == ("error", "bad_request", "odd")
    assert [(e["id"], e["seq"]) for e in ann.events] == [("first", 1), ("second", 2)]
    assert store.last_seq(room.key) == 2

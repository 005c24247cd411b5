"""RetentionSweeper: one pass trims each room by its policy, forgets expired client ids and
tells ``on_trim`` where each trimmed room now starts."""

from __future__ import annotations

import asyncio

import orjson

from doubles import FakeClock, InlineWriter
from nexus.protocol import events
from nexus.store import LmdbStore, LogEntry, WriteBatch
from nexus.store.keys import client_key, room_key, split_room_key
from nexus.store.retention import RetentionSweeper

NOW = 10_000.0  # seconds; entries below are stamped in ms before it
KEEP_3 = room_key("acme", "keep3")
YOUNG = room_key("acme", "young")
FOREVER = room_key("acme", "forever")
POLICIES = {KEEP_3: (3, 0.0), YOUNG: (0, 5.0), FOREVER: (0, 0.0)}


def seed(store: LmdbStore, *, last_client_id_recent: bool = True) -> None:
    """Ten entries per room, seq s stamped (NOW - 10 + s) s, each with a client id accepted
    100 s ago, but for the newest of forever: its client id sorts after every other one,
    accepted just now unless ``last_client_id_recent`` is False."""
    rooms, entries = [], []
    for rkey in POLICIES:
        rooms.append((rkey, b"{}"))
        for s in range(1, 11):
            ts = int((NOW - 10 + s) * 1000)
            last = rkey == FOREVER and s == 10
            cid = "~last" if last else f"{split_room_key(rkey)[1]}-{s}"
            accepted = ts if last and last_client_id_recent else int((NOW - 100) * 1000)
            name = split_room_key(rkey)[1]
            record = events.message(name, s, f"{name}-{s}", "ann", "human", ts, "b", None, None)
            entries.append(
                LogEntry(rkey, s, f"{rkey}-{s}", record, client_key("acme", "ann", cid), accepted)
            )
    store.apply(WriteBatch(rooms=rooms, entries=entries))


def sweeper(store: LmdbStore, trims: list[tuple[str, int]]) -> RetentionSweeper:
    return RetentionSweeper(
        store,
        InlineWriter(asyncio.get_running_loop()),  # type: ignore[arg-type]
        POLICIES.__getitem__,
        interval=60.0,
        idempotency_window=30.0,
        on_trim=lambda rkey, first: trims.append((rkey, first)),
        clock=FakeClock(NOW),
    )


async def test_a_sweep_trims_by_policy_and_reports_each_room(store: LmdbStore) -> None:
    seed(store)
    trims: list[tuple[str, int]] = []
    s = sweeper(store, trims)
    trimmed, forgotten = await s.sweep()
    # keep3 keeps seqs 8-10; young keeps what is at most 5 s old: seqs 5-10.
    assert sorted(trims) == sorted([(KEEP_3, 8), (YOUNG, 5)])
    assert trimmed == 7 + 4 and (s.trimmed, s.forgotten) == (trimmed, forgotten)
    assert store.first_seq(FOREVER) == 1
    assert [orjson.loads(r)["seq"] for r in store.read_range(YOUNG, 0, 10, 10)] == [
        5,
        6,
        7,
        8,
        9,
        10,
    ]
    assert forgotten == 29  # every client id but the recent one
    assert store.client_message("acme", "ann", "~last") is not None
    # A second pass finds nothing more to do and tells no one.
    assert await s.sweep() == (0, 0) and len(trims) == 2


async def test_a_sweep_once_every_client_id_has_expired(store: LmdbStore) -> None:
    """An idle server: every client id expired, the last key included (the prune used to
    raise there, failing the sweep: its trims went unreported, no id was forgotten)."""
    seed(store, last_client_id_recent=False)
    trims: list[tuple[str, int]] = []
    trimmed, forgotten = await sweeper(store, trims).sweep()
    assert forgotten == 30 and trimmed == 11
    assert sorted(trims) == sorted([(KEEP_3, 8), (YOUNG, 5)])

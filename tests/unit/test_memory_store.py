"""The search file alone: the log applied (messages, edits, deletes, replies, memory
events), idempotence, ranking on a small fixed corpus, memory visibility filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from nexus.core.memory.query import match_expression, ranked, terms
from nexus.core.memory.store import MemoryScopeFilter, SearchStore

DAY = 86_400_000
NOW = 1_800_000_000_000
RKEY = "acme\x1fgeneral"


def rec(seq: int, **fields: Any) -> tuple[str, int, bytes]:
    fields.setdefault("type", "message")
    fields.setdefault("id", f"m{seq}")
    fields.setdefault("sender", "ana")
    fields.setdefault("ts", NOW)
    return (fields.pop("rkey", RKEY), seq, orjson.dumps({"seq": seq, **fields}))


@pytest.fixture
def store(tmp_path: Path) -> SearchStore:
    s = SearchStore(tmp_path / "search.sqlite3")
    yield s
    s.close()


def found(store: SearchStore, q: str, rooms: tuple[str, ...] = (RKEY,)) -> list[int]:
    match = match_expression(q)
    assert match is not None
    return [h.seq for h in store.search_messages("acme", list(rooms), match, 10)]


def test_messages_edits_and_deletes(store: SearchStore) -> None:
    store.apply(
        [
            rec(1, body="the invoice run moved to Tuesday"),
            rec(2, body="lunch at noon"),
            rec(3, type="message.edited", target_id="m2", target_seq=2, body="invoice lunch"),
            rec(4, type="message.deleted", target_id="m1", target_seq=1),
            rec(5, type="tool.call", name="x"),  # not searchable: moves the seq only
        ]
    )
    assert found(store, "invoice") == [2]
    assert found(store, "tuesday") == []
    assert found(store, "noon") == []
    assert store.indexed() == {RKEY: 5}


def test_a_batch_of_rooms_and_kinds_indexes_every_message_once(store: SearchStore) -> None:
    # Messages are added in groups (one statement for the rows, one for their FTS rows);
    # an edit or delete between them sees the messages before it.
    other = "acme\x1frandom"
    store.apply(
        [
            rec(1, body="kiwi one"),
            rec(1, body="kiwi other room", rkey=other),
            rec(2, body="kiwi two"),
            rec(3, type="message.edited", target_id="m2", target_seq=2, body="mango two"),
            rec(2, body="kiwi again", rkey=other),
            rec(4, body="kiwi four"),
            rec(5, type="message.deleted", target_id="m4", target_seq=4),
            rec(6, body="kiwi six"),
        ]
    )
    assert sorted(found(store, "kiwi", (RKEY, other))) == [1, 1, 2, 6]
    assert found(store, "mango") == [2]
    assert [(room, seq) for _, room, seq, *_ in store.docs()] == [
        (RKEY, 1),
        (RKEY, 2),
        (RKEY, 6),
        (other, 1),
        (other, 2),
    ]
    # The same entries again (a redelivery) and one new one: only the new one is added.
    store.apply([rec(6, body="kiwi six"), rec(7, body="kiwi seven")])
    assert sorted(found(store, "kiwi")) == [1, 6, 7]


def test_redelivery_changes_nothing(store: SearchStore) -> None:
    batch = [rec(1, body="alpha"), rec(2, type="message.deleted", target_id="m1", target_seq=1)]
    assert store.apply(batch) == 2
    assert store.apply(batch) == 0  # at or below the indexed seq
    assert store.apply([batch[0]]) == 0  # a deleted message does not come back
    assert found(store, "alpha") == []


def test_a_deleted_message_read_back_from_the_log_is_not_indexed(store: SearchStore) -> None:
    # A rebuild reads the patched record: body "" and a deleted stamp.
    store.apply([rec(1, body="", deleted=NOW)])
    assert store.docs() == []


def test_agent_replies_are_indexed_under_their_message_id(store: SearchStore) -> None:
    store.apply(
        [
            rec(1, type="message.started", text=""),
            rec(2, type="message.completed", message_id="m1", text="the quarterly numbers"),
        ]
    )
    (doc,) = store.docs()
    assert doc[2:5] == (2, "m1", "reply")


def test_other_tenants_and_rooms_are_filtered(store: SearchStore) -> None:
    other = "acme\x1fsecret"
    store.apply([rec(1, body="zebra")])
    store.apply([rec(1, body="zebra", rkey=other)])
    store.apply([rec(1, body="zebra", rkey="globex\x1fgeneral")])
    assert found(store, "zebra") == [1]
    assert len(found(store, "zebra", (RKEY, other))) == 2
    match = match_expression("zebra")
    assert match is not None
    # another tenant's room key, even if named, is not searched for acme
    assert store.search_messages("acme", ["globex\x1fgeneral"], match, 10) == []


def test_ranking_on_a_fixed_corpus(store: SearchStore) -> None:
    store.apply(
        [
            rec(1, body="billing billing billing: Ana owns billing", ts=NOW - 400 * DAY),
            rec(2, body="a long message that mentions billing once among many other words"),
            rec(3, body="nothing relevant here"),
            rec(4, body="billing and invoices", ts=NOW - 400 * DAY),
            rec(5, body="billing and invoices", ts=NOW),
        ]
    )
    match = match_expression("who owns billing?")
    assert match == '"owns" OR "billing"'
    hits = store.search_messages("acme", [RKEY], match, 10)
    assert hits[0].seq == 1  # both words, billing four times
    assert 3 not in [h.seq for h in hits]
    assert "**billing**" in hits[0].snippet
    # equal text: recency decides
    same = {h.seq: h for h in hits if h.seq in (4, 5)}
    assert same[4].bm25 == same[5].bm25
    assert ranked(same[5].bm25, same[5].ts, NOW) > ranked(same[4].bm25, same[4].ts, NOW)


def test_queries_are_words_not_syntax(store: SearchStore) -> None:
    assert terms('NEAR(a b) "x" -y* OR the') == ["near", "b", "x", "y"]
    store.apply([rec(1, body='NEAR(a b) "x" -y*')])
    assert found(store, 'NEAR(a b) "x" -y* AND OR NOT ^col:') == [1]  # no FTS5 syntax error
    assert terms("the of") == ["the", "of"]  # only stopwords: keep them
    assert match_expression("   ...   ") is None
    assert match_expression('say "hi"') == '"say" OR "hi"'


def memory(mid: str, scope: str, scope_id: str = "", **kw: Any) -> dict[str, Any]:
    return {
        "id": mid,
        "tenant": kw.pop("tenant", "acme"),
        "scope": scope,
        "scope_id": scope_id,
        "text": kw.pop("text", "Ana owns billing"),
        "author": "ana",
        "author_kind": "human",
        "created_at": NOW,
        "valid_from": kw.pop("valid_from", NOW - DAY),
        "valid_until": kw.pop("valid_until", None),
        "superseded_by": None,
        "supersedes": None,
        "source": {"room": "general", "first_seq": 3, "last_seq": 4},
        "event_room": "memory-audit",
        "event_seq": 1,
    }


def test_memory_visibility_validity_and_supersession(store: SearchStore) -> None:
    store.insert_memory(memory("t", "tenant"))
    store.insert_memory(memory("r", "room", "general"))
    store.insert_memory(memory("p", "room", "private"))
    store.insert_memory(memory("u", "user", "ana"))
    store.insert_memory(memory("b", "user", "bob"))
    store.insert_memory(memory("g", "agent", "scribe"))
    store.insert_memory(memory("x", "tenant", tenant="globex"))
    store.insert_memory(memory("old", "tenant", valid_until=NOW - 1))
    store.insert_memory(memory("later", "tenant", valid_from=NOW + DAY))
    ana = MemoryScopeFilter("acme", ("general",), "ana")

    def ids(scope: MemoryScopeFilter, **kw: Any) -> set[str]:
        return {r["id"] for r, _ in store.search_memory(scope, '"billing"', 50, NOW, **kw)}

    assert ids(ana) == {"t", "r", "u"}
    assert ids(MemoryScopeFilter("acme", (), "scribe")) == {"t", "g"}
    assert ids(MemoryScopeFilter("acme", (), "root", all_agents=True)) == {"t", "g"}
    assert ids(ana, history=True) == {"t", "r", "u", "old", "later"}
    new = memory("t2", "tenant", text="Bea owns billing now", valid_from=NOW - 10)
    new["supersedes"] = "t"
    store.supersede_memory("t", new)
    assert ids(ana) == {"t2", "r", "u"}
    old = store.memory("acme", "t")
    assert old is not None and old["superseded_by"] == "t2" and old["valid_until"] == NOW - 10
    assert old["source"] == {"room": "general", "first_seq": 3, "last_seq": 4}
    store.forget_memory("u")
    assert ids(ana) == {"t2", "r"}
    assert store.memory("acme", "u") is None


def test_memory_events_applied_from_the_log(store: SearchStore) -> None:
    audit = "acme\x1fmemory-audit"
    first = memory("m1", "tenant")
    second = {**memory("m2", "tenant", text="Bea owns billing"), "supersedes": "m1"}
    store.apply(
        [
            rec(1, rkey=audit, type="memory.written", memory=first),
            rec(2, rkey=audit, type="memory.superseded", memory=second, superseded="m1"),
            rec(3, rkey=audit, type="memory.written", memory=memory("m3", "tenant"), forgotten=1),
            rec(4, rkey=audit, type="memory.forgotten", memory_id="m2"),
        ]
    )
    m1 = store.memory("acme", "m1")
    assert m1 is not None and m1["superseded_by"] == "m2" and m1["event_seq"] == 1
    assert store.memory("acme", "m2") is None  # forgotten
    assert store.memory("acme", "m3") is None  # its creating event was blanked by a forget


def test_a_forget_is_not_undone_by_the_indexer_applying_an_older_copy_of_the_event(
    store: SearchStore,
) -> None:
    """The service writes and forgets directly; the indexer may apply the record's event
    later, from the bytes it read before the forget blanked them: the record stays gone."""
    audit = "acme\x1fmemory-audit"
    record = memory("m9", "tenant")
    store.insert_memory(record)
    store.forget_memory("m9")
    store.apply([rec(1, rkey=audit, type="memory.written", memory=record)])  # stale copy
    assert store.memory("acme", "m9") is None

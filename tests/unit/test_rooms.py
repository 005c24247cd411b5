"""RoomDirectory and Room: tenant-scoped lookup, creation by role, presence counting."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nexus.auth import Principal
from nexus.core.rooms import Room, RoomDirectory
from nexus.errors import NotFound
from nexus.store.keys import log_key, log_prefix, room_key, seq_of, split_room_key


class FakeSource:
    """An in-memory RoomSource that records what was asked of it."""

    def __init__(self, rooms: dict[str, tuple[dict[str, Any], int]] | None = None) -> None:
        self.rooms = rooms or {}
        self.meta_calls: list[str] = []
        self.seq_calls: list[str] = []

    def room_meta(self, rkey: str) -> dict[str, Any] | None:
        self.meta_calls.append(rkey)
        entry = self.rooms.get(rkey)
        return None if entry is None else entry[0]

    def last_seq(self, rkey: str) -> int:
        self.seq_calls.append(rkey)
        return self.rooms[rkey][1]


def principal(user: str = "alice", tenant: str = "acme", *roles: str) -> Principal:
    return Principal(user_id=user, tenant=tenant, roles=frozenset(roles or ("member",)))


def directory(source: FakeSource | None = None) -> RoomDirectory:
    return RoomDirectory(source or FakeSource(), ("admin", "member"), clock=lambda: 1700.5)


# -- open / require ----------------------------------------------------------


def test_open_creates_for_permitted_role() -> None:
    source = FakeSource()
    rooms = directory(source)
    room, created = rooms.open(principal("alice", "acme", "member"), "general")
    assert created is True
    assert isinstance(room, Room)
    assert (room.tenant, room.name, room.key) == ("acme", "general", "acme\x1fgeneral")
    assert (room.seq, room.delivered, room.persisted) == (0, 0, False)
    assert room.meta == {
        "tenant": "acme",
        "name": "general",
        "created_by": "alice",
        "created_at": 1700500,
    }
    assert orjson.loads(room.meta_json()) == room.meta
    assert len(rooms) == 1
    assert source.meta_calls == ["acme\x1fgeneral"]  # looked in the store first


def test_open_again_returns_same_room() -> None:
    rooms = directory()
    first, created = rooms.open(principal(), "general")
    again, created_again = rooms.open(principal("bob", "acme", "viewer"), "general")
    assert created is True
    assert created_again is False
    assert again is first
    assert len(rooms) == 1


@pytest.mark.parametrize("roles", [("viewer",), ("Admin",), ()])
def test_open_without_permitted_role_is_not_found(roles: tuple[str, ...]) -> None:
    rooms = directory()
    p = Principal(user_id="eve", tenant="acme", roles=frozenset(roles))
    with pytest.raises(NotFound) as info:
        rooms.open(p, "secret")
    assert info.value.code == "not_found"
    assert len(rooms) == 0
    assert rooms.find("acme", "secret") is None


def test_open_with_any_one_permitted_role() -> None:
    room, created = directory().open(principal("root", "acme", "viewer", "admin"), "ops")
    assert created is True
    assert room.meta["created_by"] == "root"


def test_custom_create_roles() -> None:
    rooms = RoomDirectory(FakeSource(), ("owner",))
    with pytest.raises(NotFound):
        rooms.open(principal("a", "t", "admin"), "r")
    assert rooms.open(principal("a", "t", "owner"), "r")[1] is True


def test_require() -> None:
    rooms = directory()
    with pytest.raises(NotFound):
        rooms.require(principal(), "general")
    room, _ = rooms.open(principal(), "general")
    assert rooms.require(principal("bob", "acme", "viewer"), "general") is room
    with pytest.raises(NotFound):
        rooms.require(principal("bob", "other", "admin"), "general")


# -- tenants -----------------------------------------------------------------


def test_same_name_in_two_tenants_is_two_rooms() -> None:
    rooms = directory()
    a, created_a = rooms.open(principal("alice", "acme"), "general")
    b, created_b = rooms.open(principal("bob", "globex"), "general")
    assert created_a and created_b
    assert a is not b
    assert a.key != b.key
    assert (a.key, b.key) == (room_key("acme", "general"), room_key("globex", "general"))
    assert split_room_key(a.key) == ("acme", "general")
    assert split_room_key(b.key) == ("globex", "general")
    assert (a.tenant, b.tenant) == ("acme", "globex")
    assert len(rooms) == 2
    assert rooms.find("acme", "general") is a
    assert rooms.find("globex", "general") is b


def test_other_tenants_room_is_invisible() -> None:
    rooms = directory()
    rooms.open(principal("alice", "acme"), "general")
    # A viewer in another tenant cannot reach acme's room and cannot create its own.
    with pytest.raises(NotFound):
        rooms.open(principal("mallory", "globex", "viewer"), "general")


def test_tenant_prefix_does_not_collide() -> None:
    # "ab" + "c" and "a" + "bc" must not share a key.
    assert room_key("ab", "c") != room_key("a", "bc")


# -- find loads from the source ------------------------------------------------


def test_find_loads_from_source_with_last_seq() -> None:
    key = room_key("acme", "general")
    meta = {"tenant": "acme", "name": "general", "created_by": "alice", "created_at": 1}
    source = FakeSource({key: (meta, 41)})
    rooms = directory(source)
    room = rooms.find("acme", "general")
    assert room is not None
    assert (room.seq, room.delivered) == (41, 41)
    assert room.meta == meta
    assert room.persisted is True
    assert room.key == key
    assert source.seq_calls == [key]
    # Cached: the store is not asked again.
    assert rooms.find("acme", "general") is room
    assert source.meta_calls == [key]
    assert source.seq_calls == [key]


def test_open_finds_persisted_room_without_create_role() -> None:
    key = room_key("acme", "archive")
    source = FakeSource({key: ({"name": "archive"}, 7)})
    room, created = directory(source).open(principal("v", "acme", "viewer"), "archive")
    assert created is False
    assert room.seq == 7
    assert room.persisted is True


def test_find_missing_is_none_and_not_cached() -> None:
    source = FakeSource()
    rooms = directory(source)
    assert rooms.find("acme", "nope") is None
    assert rooms.find("acme", "nope") is None
    assert source.meta_calls == [room_key("acme", "nope")] * 2
    assert source.seq_calls == []
    assert len(rooms) == 0


def test_find_is_per_tenant_in_source() -> None:
    source = FakeSource({room_key("acme", "general"): ({}, 5)})
    rooms = directory(source)
    assert rooms.find("globex", "general") is None
    room = rooms.find("acme", "general")
    assert room is not None and room.seq == 5


# -- presence ------------------------------------------------------------------


def make_room() -> Room:
    return Room("acme", "general", {}, 0, persisted=False)


def test_presence_first_and_last_across_sessions() -> None:
    room = make_room()
    assert room.add_presence("alice", "human") is True  # first session: joined
    assert room.add_presence("alice", "human") is False  # second tab
    assert room.add_presence("alice", "human") is False  # third
    assert room.members() == [{"user_id": "alice", "kind": "human"}]
    assert room.remove_presence("alice") is False
    assert room.remove_presence("alice") is False
    assert room.members() == [{"user_id": "alice", "kind": "human"}]
    assert room.remove_presence("alice") is True  # last session: left
    assert room.members() == []
    assert room.presence == {}


def test_presence_rejoin_after_leaving_is_first_again() -> None:
    room = make_room()
    room.add_presence("alice", "human")
    assert room.remove_presence("alice") is True
    assert room.add_presence("alice", "human") is True


def test_presence_of_several_users() -> None:
    room = make_room()
    assert room.add_presence("alice", "human") is True
    assert room.add_presence("bot", "agent") is True
    assert room.add_presence("alice", "human") is False
    assert room.members() == [
        {"user_id": "alice", "kind": "human"},
        {"user_id": "bot", "kind": "agent"},
    ]
    assert room.remove_presence("bot") is True
    assert room.remove_presence("alice") is False
    assert room.members() == [{"user_id": "alice", "kind": "human"}]


def test_remove_presence_of_absent_user() -> None:
    room = make_room()
    assert room.remove_presence("ghost") is False
    room.add_presence("alice", "human")
    assert room.remove_presence("alice") is True
    assert room.remove_presence("alice") is False  # extra removal does not go negative
    assert room.add_presence("alice", "human") is True


# -- key layout --------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 1, 255, 256, 2**63 - 1])
def test_log_key_round_trip(seq: int) -> None:
    rkey = room_key("acme", "general")
    key = log_key(rkey, seq)
    assert key.startswith(log_prefix(rkey))
    assert len(key) == len(log_prefix(rkey)) + 8
    assert seq_of(key) == seq


def test_log_keys_sort_in_seq_order() -> None:
    rkey = room_key("acme", "general")
    seqs = [300, 2, 256, 1, 70000, 255]
    assert sorted(log_key(rkey, s) for s in seqs) == [log_key(rkey, s) for s in sorted(seqs)]

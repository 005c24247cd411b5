"""RoomAdmin: room settings and membership change in memory only once they are durable.

Every permission check reads ``room.meta``; a change that did not commit must not be
visible there, or a failed archive would make a room read-only until the next restart (or
a failed privacy change would hide a room that is still public on disk)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from doubles import FailingStore, FakeClock, HeldWriter, Inbox, make_pipeline
from nexus.auth import Principal
from nexus.core.access import AccessRules
from nexus.core.room_admin import RoomAdmin
from nexus.core.rooms import Room, RoomDirectory
from nexus.core.writes import RoomWrites
from nexus.errors import Conflict, Forbidden, Internal, NotFound
from nexus.protocol import MessageSend
from nexus.store import LmdbStore, WriteBatch
from nexus.store.keys import room_key

OWNER = Principal("olga", "acme", frozenset({"member"}))
MEMBER = Principal("mike", "acme", frozenset({"member"}))
OUTSIDER = Principal("nora", "acme", frozenset({"member"}))
GUEST = Principal("gus", "acme", frozenset({"guest"}))
CLOCK_MS = 1_700_000


class Admin:
    """RoomAdmin over a real pipeline and a store whose commits can be made to fail."""

    def __init__(self, store: LmdbStore, writer: Any = None) -> None:
        self.store = FailingStore(store)
        self.pipeline, self.writer = make_pipeline(self.store, writer)
        self.rooms = RoomDirectory(
            self.store, ("admin", "member"), clock=FakeClock(CLOCK_MS / 1000)
        )
        self.access = AccessRules(self.store)
        self.admin = RoomAdmin(
            self.rooms, self.pipeline, self.store, self.access, clock=FakeClock(CLOCK_MS / 1000 + 1)
        )
        self.writes = RoomWrites(self.pipeline, self.store, self.access)

    def stored_meta(self, room: Room) -> dict[str, Any] | None:
        meta: dict[str, Any] | None = self.store.room_meta(room.key)
        return meta

    def existing_room(self, name: str = "plans", **settings: Any) -> Room:
        """A room committed before the test starts (written straight to the store)."""
        meta = {
            "tenant": "acme",
            "name": name,
            "created_by": OWNER.user_id,
            "created_at": 1,
            **settings,
        }
        self.store.apply(WriteBatch(rooms=[(room_key("acme", name), orjson.dumps(meta))]))
        room = self.rooms.find("acme", name)
        assert room is not None and room.persisted
        return room


@pytest.fixture
async def adm(store: LmdbStore) -> Admin:
    return Admin(store)  # built on the test's loop


# -- create ---------------------------------------------------------------------------------


async def test_create_commits_the_room_with_its_settings(adm: Admin) -> None:
    room = await adm.admin.create(OWNER, "plans", topic="Q3", private=True)
    assert room.persisted and adm.rooms.find("acme", "plans") is room
    assert room.meta == {
        "tenant": "acme",
        "name": "plans",
        "created_by": "olga",
        "created_at": CLOCK_MS,
        "topic": "Q3",
        "private": True,
    }
    assert adm.stored_meta(room) == room.meta
    with pytest.raises(Conflict):
        await adm.admin.create(MEMBER, "plans")


async def test_a_role_that_may_not_create_rooms_is_refused(adm: Admin) -> None:
    with pytest.raises(Forbidden):
        await adm.admin.create(GUEST, "plans")
    assert adm.rooms.find("acme", "plans") is None and adm.writer.jobs == 0


async def test_a_failed_creation_leaves_no_room(adm: Admin) -> None:
    adm.store.fail = True
    with pytest.raises(Internal):
        await adm.admin.create(OWNER, "plans", topic="lost")
    assert adm.rooms.find("acme", "plans") is None
    assert adm.store.room_meta(room_key("acme", "plans")) is None
    adm.store.fail = False
    room = await adm.admin.create(OWNER, "plans", topic="kept")  # the name is free again
    assert room.meta["topic"] == "kept" and adm.stored_meta(room) == room.meta


# -- update and archive ---------------------------------------------------------------------


async def test_update_applies_the_changes(adm: Admin) -> None:
    room = adm.existing_room(topic="old")
    await adm.admin.update(OWNER, room, {"topic": "new", "private": True})
    assert room.meta["topic"] == "new" and room.meta["private"] is True
    assert room.meta["created_by"] == "olga"  # the rest is kept
    assert adm.stored_meta(room) == room.meta


async def test_only_a_room_admin_may_update_or_archive(adm: Admin) -> None:
    room = adm.existing_room(topic="old")
    before = copy.deepcopy(room.meta)
    with pytest.raises(Forbidden):
        await adm.admin.update(MEMBER, room, {"topic": "mine"})
    with pytest.raises(Forbidden):
        await adm.admin.archive(MEMBER, room)
    assert room.meta == before and adm.writer.jobs == 0


async def test_archive_makes_the_room_read_only_once(adm: Admin) -> None:
    room = adm.existing_room()
    await adm.admin.archive(OWNER, room)
    stamp = room.meta["archived"]
    assert stamp == CLOCK_MS + 1000 and adm.stored_meta(room) == room.meta
    with pytest.raises(Forbidden):
        adm.writes.post(Inbox("olga"), room, MessageSend(1, "plans", "hello?"))
    jobs = adm.writer.jobs
    await adm.admin.archive(OWNER, room)
    assert adm.writer.jobs == jobs and room.meta["archived"] == stamp  # nothing rewritten


Change = Callable[[Admin, Room], Awaitable[Any]]
CHANGES: dict[str, Change] = {
    "archive": lambda a, room: a.admin.archive(OWNER, room),
    "topic": lambda a, room: a.admin.update(OWNER, room, {"topic": "new"}),
    "privacy": lambda a, room: a.admin.update(OWNER, room, {"private": True}),
    "retention": lambda a, room: a.admin.update(
        OWNER, room, {"retention": {"max_count": 10, "max_age": 60.0}}
    ),
    "metadata": lambda a, room: a.admin.update(OWNER, room, {"metadata": {"k": "v"}}),
}


@pytest.mark.parametrize("change", CHANGES)
async def test_a_failed_commit_leaves_the_room_unchanged(adm: Admin, change: str) -> None:
    room = adm.existing_room(topic="old", private=False, retention={"max_count": 0, "max_age": 0.0})
    meta = room.meta
    before = copy.deepcopy(meta)
    adm.store.fail = True
    with pytest.raises(Internal):
        await CHANGES[change](adm, room)
    assert adm.store.refused == 1
    assert room.meta is meta and room.meta == before
    assert adm.stored_meta(room) == before
    adm.store.fail = False
    # ...and what the old settings allow still works: posting, a non-member seeing it.
    caller = Inbox("nora")
    adm.writes.post(caller, room, MessageSend(1, "plans", "still open"))
    await adm.pipeline.wait_idle()
    assert caller.last["type"] == "ack"
    assert adm.access.may_see(OUTSIDER, room)
    # A retry once the store works again takes effect.
    await CHANGES[change](adm, room)
    assert room.meta != before and adm.stored_meta(room) == room.meta


async def test_a_failed_archive_sharing_a_batch_with_a_post(adm: Admin) -> None:
    """The failed batch is split: the post commits on its own, the archive fails alone and
    the room stays writable."""
    room = adm.existing_room()
    adm.store.fail = lambda batch: bool(batch.meta)  # every batch carrying metadata
    ann = Inbox("ann")
    archiving = asyncio.ensure_future(adm.admin.archive(OWNER, room))
    adm.writes.post(ann, room, MessageSend(1, "plans", "racing"))
    with pytest.raises(Internal):
        await archiving
    await adm.pipeline.wait_idle()
    assert ann.last["type"] == "ack" and ann.last["seq"] == 1
    assert "archived" not in room.meta and "archived" not in (adm.stored_meta(room) or {})


@pytest.mark.parametrize("change", ["topic", "archive"])
async def test_a_change_is_visible_only_after_its_commit(store: LmdbStore, change: str) -> None:
    adm = Admin(store, HeldWriter())
    room = adm.existing_room(topic="old")
    before = copy.deepcopy(room.meta)
    pending = asyncio.ensure_future(CHANGES[change](adm, room))
    work, done = await adm.writer.next_job()
    assert room.meta == before  # queued for the commit: nothing visible
    work()  # the commit is durable (writer thread)...
    assert adm.stored_meta(room) != before
    assert room.meta == before  # ...but the loop has not heard of it yet
    if change == "archive":  # so writes are still accepted, and will be committed
        adm.writes.post(Inbox("ann"), room, MessageSend(1, "plans", "just in time"))
    done(None, 0.0, None)
    await pending
    assert room.meta == adm.stored_meta(room) != before


# -- membership -----------------------------------------------------------------------------


async def test_put_member_records_the_role(adm: Admin) -> None:
    room = adm.existing_room(private=True)
    assert not adm.access.may_see(MEMBER, room)
    member = await adm.admin.put_member(OWNER, room, "mike", "admin")
    assert member == {
        "user_id": "mike",
        "role": "admin",
        "added_by": "olga",
        "added_at": CLOCK_MS + 1000,
    }
    assert adm.store.member(room.key, "mike") == member
    assert adm.access.may_see(MEMBER, room) and adm.access.is_room_admin(MEMBER, room)


async def test_only_a_room_admin_may_put_a_member(adm: Admin) -> None:
    room = adm.existing_room()
    await adm.admin.put_member(OWNER, room, "mike", "member")
    with pytest.raises(Forbidden):
        await adm.admin.put_member(MEMBER, room, "mike", "admin")  # no self-promotion
    with pytest.raises(Forbidden):
        await adm.admin.put_member(MEMBER, room, "nora", "member")
    assert adm.store.member(room.key, "mike")["role"] == "member"
    assert adm.store.member(room.key, "nora") is None


async def test_a_failed_put_member_adds_no_one(adm: Admin) -> None:
    room = adm.existing_room(private=True)
    adm.store.fail = True
    with pytest.raises(Internal):
        await adm.admin.put_member(OWNER, room, "mike", "member")
    assert adm.store.member(room.key, "mike") is None
    assert not adm.access.may_see(MEMBER, room)


async def test_remove_member(adm: Admin) -> None:
    room = adm.existing_room(private=True)
    for user in ("mike", "nora"):
        await adm.admin.put_member(OWNER, room, user, "member")
    with pytest.raises(Forbidden):
        await adm.admin.remove_member(MEMBER, room, "nora")  # someone else: admins only
    await adm.admin.remove_member(MEMBER, room, "mike")  # leaving on one's own
    assert adm.store.member(room.key, "mike") is None and not adm.access.may_see(MEMBER, room)
    await adm.admin.remove_member(OWNER, room, "nora")
    assert adm.store.member(room.key, "nora") is None
    with pytest.raises(NotFound):
        await adm.admin.remove_member(OWNER, room, "nora")


async def test_a_failed_removal_keeps_the_member(adm: Admin) -> None:
    room = adm.existing_room(private=True)
    await adm.admin.put_member(OWNER, room, "mike", "member")
    adm.store.fail = True
    with pytest.raises(Internal):
        await adm.admin.remove_member(OWNER, room, "mike")
    assert adm.store.member(room.key, "mike") is not None and adm.access.may_see(MEMBER, room)

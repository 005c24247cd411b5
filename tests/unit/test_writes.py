"""RoomWrites on the real pipeline and a real LMDB file: posts, edits and deletes as
sequenced entries, who may change what, idempotent resends, archived rooms, history pages
and extension events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from doubles import NOW, Inbox, make_pipeline, new_room
from nexus.core.access import AccessRules
from nexus.core.pipeline import MessagePipeline
from nexus.core.rooms import Room
from nexus.core.writes import RoomWrites
from nexus.errors import BadRequest, Conflict, Forbidden, NotFound
from nexus.protocol import MessageDelete, MessageEdit, MessageSend
from nexus.store import LmdbStore, WriteBatch
from nexus.store.keys import member_key

TS = int(NOW * 1000)


class Chat:
    """One room with its writes, pipeline and store, and a few callers."""

    def __init__(self, store: LmdbStore) -> None:
        self.store = store
        self.pipeline: MessagePipeline
        self.pipeline, self.writer = make_pipeline(store)
        self.writes = RoomWrites(self.pipeline, store, AccessRules(store))
        self.room = new_room("general")  # created by "t"

    async def post(
        self,
        caller: Inbox,
        body: str,
        client_msg_id: str | None = None,
        *,
        room: Room | None = None,
        reply_to: str | None = None,
    ) -> dict[str, Any]:
        """Post and wait for the commit; the caller's answer (ack or error)."""
        room = room or self.room
        self.writes.post(caller, room, MessageSend(body, room.name, body, client_msg_id, reply_to))
        await self.pipeline.wait_idle()
        return caller.last

    async def edit(
        self, caller: Inbox, message_id: str, body: str, client_msg_id: str | None = None
    ) -> dict[str, Any]:
        self.writes.edit(
            caller, self.room, MessageEdit("e", self.room.name, message_id, body, client_msg_id)
        )
        await self.pipeline.wait_idle()
        return caller.last

    async def delete(
        self, caller: Inbox, message_id: str, client_msg_id: str | None = None
    ) -> dict[str, Any]:
        self.writes.delete(
            caller, self.room, MessageDelete("d", self.room.name, message_id, client_msg_id)
        )
        await self.pipeline.wait_idle()
        return caller.last

    def record(self, seq: int) -> dict[str, Any]:
        raw = self.store.read_record(self.room.key, seq)
        assert raw is not None, f"no record at seq {seq}"
        return dict(orjson.loads(raw))

    def make_room_admin(self, user: str) -> None:
        self.store.apply(
            WriteBatch(
                meta=[
                    (
                        "member",
                        member_key(self.room.key, user),
                        orjson.dumps({"user_id": user, "role": "admin"}),
                    )
                ]
            )
        )


@pytest.fixture
async def chat(store: LmdbStore) -> Chat:
    return Chat(store)  # built on the test's loop


async def test_post_then_find(chat: Chat) -> None:
    ann = Inbox("ann")
    ack = await chat.post(ann, "hello", "c1")
    assert ack["type"] == "ack" and ack["seq"] == 1 and ack["room"] == "general"
    assert ack["client_msg_id"] == "c1" and ack["duplicate"] is False
    seq, record = chat.writes.find(chat.room, ack["message_id"])
    assert seq == 1
    assert record == {
        "type": "message",
        "room": "general",
        "seq": 1,
        "id": ack["message_id"],
        "sender": "ann",
        "sender_kind": "human",
        "ts": TS,
        "body": "hello",
        "reply_to": None,
        "meta": None,
    }
    assert chat.room.persisted and chat.room.delivered == 1


async def test_find_is_scoped_to_the_room(chat: Chat) -> None:
    ann = Inbox("ann")
    elsewhere = new_room("random")
    ack = await chat.post(ann, "over there", room=elsewhere)
    with pytest.raises(NotFound):
        chat.writes.find(chat.room, ack["message_id"])
    with pytest.raises(NotFound):
        chat.writes.find(chat.room, "no-such-id")
    # An id longer than any key the log holds is absent, not an LMDB error.
    with pytest.raises(NotFound):
        chat.writes.find(chat.room, "x" * 600)


async def test_edit_patches_the_target_and_is_a_sequenced_entry(chat: Chat) -> None:
    ann = Inbox("ann")
    posted = await chat.post(ann, "helo")
    edited = await chat.edit(ann, posted["message_id"], "hello")
    assert edited["type"] == "ack" and edited["seq"] == 2
    assert edited["message_id"] != posted["message_id"]
    seq, target = chat.writes.find(chat.room, posted["message_id"])
    assert seq == 1
    assert (target["body"], target["edited"], target["edited_by"]) == ("hello", TS, "ann")
    assert chat.record(2) == {
        "type": "message.edited",
        "room": "general",
        "seq": 2,
        "id": edited["message_id"],
        "target_id": posted["message_id"],
        "target_seq": 1,
        "by": "ann",
        "ts": TS,
        "body": "hello",
    }
    assert chat.store.last_seq(chat.room.key) == 2 and chat.room.delivered == 2


async def test_delete_blanks_the_target_and_is_a_sequenced_entry(chat: Chat) -> None:
    ann = Inbox("ann")
    posted = await chat.post(ann, "oops")
    deleted = await chat.delete(ann, posted["message_id"])
    assert deleted["type"] == "ack" and deleted["seq"] == 2
    _, target = chat.writes.find(chat.room, posted["message_id"])
    assert (target["body"], target["meta"]) == ("", None)
    assert (target["deleted"], target["deleted_by"]) == (TS, "ann")
    assert chat.record(2) == {
        "type": "message.deleted",
        "room": "general",
        "seq": 2,
        "id": deleted["message_id"],
        "target_id": posted["message_id"],
        "target_seq": 1,
        "by": "ann",
        "ts": TS,
    }


async def test_a_deleted_message_cannot_be_edited_or_deleted_again(chat: Chat) -> None:
    ann = Inbox("ann")
    posted = await chat.post(ann, "gone")
    await chat.delete(ann, posted["message_id"])
    with pytest.raises(Conflict):
        chat.writes.edit(ann, chat.room, MessageEdit("e", "general", posted["message_id"], "back"))
    with pytest.raises(Conflict):
        chat.writes.delete(
            ann, chat.room, MessageDelete("d", "general", posted["message_id"], "new")
        )
    assert chat.pipeline.idle and chat.store.last_seq(chat.room.key) == 2


async def test_only_messages_can_be_edited(chat: Chat) -> None:
    ann = Inbox("ann")
    chat.writes.append(ann, chat.room, "task.created", {"title": "x"}, rid="t")
    await chat.pipeline.wait_idle()
    with pytest.raises(BadRequest):
        chat.writes.edit(ann, chat.room, MessageEdit("e", "general", ann.last["message_id"], "y"))


async def test_a_plain_member_may_not_change_someone_elses_message(chat: Chat) -> None:
    ann, bob = Inbox("ann"), Inbox("bob")
    posted = await chat.post(ann, "mine")
    with pytest.raises(Forbidden):
        chat.writes.edit(bob, chat.room, MessageEdit("e", "general", posted["message_id"], "his"))
    with pytest.raises(Forbidden):
        chat.writes.delete(bob, chat.room, MessageDelete("d", "general", posted["message_id"]))
    assert chat.pipeline.idle and chat.store.last_seq(chat.room.key) == 1
    assert chat.writes.find(chat.room, posted["message_id"])[1]["body"] == "mine"


@pytest.mark.parametrize("admin", ["room role", "room creator", "tenant admin"])
async def test_a_room_admin_may_change_someone_elses_message(chat: Chat, admin: str) -> None:
    ann = Inbox("ann")
    if admin == "room role":
        moderator = Inbox("mod")
        chat.make_room_admin("mod")
    elif admin == "room creator":
        moderator = Inbox("t")  # new_room's created_by
    else:
        moderator = Inbox("boss", roles=("admin",))
    posted = await chat.post(ann, "rude")
    assert (await chat.edit(moderator, posted["message_id"], "[redacted]"))["type"] == "ack"
    assert (await chat.delete(moderator, posted["message_id"]))["type"] == "ack"
    _, target = chat.writes.find(chat.room, posted["message_id"])
    assert target["edited_by"] == target["deleted_by"] == moderator.principal.user_id


async def test_reply_to_must_be_in_the_same_room(chat: Chat) -> None:
    ann = Inbox("ann")
    here = await chat.post(ann, "question")
    there = await chat.post(ann, "elsewhere", room=new_room("random"))
    with pytest.raises(NotFound):
        chat.writes.post(
            ann, chat.room, MessageSend("x", "general", "answer", reply_to=there["message_id"])
        )
    with pytest.raises(NotFound):
        chat.writes.post(ann, chat.room, MessageSend("x", "general", "answer", reply_to="nope"))
    assert chat.pipeline.idle and chat.store.last_seq(chat.room.key) == 1
    reply = await chat.post(ann, "answer", reply_to=here["message_id"])
    assert chat.record(reply["seq"])["reply_to"] == here["message_id"]


async def test_a_resend_in_flight_is_answered_with_the_original_seq(chat: Chat) -> None:
    ann, again = Inbox("ann"), Inbox("ann")  # two sessions of one user
    chat.writes.post(ann, chat.room, MessageSend("first", "general", "once", "c1"))
    chat.writes.post(again, chat.room, MessageSend("second", "general", "once", "c1"))
    await chat.pipeline.wait_idle()
    [ack], [dup] = ann.events, again.events
    assert ack["duplicate"] is False and dup["duplicate"] is True
    assert (dup["id"], dup["seq"], dup["message_id"]) == ("second", 1, ack["message_id"])
    assert chat.store.last_seq(chat.room.key) == 1


async def test_a_resend_after_the_commit_is_answered_from_the_store(chat: Chat) -> None:
    ann = Inbox("ann")
    ack = await chat.post(ann, "once", "c1")
    dup = await chat.post(ann, "once again", "c1")
    assert dup["duplicate"] is True
    assert (dup["seq"], dup["message_id"]) == (ack["seq"], ack["message_id"])
    assert chat.store.last_seq(chat.room.key) == 1 and chat.writer.jobs == 1
    # Another user's identical client_msg_id is their own message.
    other = await chat.post(Inbox("bob"), "mine", "c1")
    assert other["duplicate"] is False and other["seq"] == 2


async def test_a_retried_delete_still_gets_its_ack(chat: Chat) -> None:
    """The resend check comes before the state checks: the retry of a delete whose ack was
    lost is answered with that ack, not with "already deleted"."""
    ann = Inbox("ann")
    posted = await chat.post(ann, "bye")
    first = await chat.delete(ann, posted["message_id"], "del-1")
    retry = await chat.delete(ann, posted["message_id"], "del-1")
    assert retry["type"] == "ack" and retry["duplicate"] is True
    assert (retry["seq"], retry["message_id"]) == (first["seq"], first["message_id"])
    assert chat.store.last_seq(chat.room.key) == 2


async def test_an_archived_room_refuses_writes(chat: Chat) -> None:
    ann = Inbox("ann")
    posted = await chat.post(ann, "before", "c1")
    chat.room.meta = {**chat.room.meta, "archived": TS}
    mid = posted["message_id"]
    with pytest.raises(Forbidden):
        chat.writes.post(ann, chat.room, MessageSend("x", "general", "after"))
    with pytest.raises(Forbidden):
        chat.writes.edit(ann, chat.room, MessageEdit("x", "general", mid, "changed"))
    with pytest.raises(Forbidden):
        chat.writes.delete(ann, chat.room, MessageDelete("x", "general", mid))
    with pytest.raises(Forbidden):
        chat.writes.append(ann, chat.room, "task.created", {}, rid="x")
    assert chat.pipeline.idle and chat.store.last_seq(chat.room.key) == 1
    # A resend of what was committed before the archive still gets its ack.
    assert (await chat.post(ann, "before", "c1"))["duplicate"] is True


def seqs(page: tuple[list[bytes], bool]) -> tuple[list[int], bool]:
    records, more = page
    return [orjson.loads(raw)["seq"] for raw in records], more


async def test_history_pages(chat: Chat) -> None:
    ann = Inbox("ann")
    for i in range(7):
        chat.writes.post(ann, chat.room, MessageSend(i, "general", f"m{i}"))
    await chat.pipeline.wait_idle()
    history = chat.writes.history
    room = chat.room
    assert seqs(history(room, limit=3)) == ([5, 6, 7], True)
    assert seqs(history(room, limit=7)) == ([1, 2, 3, 4, 5, 6, 7], False)
    assert seqs(history(room, limit=50)) == ([1, 2, 3, 4, 5, 6, 7], False)
    assert seqs(history(room, before=5, limit=3)) == ([2, 3, 4], True)
    assert seqs(history(room, before=4, limit=3)) == ([1, 2, 3], False)
    assert seqs(history(room, before=2, limit=3)) == ([1], False)
    assert seqs(history(room, before=1, limit=3)) == ([], False)
    assert seqs(history(room, before=100, limit=2)) == ([6, 7], True)
    assert seqs(history(room, after=0, limit=3)) == ([1, 2, 3], True)
    assert seqs(history(room, after=4, limit=3)) == ([5, 6, 7], False)
    assert seqs(history(room, after=3, limit=3)) == ([4, 5, 6], True)
    assert seqs(history(room, after=7, limit=3)) == ([], False)
    # "after" wins over "before" when both are given.
    assert seqs(history(room, before=3, after=5, limit=1)) == ([6], True)


async def test_history_never_shows_what_was_not_delivered(chat: Chat) -> None:
    ann = Inbox("ann")
    for i in range(7):
        chat.writes.post(ann, chat.room, MessageSend(i, "general", f"m{i}"))
    await chat.pipeline.wait_idle()
    chat.room.delivered = 5  # 6 and 7 committed but not yet fanned out
    assert seqs(chat.writes.history(chat.room, limit=3)) == ([3, 4, 5], True)
    assert seqs(chat.writes.history(chat.room, before=100, limit=10)) == ([1, 2, 3, 4, 5], False)
    assert seqs(chat.writes.history(chat.room, after=3, limit=10)) == ([4, 5], False)


async def test_append_writes_an_extension_event(chat: Chat) -> None:
    bot = Inbox("bot")
    # The extension's fields cannot override the common head.
    chat.writes.append(
        bot,
        chat.room,
        "task.created",
        {"title": "ship it", "type": "message", "seq": 99, "sender": "eve"},
        client_msg_id="t1",
        rid="a1",
    )
    await chat.pipeline.wait_idle()
    ack = bot.last
    assert ack["type"] == "ack" and (ack["id"], ack["seq"]) == ("a1", 1)
    assert chat.record(1) == {
        "title": "ship it",
        "type": "task.created",
        "room": "general",
        "seq": 1,
        "id": ack["message_id"],
        "sender": "bot",
        "sender_kind": "human",
        "ts": TS,
    }
    # Idempotent like a message.
    chat.writes.append(
        bot, chat.room, "task.created", {"title": "again"}, client_msg_id="t1", rid="a2"
    )
    await chat.pipeline.wait_idle()
    assert bot.last["duplicate"] is True and bot.last["seq"] == 1


@pytest.mark.parametrize("kind", ["message", "message.edited", "message.deleted"])
async def test_append_refuses_core_kinds(chat: Chat, kind: str) -> None:
    with pytest.raises(ValueError):
        chat.writes.append(Inbox("bot"), chat.room, kind, {"body": "sneaky"})
    assert chat.pipeline.idle and chat.store.last_seq(chat.room.key) == 0

"""Rooms over real sockets: ordering, replies, idempotency, presence, typing, history."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from .harness import Client, ServerProcess, token

_rooms = itertools.count()


def fresh_room() -> str:
    return f"room-{next(_rooms)}"


async def connect(server: ServerProcess, user: str, **kw: object) -> Client:
    return await Client.connect(server.url, token(user, **kw))  # type: ignore[arg-type]


async def test_three_clients_see_one_gapless_order(server: ServerProcess) -> None:
    room = fresh_room()
    clients = [await connect(server, u) for u in ("ann", "ben", "cat")]
    for c in clients:
        await c.join(room)
    per_client = 40

    async def blast(c: Client, name: str) -> None:
        for i in range(per_client):
            await c.send(
                {
                    "type": "message.send",
                    "room": room,
                    "body": f"{name}-{i}",
                    "client_msg_id": f"{name}-{i}",
                    "id": f"{name}-{i}",
                }
            )

    await asyncio.gather(
        *(blast(c, n) for c, n in zip(clients, ("ann", "ben", "cat"), strict=True))
    )
    total = 3 * per_client
    seen: list[list[tuple[int, str]]] = []
    for c in clients:
        got = []
        while len(got) < total:
            event = await c.next("message")
            got.append((event["seq"], event["body"]))
        seen.append(got)
    assert seen[0] == seen[1] == seen[2]
    assert [seq for seq, _ in seen[0]] == list(range(1, total + 1))
    # each sender's own messages keep their send order
    for name in ("ann", "ben", "cat"):
        mine = [body for _, body in seen[0] if body.startswith(name)]
        assert mine == [f"{name}-{i}" for i in range(per_client)]
    for c in clients:
        acks = [e for e in c.backlog if e["type"] == "ack"]
        while len(acks) < per_client:
            acks.append(await c.next("ack"))
        assert all(not a["duplicate"] for a in acks)
        await c.close()


async def test_message_fields_and_ack(server: ServerProcess) -> None:
    room = fresh_room()
    a = await connect(server, "ann", kind="agent")
    await a.join(room)
    ack = await a.say(room, "hello", client_msg_id="c-1", meta={"lang": "en"})
    msg = await a.next("message")
    assert ack["room"] == room and ack["seq"] == 1 and ack["client_msg_id"] == "c-1"
    assert msg["id"] == ack["message_id"]
    assert (msg["sender"], msg["sender_kind"], msg["body"]) == ("ann", "agent", "hello")
    assert msg["meta"] == {"lang": "en"} and msg["reply_to"] is None
    assert isinstance(msg["ts"], int) and msg["ts"] > 1_600_000_000_000
    await a.close()


async def test_reply_to(server: ServerProcess) -> None:
    room, other = fresh_room(), fresh_room()
    a = await connect(server, "ann")
    await a.join(room)
    await a.join(other)
    first = await a.say(room, "question")
    reply = await a.say(room, "answer", reply_to=first["message_id"])
    events = [await a.next("message"), await a.next("message")]
    assert events[1]["seq"] == reply["seq"] and events[1]["reply_to"] == first["message_id"]
    missing = await a.request(
        {"type": "message.send", "room": room, "body": "x", "reply_to": "0000nope"}
    )
    assert missing["code"] == "not_found"
    cross = await a.request(
        {"type": "message.send", "room": other, "body": "x", "reply_to": first["message_id"]}
    )
    assert cross["code"] == "not_found"
    await a.close()


async def test_idempotent_resend(server: ServerProcess) -> None:
    room = fresh_room()
    a = await connect(server, "ann")
    b = await connect(server, "ben")
    await a.join(room)
    await b.join(room)
    first = await a.say(room, "once", client_msg_id="same")
    again = await a.say(room, "once", client_msg_id="same")
    assert again["duplicate"] is True
    assert (again["seq"], again["message_id"]) == (first["seq"], first["message_id"])
    # Two resends in the same instant (before the first commit) also collapse into one.
    await a.send(
        {"type": "message.send", "room": room, "body": "x", "client_msg_id": "burst", "id": "b1"}
    )
    await a.send(
        {"type": "message.send", "room": room, "body": "x", "client_msg_id": "burst", "id": "b2"}
    )
    acks = {e["id"]: e for e in [await a.next("ack"), await a.next("ack")]}
    assert acks["b1"]["seq"] == acks["b2"]["seq"] == 2
    assert sorted(e["duplicate"] for e in acks.values()) == [False, True]
    events = await b.barrier()
    assert [e["seq"] for e in events if e["type"] == "message"] == [1, 2]
    # The id is per sender: another user may reuse it.
    other = await b.say(room, "mine", client_msg_id="same")
    assert other["seq"] == 3 and other["duplicate"] is False
    await a.close()
    await b.close()


async def test_presence_join_and_leave(server: ServerProcess) -> None:
    room = fresh_room()
    a = await connect(server, "ann")
    joined = await a.join(room)
    assert joined["members"] == []
    b = await connect(server, "ben", kind="agent")
    joined = await b.join(room)
    assert joined["members"] == [{"user_id": "ann", "kind": "human"}]
    event = await a.next("presence")
    assert event == {
        "type": "presence",
        "room": room,
        "user_id": "ben",
        "kind": "agent",
        "action": "join",
    }
    # A second session of the same user is no new presence.
    b2 = await connect(server, "ben", kind="agent")
    await b2.join(room)
    assert not [e for e in await a.barrier() if e["type"] == "presence"]
    await b2.close()
    await b.request({"type": "room.leave", "room": room})
    event = await a.next("presence")
    assert (event["user_id"], event["action"]) == ("ben", "leave")
    # Disconnect counts as leaving.
    await b.join(room)
    assert (await a.next("presence"))["action"] == "join"
    await b.close()
    assert (await a.next("presence"))["action"] == "leave"
    await a.close()


async def test_typing_reaches_others_only(server: ServerProcess) -> None:
    room = fresh_room()
    a = await connect(server, "ann")
    b = await connect(server, "ben")
    await a.join(room)
    await b.join(room)
    await a.send({"type": "typing", "room": room})
    event = await b.next("typing")
    assert (event["user_id"], event["active"], event["room"]) == ("ann", True, room)
    assert not [e for e in await a.barrier() if e["type"] == "typing"]
    not_joined = await a.request({"type": "typing", "room": fresh_room()})
    assert not_joined["code"] == "forbidden"
    await a.close()
    await b.close()


async def test_leave_stops_delivery(server: ServerProcess) -> None:
    room = fresh_room()
    a = await connect(server, "ann")
    b = await connect(server, "ben")
    await a.join(room)
    await b.join(room)
    left = await b.request({"type": "room.leave", "room": room})
    assert left["type"] == "room.left"
    await a.say(room, "after leave")
    await a.next("message")
    assert not [e for e in await b.barrier() if e["type"] == "message"]
    again = await b.request({"type": "room.leave", "room": room})
    assert again["code"] == "not_found"
    send = await b.request({"type": "message.send", "room": room, "body": "x"})
    assert send["code"] == "forbidden"
    await a.close()
    await b.close()


async def test_history_pages(server: ServerProcess) -> None:
    room = fresh_room()
    a = await connect(server, "ann")
    await a.join(room)
    for i in range(1, 11):
        await a.say(room, f"m{i}")
    latest = await a.request({"type": "history", "room": room, "limit": 3})
    assert [m["seq"] for m in latest["messages"]] == [8, 9, 10] and latest["has_more"]
    before = await a.request({"type": "history", "room": room, "before": 8, "limit": 3})
    assert [m["seq"] for m in before["messages"]] == [5, 6, 7] and before["has_more"]
    head = await a.request({"type": "history", "room": room, "before": 3, "limit": 5})
    assert [m["seq"] for m in head["messages"]] == [1, 2] and not head["has_more"]
    after = await a.request({"type": "history", "room": room, "after": 6, "limit": 3})
    assert [m["seq"] for m in after["messages"]] == [7, 8, 9] and after["has_more"]
    tail = await a.request({"type": "history", "room": room, "after": 8})
    assert [m["body"] for m in tail["messages"]] == ["m9", "m10"] and not tail["has_more"]
    missing = await a.request({"type": "history", "room": fresh_room()})
    assert missing["code"] == "not_found"
    await a.close()


async def test_join_since_replays_missed_messages(server: ServerProcess) -> None:
    room = fresh_room()
    a = await connect(server, "ann")
    await a.join(room)
    for i in range(5):
        await a.say(room, f"m{i}")
    b = await connect(server, "ben")
    joined = await b.join(room, since=2)
    assert joined["seq"] == 5
    replay = [e for e in await b.barrier() if e["type"] == "message"]
    assert [e["seq"] for e in replay] == [3, 4, 5]
    await a.say(room, "live")
    assert (await b.next("message"))["seq"] == 6
    await a.close()
    await b.close()


async def test_room_creation_needs_a_permitted_role(server: ServerProcess) -> None:
    room = fresh_room()
    guest = await connect(server, "gus", roles=("guest",))
    denied = await guest.request({"type": "room.join", "room": room})
    assert denied["code"] == "not_found"
    member = await connect(server, "ann")
    await member.join(room)
    joined = await guest.join(room)
    assert joined["room"] == room
    await guest.close()
    await member.close()


async def test_max_rooms_per_connection(server: ServerProcess) -> None:
    a = await connect(server, "ann")
    for i in range(64):
        await a.send({"type": "room.join", "room": f"many-{i}", "id": i})
    for _ in range(64):
        assert (await a.next("room.joined", "error"))["type"] == "room.joined"
    over = await a.request({"type": "room.join", "room": "many-64"})
    assert over["code"] == "limit_exceeded"
    await a.close()


@pytest.mark.parametrize("user_kind", ["human", "agent"])
async def test_sender_kind_is_from_token(server: ServerProcess, user_kind: str) -> None:
    room = fresh_room()
    a = await connect(server, "ann", kind=user_kind)
    await a.join(room)
    await a.say(room, "hi")
    assert (await a.next("message"))["sender_kind"] == user_kind
    await a.close()


async def test_big_rooms_stop_presence_events(tmp_path_factory: pytest.TempPathFactory) -> None:
    from .harness import start_server

    srv = start_server(
        tmp_path_factory.mktemp("data"), presence_broadcast_max=2, presence_list_max=1
    )
    try:
        a = await connect(srv, "ann")
        await a.join("crowd")
        b = await connect(srv, "ben")
        await b.join("crowd")
        assert (await a.next("presence"))["user_id"] == "ben"  # 2 present: still announced
        c = await connect(srv, "cy")
        joined = await c.join("crowd")
        assert joined["members"] == [{"user_id": "ann", "kind": "human"}]
        assert joined["members_total"] == 2
        # 3 present now: above the limit, neither the join nor a leave is broadcast
        assert not [e for e in await a.barrier() if e["type"] == "presence"]
        await c.close()
        await b.request({"type": "ping"})
        assert not [e for e in await a.barrier() if e["type"] == "presence"]
        for client in (a, b):
            await client.close()
    finally:
        srv.stop()

"""Tenants never see each other: the tenant comes from the token, rooms are scoped by it."""

from __future__ import annotations

from .harness import Client, ServerProcess, token


async def test_other_tenant_cannot_join_read_or_see_presence(server: ServerProcess) -> None:
    alice = await Client.connect(server.url, token("alice", tenant="tenant-a"))
    await alice.join("secret")
    await alice.say("secret", "for tenant A only")

    # Same room name, other tenant, no create role: the room does not exist for them.
    guest = await Client.connect(server.url, token("gus", tenant="tenant-b", roles=("guest",)))
    assert (await guest.request({"type": "room.join", "room": "secret"}))["code"] == "not_found"
    assert (await guest.request({"type": "history", "room": "secret"}))["code"] == "not_found"

    # With a create role, tenant B gets its own, separate room of that name.
    bob = await Client.connect(server.url, token("bob", tenant="tenant-b", roles=("admin",)))
    joined = await bob.join("secret", since=0)
    assert joined["seq"] == 0 and joined["members"] == []
    page = await bob.request({"type": "history", "room": "secret"})
    assert page["messages"] == []

    await alice.say("secret", "still tenant A")
    await bob.say("secret", "tenant B talking")
    bob_seen = await bob.barrier()
    bob_msgs = [e for e in bob_seen if e["type"] == "message"]
    assert [(m["seq"], m["body"]) for m in bob_msgs] == [(1, "tenant B talking")]
    assert not [e for e in bob_seen if e["type"] == "presence"]

    alice_seen = await alice.barrier()
    assert [e["body"] for e in alice_seen if e["type"] == "message"] == [
        "for tenant A only",
        "still tenant A",
    ]
    assert not [e for e in alice_seen if e["type"] in ("presence", "typing")]

    # Typing is not acknowledged. Bob's barrier shows his typing was handled (a connection's
    # frames are handled in order) and a tenant-B member receiving it shows it was fanned
    # out, both before alice's barrier: so her barrier would carry it had it leaked.
    bea = await Client.connect(server.url, token("bea", tenant="tenant-b"))
    await bea.join("secret")
    await bob.send({"type": "typing", "room": "secret"})
    assert not [e for e in await bob.barrier() if e["type"] == "error"]
    assert (await bea.next("typing"))["user_id"] == "bob"
    assert not [e for e in await alice.barrier() if e["type"] in ("typing", "presence")]

    # A tenant-B sender cannot reply to a tenant-A message by id either.
    a_msg = (await alice.request({"type": "history", "room": "secret"}))["messages"][0]
    cross = await bob.request(
        {"type": "message.send", "room": "secret", "body": "x", "reply_to": a_msg["id"]}
    )
    assert cross["code"] == "not_found"
    for c in (alice, guest, bob, bea):
        await c.close()


async def test_client_message_ids_are_per_tenant(server: ServerProcess) -> None:
    a = await Client.connect(server.url, token("sam", tenant="tenant-a"))
    b = await Client.connect(server.url, token("sam", tenant="tenant-b"))
    await a.join("ids")
    await b.join("ids")
    first = await a.say("ids", "a", client_msg_id="k")
    second = await b.say("ids", "b", client_msg_id="k")
    assert not second["duplicate"] and second["message_id"] != first["message_id"]
    await a.close()
    await b.close()

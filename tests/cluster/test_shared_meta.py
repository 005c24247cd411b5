"""Metadata shared by every node (rooms, members, agents): what one node decides, the
others enforce — a private room stays private on every node."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import nats
import orjson

from integration.harness import Client, token
from nexus.cluster.wire import meta_key
from nexus.store.keys import room_key

from .nodes import Cluster

ADMIN = token("ada", roles=("admin", "member"))
MIA = token("mia", roles=("member",))
BOB = token("bob", roles=("member",))


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the other node did not converge in time")
        await asyncio.sleep(0.05)


async def test_rooms_members_and_agents_are_shared(cluster: Cluster) -> None:
    n1, n2 = cluster.start(2)
    async with (
        httpx.AsyncClient(base_url=n1.api, timeout=10) as one,
        httpx.AsyncClient(base_url=n2.api, timeout=10) as two,
    ):
        r = await one.post(
            "/v1/rooms", json={"name": "secret", "private": True}, headers=auth(ADMIN)
        )
        assert r.status_code == 201, r.text
        r = await one.put(
            "/v1/rooms/secret/members/mia", json={"role": "member"}, headers=auth(ADMIN)
        )
        assert r.status_code == 200, r.text

        async def mia_reads_on_two() -> bool:
            r = await two.get("/v1/rooms/secret/messages", headers=auth(MIA))
            return r.status_code == 200

        await eventually(mia_reads_on_two)
        r = await two.post("/v1/rooms/secret/messages", json={"body": "hi"}, headers=auth(MIA))
        assert r.status_code == 201, r.text
        # not a member: the private room does not exist for bob, on either node
        for http in (one, two):
            assert (await http.get("/v1/rooms/secret", headers=auth(BOB))).status_code == 404
            r = await http.post("/v1/rooms/secret/messages", json={"body": "x"}, headers=auth(BOB))
            assert r.status_code == 404
        # bob cannot take the name on another node: the room exists there too
        r = await two.post("/v1/rooms", json={"name": "secret"}, headers=auth(ADMIN))
        assert r.status_code == 409
        # archived on one node: read-only on the other
        assert (await one.delete("/v1/rooms/secret", headers=auth(ADMIN))).status_code == 200

        async def archived_on_two() -> bool:
            r = await two.post(
                "/v1/rooms/secret/messages", json={"body": "late"}, headers=auth(MIA)
            )
            return r.status_code == 403

        await eventually(archived_on_two)
        # an agent defined on one node is known on the other
        r = await one.post("/v1/agents", json={"name": "shared-helper"}, headers=auth(ADMIN))
        assert r.status_code == 201, r.text

        async def agent_on_two() -> bool:
            r = await two.get("/v1/agents/shared-helper", headers=auth(ADMIN))
            return r.status_code == 200

        await eventually(agent_on_two)


async def test_a_join_racing_another_nodes_private_creation_is_refused(cluster: Cluster) -> None:
    """Another node creates a private room (its settings put straight into the shared
    bucket, as its engine does) while a non-member joins the same name here: whichever
    comes first — this node's mirror of the bucket or its own creation of the room — the
    join is refused as for any private room, and nothing of the joiner is stored."""
    (n2,) = cluster.start(1)
    nc = await nats.connect(cluster.nats.url)
    try:
        kv = await nc.jetstream().key_value(f"{cluster.stream}_META")
        meta = {
            "tenant": "acme",
            "name": "raced",
            "created_by": "ada",
            "created_at": 1795700000000,
            "private": True,
        }
        await kv.create(meta_key("room", room_key("acme", "raced").encode()), orjson.dumps(meta))
        bob = await Client.connect(n2.url, BOB)
        answer = await bob.request({"type": "room.join", "room": "raced"})
        assert answer["type"] == "error" and answer["code"] == "not_found", answer
        refused = await bob.request({"type": "message.send", "room": "raced", "body": "x"})
        assert refused["type"] == "error" and refused["code"] == "forbidden"
        await bob.close()
    finally:
        await nc.close()
    async with httpx.AsyncClient(base_url=n2.api, timeout=10) as http:
        r = await http.get("/v1/rooms/raced", headers=auth(ADMIN))
        assert r.status_code == 200 and r.json()["private"] is True
        r = await http.get("/v1/rooms/raced/messages", headers=auth(ADMIN))
        assert r.json()["messages"] == []

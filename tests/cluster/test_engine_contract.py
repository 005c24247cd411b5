"""The storage engines' shared contract: the same cases against a standalone node (LMDB)
and a cluster node (JetStream), over the real protocol. What a client can observe must
not depend on the engine."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.natsd import NatsServer, nats_server_binary
from integration.harness import Client, ServerProcess, start_server, token

ADA = token("ada", roles=("admin", "member"))
BOB = token("bob", roles=("member",))
_rooms = itertools.count()


@pytest.fixture(scope="module", params=["lmdb", "nats"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp(request.param)
    nats: NatsServer | None = None
    settings: dict[str, str] = {}
    if request.param == "nats":
        nats = NatsServer(root / "jetstream", nats_server_binary())
        nats.start()
        settings = {
            "cluster_engine": "nats",
            "cluster_nats_url": nats.url,
            "cluster_node_id": "contract",
        }
    server = start_server(root / "node", **settings)
    yield server
    assert server.stop() == 0, "".join(server.output)
    if nats is not None:
        nats.stop()


def room() -> str:
    return f"contract-{next(_rooms)}"


async def test_ack_after_store_then_delivery_in_seq_order(node: ServerProcess) -> None:
    name = room()
    ada, bob = await Client.connect(node.url, ADA), await Client.connect(node.url, BOB)
    await ada.join(name)
    await bob.join(name)
    acks = [await ada.say(name, f"m{i}") for i in range(20)]
    assert [a["seq"] for a in acks] == list(range(1, 21))
    got = [await bob.next("message") for _ in range(20)]
    assert [m["seq"] for m in got] == list(range(1, 21))
    assert [m["body"] for m in got] == [f"m{i}" for i in range(20)]
    assert [m["id"] for m in got] == [a["message_id"] for a in acks]
    await ada.close()
    await bob.close()


async def test_resend_is_answered_with_the_original(node: ServerProcess) -> None:
    name = room()
    ada = await Client.connect(node.url, ADA)
    await ada.join(name)
    first = await ada.request(
        {"type": "message.send", "room": name, "body": "once", "client_msg_id": f"k-{name}"}
    )
    again = await ada.request(
        {"type": "message.send", "room": name, "body": "once", "client_msg_id": f"k-{name}"}
    )
    assert first["duplicate"] is False and again["duplicate"] is True
    assert (again["seq"], again["message_id"]) == (first["seq"], first["message_id"])
    page = await ada.request({"type": "history", "room": name})
    assert [m["body"] for m in page["messages"]] == ["once"]
    await ada.close()


async def test_edit_and_delete_patch_the_stored_message(node: ServerProcess) -> None:
    name = room()
    ada = await Client.connect(node.url, ADA)
    await ada.join(name)
    sent = await ada.say(name, "draft")
    edited = await ada.request(
        {"type": "message.edit", "room": name, "message_id": sent["message_id"], "body": "final"}
    )
    assert edited["type"] == "ack" and edited["seq"] == sent["seq"] + 1
    await ada.next("message.edited")
    gone = await ada.say(name, "oops")
    await ada.request({"type": "message.delete", "room": name, "message_id": gone["message_id"]})
    await ada.next("message.deleted")
    async with httpx.AsyncClient(
        base_url=node.api, headers={"Authorization": f"Bearer {ADA}"}
    ) as http:
        stored = (await http.get(f"/v1/rooms/{name}/messages")).json()["messages"]
    by_id = {m["id"]: m for m in stored}
    assert by_id[sent["message_id"]]["body"] == "final" and by_id[sent["message_id"]]["edited"]
    assert by_id[gone["message_id"]]["deleted"] and by_id[gone["message_id"]]["body"] == ""
    await ada.close()


async def test_since_replays_exactly_what_was_missed(node: ServerProcess) -> None:
    name = room()
    ada = await Client.connect(node.url, ADA)
    await ada.join(name)
    for i in range(30):
        await ada.say(name, f"r{i}")
    bob = await Client.connect(node.url, BOB)
    joined = await bob.join(name, since=12)
    assert joined["seq"] == 30
    replayed = [await bob.next("message") for _ in range(18)]
    assert [m["seq"] for m in replayed] == list(range(13, 31))
    await ada.say(name, "live")
    assert (await bob.next("message"))["seq"] == 31
    await ada.close()
    await bob.close()


async def test_http_writes_and_reads_agree(node: ServerProcess) -> None:
    name = room()
    async with httpx.AsyncClient(
        base_url=node.api, headers={"Authorization": f"Bearer {ADA}"}
    ) as http:
        assert (
            await http.post("/v1/rooms", json={"name": name, "private": True})
        ).status_code == 201
        seqs = []
        for i in range(5):
            r = await http.post(f"/v1/rooms/{name}/messages", json={"body": f"h{i}"})
            assert r.status_code == 201, r.text
            seqs.append(r.json()["seq"])
        assert seqs == [1, 2, 3, 4, 5]
        page = (await http.get(f"/v1/rooms/{name}/messages", params={"cursor": "a2"})).json()
        assert [m["seq"] for m in page["messages"]] == [3, 4, 5]
        room_view = (await http.get(f"/v1/rooms/{name}")).json()
        assert room_view["private"] is True
    async with httpx.AsyncClient(
        base_url=node.api, headers={"Authorization": f"Bearer {BOB}"}
    ) as http:
        assert (await http.get(f"/v1/rooms/{name}/messages")).status_code == 404  # private


def test_the_pinned_nats_server_is_installed(tmp_path: Path) -> None:
    assert nats_server_binary().is_file()

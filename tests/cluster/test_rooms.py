"""Three nodes on one JetStream behave as one server: fan-out across nodes in order,
concurrent writers on every node sequenced gaplessly, resume on another node, and
``client_msg_id`` deduplicated cluster-wide. Every run is judged by the chaos checker."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from integration.harness import token

from .checker import RoomCheck
from .members import Member, record_histories
from .nodes import Cluster

pytestmark = pytest.mark.timeout(120)


def keys(sender: str, n: int, start: int = 0) -> list[str]:
    return [f"{sender}-{i:04d}" for i in range(start, start + n)]


async def test_a_message_sent_on_one_node_reaches_every_node_in_order(cluster: Cluster) -> None:
    cluster.start(3)
    check = RoomCheck("fan")
    sender = Member(check, "alice")
    readers = [Member(check, f"r{i}") for i in range(1, 5)]
    await sender.join(cluster["n1"])
    for member, node in zip(readers, ("n1", "n2", "n3", "n3"), strict=True):
        joined = await member.join(cluster[node])
        assert joined["seq"] == 0
    await sender.send_all(keys("alice", 200), window=16)
    assert sorted(ack["seq"] for ack in sender.acks.values()) == list(range(1, 201))
    for member in [sender, *readers]:
        await member.wait_seq(200)
    for member in [sender, *readers]:
        await member.close()
    await record_histories(check, cluster.nodes)
    check.verify()
    assert [len(s.seqs) for s in check.streams] == [200] * 5
    assert check.duplicates() == dict.fromkeys(("alice", "r1", "r2", "r3", "r4"), 0)


async def test_concurrent_writers_on_three_nodes_get_one_gapless_sequence(
    cluster: Cluster,
) -> None:
    nodes = cluster.start(3)
    check = RoomCheck("busy")
    writers = [Member(check, f"w{i}") for i in range(1, 4)]
    for writer, node in zip(writers, nodes, strict=True):
        await writer.join(node)
    per_writer = 150
    await asyncio.gather(*(w.send_all(keys(w.user, per_writer), window=8) for w in writers))
    total = 3 * per_writer
    acked = sorted(ack["seq"] for w in writers for ack in w.acks.values())
    assert acked == list(range(1, total + 1))
    assert not any(ack["duplicate"] for w in writers for ack in w.acks.values())
    # A late reader on each node replays the whole room from JetStream-backed history.
    late = [Member(check, f"late{i}") for i in range(1, 4)]
    for member, node in zip(late, nodes, strict=True):
        await member.join(node, since=0)
    for member in [*writers, *late]:
        await member.wait_seq(total)
        await member.close()
    await record_histories(check, cluster.nodes)
    check.verify()


async def test_a_reader_resumes_on_another_node_without_a_gap(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.start(3)
    check = RoomCheck("resume")
    writer, reader = Member(check, "writer"), Member(check, "reader")
    await writer.join(n1)
    await reader.join(n2)
    await writer.send_all(keys("writer", 60))
    await reader.wait_seq(60)
    await reader.close()
    # 90 more while the reader is away, then it comes back on the third node
    await writer.send_all(keys("writer", 90, start=60))
    joined = await reader.join(n3, since=60)
    await writer.send_all(keys("writer", 30, start=150))
    for member in (writer, reader):
        await member.wait_seq(180)
        await member.close()
    await record_histories(check, cluster.nodes)
    check.verify()
    # n3 had never served the room: it must still know the room's seq when it answers the
    # join, and replay only what the reader missed.
    second = [s for s in check.streams if s.reader == "reader"][1]
    assert (joined["seq"], joined["first_seq"]) == (150, 1), joined
    assert second.seqs == list(range(61, 181))


async def test_client_msg_id_is_deduplicated_across_nodes(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.start(3)
    check = RoomCheck("dedup")
    on_n1, on_n2 = Member(check, "ada", "ada@n1"), Member(check, "ada", "ada@n2")
    reader = Member(check, "bob")
    await on_n1.join(n1)
    await on_n2.join(n2)
    await reader.join(n3)
    sent = keys("ada", 20)
    await on_n1.send_all(sent)
    first = {k: on_n1.acks[k] for k in sent}
    # The same user resends every key through another node: no new entry.
    await on_n2.send_all(sent)
    for key in sent:
        again = on_n2.acks[key]
        assert again["duplicate"] is True, again
        assert (again["seq"], again["message_id"]) == (first[key]["seq"], first[key]["message_id"])
    # ...and through the HTTP API of the third node
    headers = {"Authorization": f"Bearer {token('ada')}"}
    async with httpx.AsyncClient(base_url=n3.api, headers=headers, timeout=10) as http:
        reply = await http.post(
            "/v1/rooms/dedup/messages", json={"body": sent[0], "client_msg_id": sent[0]}
        )
        assert reply.status_code in (200, 201), reply.text
        assert reply.json()["duplicate"] is True and reply.json()["seq"] == first[sent[0]]["seq"]
        # a new key through HTTP is sequenced after them and reaches the WebSocket members
        reply = await http.post(
            "/v1/rooms/dedup/messages", json={"body": "ada-http", "client_msg_id": "ada-http"}
        )
        assert reply.status_code == 201, reply.text
        check.sent("ada", "ada-http")
        body = reply.json()
        check.acked("ada-http", body["seq"], body["message_id"])
    assert body["seq"] == 21
    for member in (on_n1, on_n2, reader):
        await member.wait_seq(21)
        await member.close()
    await record_histories(check, cluster.nodes)
    check.verify()

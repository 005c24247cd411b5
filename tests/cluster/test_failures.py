"""Failures in the middle of a stream: a node killed with SIGKILL, a node frozen with
SIGSTOP for 5 s, the nats-server killed and restarted on its store. Nothing acknowledged
is lost, clients resume elsewhere without a gap, resends are deduplicated; the chaos
checker judges every run."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from benchmarks.natsd import NatsServer
from integration.harness import ServerProcess, token

from .checker import RoomCheck
from .members import Disconnected, Member, Refused, converge, readyz, record_histories
from .nodes import Cluster

pytestmark = pytest.mark.timeout(150)


def keys(sender: str, n: int, start: int = 0) -> list[str]:
    return [f"{sender}-{i:04d}" for i in range(start, start + n)]


def not_sent(member: Member, all_keys: list[str]) -> list[str]:
    return [k for k in all_keys if k not in member.acks and k not in member.unacked]


async def wait_ready(node: ServerProcess, want: int, timeout: float = 30.0) -> None:
    """Poll ``/readyz`` until it answers ``want``."""
    deadline = asyncio.get_running_loop().time() + timeout
    status = None
    while asyncio.get_running_loop().time() < deadline:
        status = await readyz(node)
        if status == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz stayed {status}, expected {want}")


async def test_kill9_a_node_mid_stream_loses_nothing_acked(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.start(3)
    check = RoomCheck("crash")
    w1, w2 = Member(check, "w1"), Member(check, "w2")
    r1, r3 = Member(check, "r1"), Member(check, "r3")
    for member, node in ((w1, n1), (w2, n2), (r1, n1), (r3, n3)):
        await member.join(node)
    all1, all2 = keys("w1", 300), keys("w2", 300)
    first = asyncio.create_task(w1.send_all(all1, window=8))
    other = asyncio.create_task(w2.send_all(all2, window=8))
    await w1.wait_acks(100)
    cluster.kill9("n1")
    with pytest.raises(Disconnected):
        await first
    await r1.wait_closed()
    # w1 resumes on n3: resends what was never acked (same client_msg_id), then the rest.
    await w1.join(n3, since=w1.last_seq)
    await r1.join(n2, since=r1.last_seq)
    await w1.resend_unacked()
    await w1.send_all(not_sent(w1, all1))
    await other
    assert len(w1.acks) == len(w2.acks) == 300
    for member in (w1, w2, r1, r3):
        await member.wait_seq(600)
    # The killed node comes back on its data dir and catches up from JetStream.
    cluster.restart("n1")
    late = Member(check, "late")
    await late.join(cluster["n1"], since=0)
    await late.wait_seq(600)
    for member in (w1, w2, r1, r3, late):
        await member.close()
    await record_histories(check, cluster.nodes)
    check.verify()
    assert len(check.history_of("n1")) == 600


async def test_a_node_frozen_for_5s_backfills(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.start(3)
    check = RoomCheck("frozen")
    writer, r2, r3 = Member(check, "writer"), Member(check, "r2"), Member(check, "r3")
    for member, node in ((writer, n1), (r2, n2), (r3, n3)):
        await member.join(node)
    await writer.send_all(keys("writer", 100))
    await r3.wait_seq(100)
    loop = asyncio.get_running_loop()
    frozen_at = loop.time()
    cluster.sigstop("n3")
    await writer.send_all(keys("writer", 150, start=100))
    await r2.wait_seq(250)
    # The scenario is a 5-second freeze, whatever the writer's speed.
    await asyncio.sleep(max(0.0, 5.0 - (loop.time() - frozen_at)))
    cluster.sigcont("n3")
    await writer.send_all(keys("writer", 50, start=250))
    # r3 stayed connected to n3 through the freeze: n3 must deliver 101..300 to it in
    # order, backfilled from JetStream. If n3 dropped it instead, it resumes on n3.
    try:
        await r3.wait_seq(300)
    except Disconnected:
        await r3.join(n3, since=r3.last_seq)
        await r3.wait_seq(300)
    fresh = Member(check, "fresh")
    await fresh.join(n3, since=0)
    for member in (writer, r2, r3, fresh):
        await member.wait_seq(300)
    # The other nodes gave n3's users up during the freeze (node timeout 2.5 s); once it
    # is back, every node lists them again.
    await converge([n1, n2, n3], "frozen", ["fresh", "r2", "r3", "writer"])
    for member in (writer, r2, r3, fresh):
        await member.close()
    await record_histories(check, cluster.nodes)
    check.verify()


async def test_nats_server_kill9_and_restart(cluster: Cluster, nats: NatsServer) -> None:
    n1, n2 = cluster.start(2)
    check = RoomCheck("broker")
    writer, reader = Member(check, "writer"), Member(check, "reader")
    await writer.join(n1)
    await reader.join(n2)
    all_keys = keys("writer", 200)
    sending = asyncio.create_task(writer.send_all(all_keys, window=8))
    await writer.wait_acks(100)
    nats.kill9()
    # Writes fail (retryable), they do not hang, and the node says it is not ready.
    with pytest.raises(Refused) as refused:
        await sending
    assert refused.value.code == "unavailable"
    await wait_ready(n1, 503)
    with pytest.raises(Refused) as again:
        await writer.send(not_sent(writer, all_keys)[0])
    assert again.value.code == "unavailable"
    # the HTTP API refuses writes the same way (503, retryable), on the other node too
    await wait_ready(n2, 503)
    headers = {"Authorization": f"Bearer {token('writer')}"}
    async with httpx.AsyncClient(base_url=n2.api, headers=headers, timeout=30) as http:
        reply = await http.post(
            "/v1/rooms/broker/messages", json={"body": "via-http", "client_msg_id": "via-http"}
        )
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"]["code"] == "unavailable"
    acked_before = dict(writer.acks)

    nats.restart()
    await wait_ready(n1, 200)
    await wait_ready(n2, 200)
    # Resends of what was not acked, in order, then the rest.
    await writer.resend_unacked(window=8)
    await writer.send_all(not_sent(writer, all_keys), window=8)
    assert len(writer.acks) == 200
    # Keys acked before the broker died are still known: resent, they create nothing.
    for key in list(acked_before)[:20]:
        reply = await writer.send(key)
        assert reply["duplicate"] is True and reply["seq"] == acked_before[key]["seq"], reply
    for member in (writer, reader):
        await member.wait_seq(200)
        await member.close()
    await record_histories(check, cluster.nodes)
    check.verify()
    assert [e.seq for e in check.history_of("n2")] == list(range(1, 201))

"""Chaos, as in JetStream's own chaos tests: writers and readers on three nodes while a
node at a time is killed with SIGKILL and restarted; every client whose node dies moves
to a live node (``since`` = its last seq) and resends what was not acked. The checker
then demands one gapless sequence, every acked message exactly once, each sender's order
and every reader complete. The victims are drawn from a fixed seed."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from integration.harness import ServerProcess

from .checker import RoomCheck
from .members import Disconnected, Member, Refused, record_histories
from .nodes import Cluster

pytestmark = pytest.mark.timeout(150)

PER_WRITER = 200
KILLS = 2


def live(cluster: Cluster, rng: random.Random) -> ServerProcess:
    return rng.choice([n for n in cluster.nodes.values() if n.proc.poll() is None])


async def rejoin(member: Member, cluster: Cluster, rng: random.Random) -> None:
    """Join a live node, resuming after the member's last seq; retry while nodes die."""
    for _ in range(50):
        try:
            await member.join(live(cluster, rng), since=member.last_seq)
            return
        except Exception:  # refused, reset or closed mid-join by a dying node: try another
            await asyncio.sleep(0.2)
    raise AssertionError(f"{member.user} could not rejoin any node")


async def write(member: Member, keys: list[str], cluster: Cluster, rng: random.Random) -> None:
    """Send every key, moving to a live node and resending the unacked ones on failure."""
    while True:
        try:
            await member.resend_unacked(window=8)
            rest = [k for k in keys if k not in member.acks and k not in member.unacked]
            if not rest:
                return
            await member.send_all(rest, window=8)
        except (Disconnected, Refused):
            await rejoin(member, cluster, rng)


async def keep_reading(member: Member, cluster: Cluster, rng: random.Random) -> None:
    """Rejoin a live node whenever the member's node dies (cancelled at the end)."""
    while True:
        await member.wait_closed(timeout=3600)
        await rejoin(member, cluster, rng)


@pytest.mark.parametrize("seed", [17])
async def test_kill_and_restart_nodes_under_load(cluster: Cluster, seed: int) -> None:
    rng = random.Random(seed)
    nodes = cluster.start(3)
    check = RoomCheck("chaos")
    writers = [Member(check, f"w{i}") for i in range(3)]
    readers = [Member(check, f"r{i}") for i in range(3)]
    for i, member in enumerate([*writers, *readers]):
        await member.join(nodes[i % 3])
    all_keys = {w.user: [f"{w.user}-{i:04d}" for i in range(PER_WRITER)] for w in writers}
    writing = [asyncio.create_task(write(w, all_keys[w.user], cluster, rng)) for w in writers]
    reading = [asyncio.create_task(keep_reading(r, cluster, rng)) for r in readers]
    total = len(writers) * PER_WRITER
    killed = []
    for k in range(1, KILLS + 1):
        await writers[0].wait_acks(PER_WRITER * k // (KILLS + 1), timeout=60)
        victim = rng.choice(sorted(n for n, p in cluster.nodes.items() if p.proc.poll() is None))
        cluster.kill9(victim)
        killed.append(victim)
        cluster.restart(victim)
    await asyncio.wait_for(asyncio.gather(*writing), 90)
    assert sum(len(w.acks) for w in writers) == total
    for member in [*writers, *readers]:
        if member.closed:
            await rejoin(member, cluster, rng)
        await member.wait_seq(total)
    for task in reading:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for member in [*writers, *readers]:
        await member.close()
    await record_histories(check, cluster.nodes)
    check.verify()
    assert len(check.history_of(killed[-1])) == total
    # the chaos did happen: clients had to move (more joins than members)
    assert len(killed) == KILLS and len(check.streams) > len(writers) + len(readers)

"""Presence is cluster-wide: `presence` events and `room.joined.members` name users on
every node, a user with sessions on two nodes is present until the last one leaves, and
the users of a killed node disappear everywhere after ``cluster_node_timeout``."""

from __future__ import annotations

import pytest

from .checker import RoomCheck
from .members import Member, converge
from .nodes import Cluster

pytestmark = pytest.mark.timeout(90)


async def test_presence_converges_across_nodes(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.start(3)
    check = RoomCheck("lobby")
    u1, u2, u3 = Member(check, "u1"), Member(check, "u2"), Member(check, "u3")
    await u1.join(n1)
    await u2.join(n2)
    await u1.wait_presence("join", "u2")
    joined = await u3.join(n3)
    assert sorted(m["user_id"] for m in joined["members"]) == ["u1", "u2"]
    assert joined["members_total"] == 2
    await u1.wait_presence("join", "u3")
    await u2.wait_presence("join", "u3")
    await converge([n1, n2, n3], "lobby", ["u1", "u2", "u3"])

    await u2.leave()
    await u1.wait_presence("leave", "u2")
    await u3.wait_presence("leave", "u2")
    await converge([n1, n2, n3], "lobby", ["u1", "u3"])

    # u3's node dies without a word: its users leave after the node timeout.
    cluster.kill9("n3")
    await u1.wait_presence("leave", "u3")
    await converge([n1, n2], "lobby", ["u1"])
    u4 = Member(check, "u4")
    joined = await u4.join(n2)
    assert [m["user_id"] for m in joined["members"]] == ["u1"]
    assert u1.presence == [("join", "u2"), ("join", "u3"), ("leave", "u2"), ("leave", "u3")]
    for member in (u1, u2, u4):
        await member.close()


async def test_a_user_on_two_nodes_is_present_until_the_last_session_leaves(
    cluster: Cluster,
) -> None:
    n1, n2, n3 = cluster.start(3)
    check = RoomCheck("twice")
    watcher = Member(check, "watcher")
    here, there = Member(check, "ada", "ada@n1"), Member(check, "ada", "ada@n2")
    await watcher.join(n3)
    await here.join(n1)
    await watcher.wait_presence("join", "ada")
    joined = await there.join(n2)  # a second session of the same user, on another node
    assert sorted(m["user_id"] for m in joined["members"]) == ["ada", "watcher"]
    await converge([n1, n2, n3], "twice", ["ada", "watcher"])
    await here.leave()  # ada is still in the room through n2
    await converge([n1, n2, n3], "twice", ["ada", "watcher"])
    await there.leave()
    await watcher.wait_presence("leave", "ada")
    await converge([n1, n2, n3], "twice", ["watcher"])
    # one join and one leave: the second session and the first leave were not announced
    assert watcher.presence == [("join", "ada"), ("leave", "ada")]
    for member in (watcher, here, there):
        await member.close()

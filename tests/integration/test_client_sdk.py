"""The Python SDK (nexus.client) against a real server over real sockets, with a TCP proxy
in between that the tests cut or blackhole to play the network's part."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from nexus.client import (
    Backoff,
    Connection,
    ConnectionClosed,
    Message,
    NexusClient,
    NexusError,
    ReplyDelta,
    ReplyEnded,
    SyncClient,
)

from .harness import ServerProcess, module_server, token

# A fast heartbeat sweep so an expired token closes the session within a second.
sdk_server = module_server(heartbeat_interval=1, heartbeat_timeout=0.5)
ADMIN = token("ada", roles=("admin", "member"))
BOB = token("bob", roles=("member",))
_rooms = itertools.count()


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


class Proxy:
    """A TCP forwarder: ``cut()`` drops every connection, ``blackhole`` stops the server's
    bytes from reaching the client (an ack lost on the way)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.blackhole = False
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._pairs.append((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if down and self.blackhole:
                        continue
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def cut(self) -> None:
        for a, b in self._pairs:
            for w in (a, b):
                with contextlib.suppress(Exception):
                    w.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def proxy(sdk_server: ServerProcess) -> AsyncIterator[Proxy]:
    p = Proxy(sdk_server.port)
    await p.start()
    yield p
    await p.close()


def quick() -> Backoff:
    return Backoff(base=0.05, cap=0.2)


async def room_name() -> str:
    return f"sdk-{next(_rooms)}"


async def messages(client: NexusClient, n: int, timeout: float = 10.0) -> list[Message]:
    out: list[Message] = []
    while len(out) < n:
        event = await client.next_event("message", timeout=timeout)
        assert isinstance(event, Message)
        out.append(event)
    return out


async def test_send_join_history_and_own_message(sdk_server: ServerProcess) -> None:
    room = await room_name()
    async with NexusClient(sdk_server.url, ADMIN, backoff=quick()) as client:
        assert client.session["user_id"] == "ada"
        joined = await client.join(room)
        assert joined["seq"] == 0
        ack = await client.send(room, "hello", meta={"k": 1})
        assert ack["seq"] == 1 and ack["duplicate"] is False and ack["client_msg_id"]
        (mine,) = await messages(client, 1)
        assert mine.body == "hello" and mine.seq == 1 and mine.meta == {"k": 1}
        page = await client.history(room)
        assert [m["body"] for m in page["messages"]] == ["hello"]
        with pytest.raises(NexusError) as refused:
            await client.send("never-joined", "x")
        assert refused.value.code == "forbidden"
        with pytest.raises(NexusError):
            await client.send(room, "")  # bad_request


async def test_reconnect_resumes_every_room_without_gap_or_duplicate(
    sdk_server: ServerProcess, proxy: Proxy
) -> None:
    room = await room_name()
    async with (
        NexusClient(proxy.url, ADMIN, backoff=quick()) as alice,
        NexusClient(sdk_server.url, BOB, backoff=quick()) as bob,
    ):
        await alice.join(room)
        await bob.join(room)
        await bob.send(room, "m0")
        assert [m.body for m in await messages(alice, 1)] == ["m0"]
        proxy.blackhole = True  # alice hears nothing...
        sends = [asyncio.create_task(bob.send(room, f"m{i}")) for i in range(1, 6)]
        await asyncio.gather(*sends)
        proxy.cut()  # ...then loses the connection
        proxy.blackhole = False
        # a send while disconnected waits for the reconnect, then goes out once
        mine = await alice.send(room, "from-alice", timeout=15)
        got = await messages(alice, 6, timeout=15)
        assert [m.body for m in got] == ["m1", "m2", "m3", "m4", "m5", "from-alice"]
        assert [m.seq for m in got] == [2, 3, 4, 5, 6, 7] and mine["seq"] == 7
        assert proxy.connections >= 2


async def test_lost_ack_is_resent_and_answered_duplicate(
    sdk_server: ServerProcess, proxy: Proxy
) -> None:
    room = await room_name()
    async with NexusClient(proxy.url, ADMIN, backoff=quick()) as client:
        await client.join(room)
        proxy.blackhole = True  # the server stores it, the ack never arrives
        sending = asyncio.create_task(client.send(room, "exactly once", timeout=15))
        await asyncio.sleep(0.5)
        proxy.cut()
        proxy.blackhole = False
        ack = await sending
        assert ack["duplicate"] is True and ack["seq"] == 1
    async with httpx.AsyncClient(base_url=sdk_server.api, headers=auth(ADMIN)) as http:
        stored = (await http.get(f"/v1/rooms/{room}/messages")).json()["messages"]
    assert [m["body"] for m in stored] == ["exactly once"]


async def test_forced_disconnect_stops_for_good(sdk_server: ServerProcess) -> None:
    client = NexusClient(sdk_server.url, BOB, backoff=quick())
    await client.connect()
    session = client.session["session_id"]
    async with httpx.AsyncClient(base_url=sdk_server.api, headers=auth(ADMIN)) as http:
        r = await http.delete(f"/v1/admin/connections/{session}")
        assert r.status_code == 204
    closed = None
    async for event in client.events():
        if isinstance(event, Connection) and event.state == "closed":
            closed = event
    assert closed is not None and closed.code == 4502  # 45xx: no reconnect
    with pytest.raises(ConnectionClosed):
        await client.send("anything", "x")
    await client.close()


async def test_bad_token_refused_at_connect(sdk_server: ServerProcess) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        await NexusClient(sdk_server.url, "not-a-jwt", backoff=quick()).connect()
    assert closed.value.code == 4501


async def test_expired_token_reconnects_with_a_refreshed_one(sdk_server: ServerProcess) -> None:
    minted: list[float] = []

    def fresh() -> str:
        minted.append(time.time())
        lifetime = 2 if len(minted) == 1 else 3600  # the first one expires at once
        return token("ada", roles=("admin", "member"), ttl=lifetime)

    room = await room_name()
    async with NexusClient(sdk_server.url, fresh, backoff=quick()) as client:
        await client.join(room)
        event = await client.next_event("connection", timeout=15)
        assert isinstance(event, Connection) and event.state == "connected"  # the first
        event = await client.next_event("connection", timeout=15)
        assert isinstance(event, Connection) and event.state == "reconnecting"
        assert event.code == 4003
        event = await client.next_event("connection", timeout=15)
        assert isinstance(event, Connection) and event.state == "connected"
        ack = await client.send(room, "still here")
        assert ack["seq"] == 1
    assert len(minted) == 2


async def test_ask_assembles_an_agent_reply(sdk_server: ServerProcess) -> None:
    room = await room_name()
    async with httpx.AsyncClient(base_url=sdk_server.api, headers=auth(ADMIN)) as http:
        r = await http.post("/v1/agents", json={"name": "sdk-helper"})
        assert r.status_code in (201, 409), r.text
        assert (await http.post("/v1/rooms", json={"name": room})).status_code == 201
        r = await http.put(f"/v1/rooms/{room}/members/sdk-helper", json={"role": "member"})
        assert r.status_code == 200
    async with NexusClient(sdk_server.url, ADMIN, backoff=quick()) as client:
        await client.join(room)
        await client.send(room, "the launch is on Friday")
        reply = await client.ask(room, "@sdk-helper when is the launch?")
        assert isinstance(reply, ReplyEnded) and reply.state == "completed"
        assert reply.text and reply.sender == "sdk-helper"
        streamed = ""
        while True:
            event = await client.next_event(timeout=5)
            if isinstance(event, ReplyDelta):
                streamed = event.so_far
            if isinstance(event, ReplyEnded):
                break
        assert streamed == reply.text  # the deltas add up to the final text


def test_sync_client_for_scripts(sdk_server: ServerProcess) -> None:
    room = f"sdk-sync-{next(_rooms)}"
    with SyncClient(sdk_server.url, ADMIN) as nexus:
        nexus.join(room)
        ack: dict[str, Any] = nexus.send(room, "from a script")
        assert ack["seq"] == 1
        while True:
            event = nexus.next_event(timeout=5)
            if isinstance(event, Message):
                break
        assert event.body == "from a script"
        assert nexus.history(room)["messages"][0]["body"] == "from a script"

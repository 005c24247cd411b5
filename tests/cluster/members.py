"""A room member for the cluster tests: one user's connection to one node, feeding every
message and ack it receives into a `RoomCheck`, pipelining its sends with
``client_msg_id``, and able to resume on another node with ``since`` and resend what was
not acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import orjson
import websockets

from integration.harness import Client, ServerProcess, token

from .checker import Entry, RoomCheck, Stream


class Refused(Exception):
    """The server answered a send with an ``error`` (e.g. ``unavailable``)."""

    def __init__(self, key: str, event: dict[str, Any]) -> None:
        super().__init__(f"{key}: {event.get('code')}: {event.get('message')}")
        self.code = event.get("code")


class Disconnected(Exception):
    """The connection closed before every send was answered."""


class Member:
    """``user`` in ``check.room``, reading as ``reader`` (default: the user's name)."""

    def __init__(self, check: RoomCheck, user: str, reader: str | None = None) -> None:
        self.check = check
        self.room = check.room
        self.user = user
        self.reader = reader or user
        self.client: Client | None = None
        self.stream: Stream | None = None
        self.node: ServerProcess | None = None
        self.joined: dict[str, Any] = {}
        self.presence: list[tuple[str, str]] = []  # (action, user_id), in arrival order
        self.unacked: dict[str, None] = {}  # keys sent and not yet acked, in send order
        self.acks: dict[str, dict[str, Any]] = {}  # key -> the last ack received for it
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}  # request id -> reply
        self._changed = asyncio.Event()
        self._reader_task: asyncio.Task[None] | None = None
        self._attempt = 0
        self.closed = True

    @property
    def last_seq(self) -> int:
        """The last seq this member saw in the room, over all its connections."""
        return max((s.last for s in self.check.streams if s.reader == self.reader), default=0)

    async def join(self, node: ServerProcess, since: int | None = None) -> dict[str, Any]:
        """Connect to ``node``, join the room (resuming after ``since`` if given) and start
        reading. Returns ``room.joined``."""
        await self.close()
        self.node = node
        self.client = await Client.connect(node.url, token(self.user))
        kw = {} if since is None else {"since": since}
        self.joined = await self.client.join(self.room, **kw)
        seq = self.joined["seq"]
        after = seq if since is None else min(since, seq)
        self.stream = self.check.open_stream(self.reader, after, f"{self.reader}@{node.port}")
        self.closed = False
        backlog, self.client.backlog = self.client.backlog, []
        for event in backlog:
            self._on_event(event)
        self._reader_task = asyncio.create_task(self._read(self.client))
        return self.joined

    async def _read(self, client: Client) -> None:
        try:
            async for raw in client.ws:
                self._on_event(orjson.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            if client is self.client:
                self.closed = True
                for fut in self._waiting.values():
                    if not fut.done():
                        fut.set_exception(Disconnected(f"{self.user}: connection lost"))
                self._waiting.clear()
                self._changed.set()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "message" and event["room"] == self.room:
            assert self.stream is not None
            self.check.delivered(self.stream, Entry(event["seq"], event["id"], event["body"]))
        elif kind == "presence" and event["room"] == self.room:
            self.presence.append((event["action"], event["user_id"]))
        elif kind != "message" and event.get("id") in self._waiting:
            fut = self._waiting.pop(event["id"])
            if not fut.done():
                fut.set_result(event)
        self._changed.set()

    async def send(self, key: str) -> dict[str, Any]:
        """Send ``key`` (as body and ``client_msg_id``) and wait for its ``ack``.

        Raises:
            Refused: the server answered with an ``error``.
            Disconnected: the connection closed first.
        """
        assert self.client is not None
        if self.closed:
            raise Disconnected(f"{self.user}: not connected")
        self.check.sent(self.user, key)
        self.unacked.setdefault(key, None)
        self._attempt += 1
        rid = f"{key}#{self._attempt}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        frame = {"type": "message.send", "id": rid, "room": self.room, "body": key}
        try:
            await self.client.send({**frame, "client_msg_id": key})
        except websockets.ConnectionClosed:
            self._waiting.pop(rid, None)
            raise Disconnected(f"{self.user}: connection lost") from None
        reply = await asyncio.wait_for(fut, 30)
        if reply["type"] == "error":
            raise Refused(key, reply)
        self.unacked.pop(key, None)
        self.acks[key] = reply
        assert reply["room"] == self.room and reply.get("client_msg_id", key) == key, reply
        self.check.acked(key, reply["seq"], reply["message_id"], duplicate=reply["duplicate"])
        return reply

    async def send_all(self, keys: list[str], window: int = 16) -> None:
        """Send ``keys`` in order with at most ``window`` unanswered. Stops at the first
        refusal or disconnection (raised); what was not acked stays in `unacked`."""
        gate = asyncio.Semaphore(window)

        async def one(key: str) -> None:
            try:
                await self.send(key)
            finally:
                gate.release()

        tasks: list[asyncio.Task[None]] = []
        try:
            for key in keys:
                await gate.acquire()
                failed = [t for t in tasks if t.done() and t.exception() is not None]
                if failed:
                    gate.release()
                    break
                tasks.append(asyncio.create_task(one(key)))
        finally:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def resend_unacked(self, window: int = 16) -> None:
        """Resend, in their send order, the keys never acknowledged."""
        await self.send_all(list(self.unacked), window)

    async def wait_seq(self, seq: int, timeout: float = 20.0) -> None:
        """Wait until this member has seen ``seq`` (on any of its connections)."""
        await self._wait(lambda: self.last_seq >= seq, timeout, f"seq {seq}")

    async def wait_acks(self, n: int, timeout: float = 30.0) -> None:
        """Wait until ``n`` of this member's keys have been acknowledged (over all its
        connections: it may be moving to another node meanwhile)."""
        await self._wait(lambda: len(self.acks) >= n, timeout, f"{n} acks", while_closed=True)

    async def wait_presence(self, action: str, user: str, timeout: float = 20.0) -> None:
        await self._wait(lambda: (action, user) in self.presence, timeout, f"{action} {user}")

    async def wait_closed(self, timeout: float = 20.0) -> None:
        """Wait until the server has closed (or dropped) this member's connection."""
        await self._wait(lambda: self.closed, timeout, "close", while_closed=True)

    async def _wait(
        self, done: Any, timeout: float, what: str, *, while_closed: bool = False
    ) -> None:
        """Wait for ``done()``; raise Disconnected if the connection closes first."""

        async def poll() -> None:
            while not done():
                if self.closed and not while_closed:
                    raise Disconnected(f"{self.user}: connection closed waiting for {what}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.user}: no {what} within {timeout:g} s (last seq {self.last_seq},"
                f" presence {self.presence[-5:]})"
            ) from None

    async def request(self, frame: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send a request with a fresh id; its answer (or ``error``), read by the reader."""
        assert self.client is not None
        self._attempt += 1
        rid = f"req#{self._attempt}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        await self.client.send({**frame, "id": rid})
        return await asyncio.wait_for(fut, timeout)

    async def leave(self) -> None:
        reply = await self.request({"type": "room.leave", "room": self.room})
        assert reply["type"] == "room.left", reply

    async def close(self) -> None:
        """Close the connection (if any) and stop reading."""
        client, task = self.client, self._reader_task
        self.client, self._reader_task = None, None
        self.closed = True
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def read_history(
    node: ServerProcess, room: str, at_least: int = 0, timeout: float = 20.0
) -> list[Entry]:
    """The room's whole log from ``node``'s HTTP API, ascending, page by page; read again
    until it reaches seq ``at_least`` (a node may still be catching up) or ``timeout``."""
    headers = {"Authorization": f"Bearer {token('auditor')}"}
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(base_url=node.api, headers=headers, timeout=20) as http:
        while True:
            entries: list[Entry] = []
            after = 0
            while True:
                reply = await http.get(
                    f"/v1/rooms/{room}/messages", params={"cursor": f"a{after}", "limit": 100}
                )
                assert reply.status_code == 200, reply.text
                page = reply.json()["messages"]
                if not page:
                    break
                entries += [Entry(m["seq"], m["id"], m["body"]) for m in page]
                after = page[-1]["seq"]
            reached = entries[-1].seq if entries else 0
            if reached >= at_least or asyncio.get_running_loop().time() > deadline:
                return entries
            await asyncio.sleep(0.2)


async def record_histories(check: RoomCheck, nodes: dict[str, ServerProcess]) -> None:
    """Read the room's log from every running node into ``check``, each read until it
    reaches the last seq any observation has named."""
    last = check.last_seq()
    for node_id, node in nodes.items():
        if node.proc.poll() is None:
            check.history(node_id, await read_history(node, check.room, at_least=last))


async def presence(node: ServerProcess, room: str, user: str = "auditor") -> list[str]:
    """Who ``node`` says is present in the room (HTTP API), sorted."""
    headers = {"Authorization": f"Bearer {token(user)}"}
    async with httpx.AsyncClient(base_url=node.api, headers=headers, timeout=10) as http:
        reply = await http.get(f"/v1/rooms/{room}/presence")
        assert reply.status_code == 200, reply.text
        return sorted(m["user_id"] for m in reply.json()["members"])


async def converge(nodes: list[ServerProcess], room: str, users: list[str]) -> None:
    """Every node's HTTP presence lists exactly ``users`` (read again until it does)."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        views = [await presence(node, room) for node in nodes]
        if all(v == sorted(users) for v in views):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"presence did not converge on {sorted(users)}: {views}")
        await asyncio.sleep(0.1)


async def readyz(node: ServerProcess) -> int:
    """``/readyz`` status on the node's WebSocket port."""
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"{node.http}/readyz")).status_code

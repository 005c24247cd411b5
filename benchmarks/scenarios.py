"""The scenarios. Each takes a running target and returns its rows: (parameters, figures)
pairs, one per variant measured on that server (e.g. per body size)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .loadgen import CpuClock, SendTimes, WsClient, client_frame, connect, percentiles
from .targets import Nexus, Running, Target

ACK_PREFIX = b'{"type":"ack"'
HOST = "127.0.0.1"


def body_of(size: int) -> bytes:
    return b"x" * size


def rss(pid: int, field: str = "VmRSS") -> int:
    """Resident bytes of a process from /proc: ``VmRSS`` (all), or e.g. ``RssAnon`` (heap,
    without file-backed pages such as an LMDB map)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def open_clients(
    target: Target,
    run: Running,
    count: int,
    prefix: bytes | None = None,
    first_user: int = 0,
    batch: int = 200,
) -> list[WsClient]:
    clients: list[WsClient] = []
    for start in range(0, count, batch):
        clients += await asyncio.gather(
            *(
                connect(
                    HOST,
                    run.port,
                    target.path,
                    target.headers(first_user + i),
                    prefix or target.prefix,
                )
                for i in range(start, min(count, start + batch))
            )
        )
    return clients


async def join_all(
    clients: list[WsClient],
    target: Target,
    rooms: list[str],
    then: bytes | None = None,
) -> None:
    """Send every client's join and wait for every answer (``target.joined_prefix``: Nexus'
    ``room.joined``, the peers' ``joined``), so no measurement starts with members missing.
    Afterwards the clients count frames starting with ``then`` (default ``target.prefix``)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = len(clients)

    def answered(client: WsClient) -> Callable[[int, float], None]:
        def on_joined(n: int, now: float) -> None:
            nonlocal waiting
            client.on_messages = None
            waiting -= 1
            if waiting == 0 and not done.done():
                done.set_result(None)

        return on_joined

    for client, room in zip(clients, rooms, strict=True):
        client.count(target.joined_prefix)
        client.on_messages = answered(client)
        client.send(client_frame(target.join(room)))
    try:
        timeout = 10 + len(clients) / 100
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        raise RuntimeError(
            f"{target.name}: {waiting} of {len(clients)} joins unanswered after {timeout:g} s"
        ) from None
    finally:
        for client in clients:
            client.on_messages = None
            client.count(then or target.prefix)


def expect_each(clients: list[WsClient], n: int) -> asyncio.Future[None]:
    """A future done when every client has received ``n`` more messages (counted from
    now: the clients' ``on_messages`` are replaced, and cleared once they have them)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = len(clients)

    def counter(client: WsClient) -> Callable[[int, float], None]:
        left = n

        def on_messages(got: int, now: float) -> None:
            nonlocal left, waiting
            left -= got
            if left <= 0:
                client.on_messages = None
                waiting -= 1
                if waiting == 0 and not done.done():
                    done.set_result(None)

        return on_messages

    for client in clients:
        client.on_messages = counter(client)
    return done


async def settle(clients: list[WsClient], target: Target, rooms: list[str]) -> None:
    """Join every client to its room (answers awaited), then one message round trip each."""
    await join_all(clients, target, rooms)
    received = expect_each(clients, 1)
    for client, room in zip(clients, rooms, strict=True):
        client.send(client_frame(target.send(room, b"warmup")))
    try:
        await asyncio.wait_for(received, 30)
    except TimeoutError:
        raise RuntimeError(f"{target.name}: a warm-up message did not come back") from None


def close_all(clients: list[WsClient]) -> None:
    for c in clients:
        c.close()


def per_cpu(count: float, server_s: float) -> float:
    """``count`` per second of server CPU (NaN when the server used no measurable CPU)."""
    return count / server_s if server_s > 0 else float("nan")


Rows = list[tuple[dict[str, Any], dict[str, Any]]]


async def echo(
    target: Target,
    run: Running,
    *,
    conns: int,
    sizes: list[int],
    seconds: float,
    window: int = 8,
) -> Rows:
    """N connections, each alone in its room, keep ``window`` messages in flight; one row
    per body size, measured one after the other on the same connections."""
    clients = await open_clients(target, run, conns)
    rooms = [f"echo-{i}" for i in range(conns)]
    await settle(clients, target, rooms)
    rows = []
    for size in sizes:
        frames = [client_frame(target.send(room, body_of(size))) for room in rooms]
        row = await _echo_once(clients, frames, window, seconds, run.proc.pid)
        rows.append(({"conns": conns, "size": size}, row))
    close_all(clients)
    return rows


async def _echo_once(
    clients: list[WsClient], frames: list[bytes], window: int, seconds: float, pid: int
) -> dict[str, Any]:
    latencies: list[float] = []
    stop = False
    delivered = 0
    in_flight = 0  # counted down once stopped
    drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wire(client: WsClient, frame: bytes) -> None:
        times = SendTimes()

        def on_messages(n: int, now: float) -> None:
            nonlocal delivered, in_flight
            delivered += n
            times.delivered(n, now, latencies)
            if not stop:
                for _ in range(n):
                    times.sent()
                client.send(frame * n)
            else:
                in_flight -= n
                if in_flight <= 0 and not drained.done():
                    drained.set_result(None)

        client.on_messages = on_messages
        for _ in range(window):
            times.sent()
        client.send(frame * window)

    for client, frame in zip(clients, frames, strict=True):
        wire(client, frame)
    clock = CpuClock(pid)
    await asyncio.sleep(seconds)
    wall, gen_s, srv_s = clock.seconds()
    count = delivered
    measured = percentiles(latencies)
    # Every client has exactly ``window`` messages out: let them come back before the next
    # measurement on these connections.
    stop = True
    in_flight = len(clients) * window
    await asyncio.wait_for(drained, 30)
    for client in clients:
        client.on_messages = None
    return {
        "msgs_per_s": count / wall,
        "msgs_per_cpu_s": per_cpu(count, srv_s),
        "srv_us_per_msg": 1e6 * srv_s / count if count else float("nan"),
        **measured,
        "gen_cpu": 100 * gen_s / wall,
        "server_cpu": 100 * srv_s / wall,
    }


class FanoutRoom:
    """The deliveries of one fan-out room, counted across all its members per phase; a
    few sampled members also match each delivery to its send time (by position: every
    member receives the messages in the order they were sent)."""

    def __init__(self, clients: list[WsClient], sampled: int) -> None:
        self.members = len(clients)
        self.received = 0
        self.send_times: list[float] = []
        self.latencies: list[float] = []
        self.seen = [0] * sampled
        self.pace: Callable[[int], None] | None = None  # the publisher's, on its own copies
        self._until = -1
        self._done: asyncio.Future[None] | None = None
        clients[0].on_messages = self._publisher
        for client in clients[1:]:
            client.on_messages = self._member
        for i, client in enumerate(clients[1 : 1 + sampled]):
            client.on_messages = self._sampler(i)

    def start(self) -> None:
        self.received = 0
        self.send_times = []
        self.latencies = []
        self.seen = [0] * len(self.seen)
        self._until = -1

    def sent(self, n: int) -> None:
        now = time.perf_counter()
        self.send_times += [now] * n

    def keep_sending(self, publisher: WsClient, frame: bytes, window: int) -> None:
        """Start a phase: ``window`` copies of ``frame`` in flight, each one the publisher
        receives back sent again (until ``stop_sending``)."""

        def pace(n: int) -> None:
            self.sent(n)
            publisher.send(frame * n)

        self.pace = pace
        pace(window)

    async def stop_sending(self) -> None:
        """End the phase: nothing more is sent; wait for what is in flight."""
        self.pace = None
        await self.drain()

    async def drain(self, timeout: float = 60.0) -> None:
        """Wait for every member to receive every message sent in this phase."""
        self._until = len(self.send_times) * self.members
        if self.received >= self._until:
            return
        self._done = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._done, timeout)
        except TimeoutError:
            raise RuntimeError(
                f"fan-out: {self._until - self.received} of {self._until} deliveries missing"
                f" after {timeout:g} s"
            ) from None

    def _member(self, n: int, now: float) -> None:
        self.received += n
        if 0 <= self._until <= self.received and self._done and not self._done.done():
            self._done.set_result(None)

    def _publisher(self, n: int, now: float) -> None:
        self._member(n, now)
        if self.pace is not None:
            self.pace(n)

    def _sampler(self, i: int) -> Callable[[int, float], None]:
        def on_messages(n: int, now: float) -> None:
            seen = self.seen[i]
            times = self.send_times
            for k in range(seen, min(seen + n, len(times))):
                self.latencies.append(now - times[k])
            self.seen[i] = seen + n
            self._member(n, now)

        return on_messages


async def fanout(
    target: Target,
    run: Running,
    *,
    members: int,
    sizes: list[int],
    windows: list[int],
    seconds: float,
    sampled: int = 20,
) -> Rows:
    """One publisher into a room of ``members`` (itself included) keeping ``window``
    messages in flight (paced by its own copies); deliveries/s across all members and
    publish->delivery latency on ``sampled`` members. One row per body size and window,
    measured one after the other on the same connections, every delivery of one drained
    before the next starts."""
    clients = await open_clients(target, run, members)
    await join_all(clients, target, ["fan"] * members)
    room = FanoutRoom(clients, sampled)
    publisher = clients[0]
    # Warm-up: one message, received by every member, before anything is measured.
    room.start()
    room.sent(1)
    publisher.send(client_frame(target.send("fan", b"warmup")))
    await room.drain()
    rows = []
    for size in sizes:
        frame = client_frame(target.send("fan", body_of(size)))
        for window in windows:
            row = await _fanout_once(room, publisher, frame, window, seconds, run.proc.pid)
            rows.append(({"members": members, "size": size, "in_flight": window}, row))
    close_all(clients)
    return rows


async def _fanout_once(
    room: FanoutRoom, publisher: WsClient, frame: bytes, window: int, seconds: float, pid: int
) -> dict[str, Any]:
    room.start()
    clock = CpuClock(pid)
    room.keep_sending(publisher, frame, window)
    await asyncio.sleep(seconds)
    wall, gen_s, srv_s = clock.seconds()
    total = room.received
    measured = percentiles(room.latencies)
    await room.stop_sending()
    return {
        "deliveries_per_s": total / wall,
        "deliveries_per_cpu_s": per_cpu(total, srv_s),
        **measured,
        "gen_cpu": 100 * gen_s / wall,
        "server_cpu": 100 * srv_s / wall,
    }


async def capacity(target: Target, run: Running, *, conns: int, idle: float) -> Rows:
    """Open and authenticate ``conns`` idle connections: memory, connect time, idle CPU."""
    before = rss(run.proc.pid)
    t0 = time.perf_counter()
    clients = await open_clients(target, run, conns, batch=500)
    # A join and a round trip on the last one show the server has processed every handshake.
    await settle(clients[-1:], target, ["cap"])
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(0.5)
    after = rss(run.proc.pid)
    clock = CpuClock(run.proc.pid)
    await asyncio.sleep(idle)
    _, gen_cpu, srv_cpu = clock.read()
    close_all(clients)
    row = {
        "bytes_per_conn": (after - before) / conns,
        "connect_s": connect_s,
        "idle_server_cpu": srv_cpu,
        "gen_cpu": gen_cpu,
    }
    return [({"conns": conns}, row)]


async def durable(
    target: Target,
    run: Running,
    *,
    conns: int,
    size: int,
    seconds: float,
    fractions: list[float],
    window: int = 16,
) -> Rows:
    """Sends acknowledged after the group commit: the maximum acks/s with ``window`` sends
    in flight per connection, then send->ack latency when paced at ``fractions`` of it."""
    assert isinstance(target, Nexus)
    clients = await open_clients(target, run, conns, prefix=ACK_PREFIX)
    rooms = [f"d-{i}" for i in range(conns)]
    await join_all(clients, target, rooms, then=ACK_PREFIX)
    frames = [client_frame(target.send(room, body_of(size))) for room in rooms]
    loop = asyncio.get_running_loop()

    async def closed_loop() -> dict[str, Any]:
        stop = False
        acked = 0
        in_flight = 0  # counted down once stopped
        drained = loop.create_future()

        def wire(client: WsClient, frame: bytes) -> None:
            def on_acks(n: int, now: float) -> None:
                nonlocal acked, in_flight
                acked += n
                if not stop:
                    client.send(frame * n)
                else:
                    in_flight -= n
                    if in_flight <= 0 and not drained.done():
                        drained.set_result(None)

            client.on_messages = on_acks
            client.send(frame * window)

        for c, f in zip(clients, frames, strict=True):
            wire(c, f)
        clock = CpuClock(run.proc.pid)
        await asyncio.sleep(seconds)
        wall, gen_s, srv_s = clock.seconds()
        count = acked
        stop = True
        in_flight = conns * window
        await asyncio.wait_for(drained, 30)
        return {
            "max_acks_per_s": count / wall,
            "acks_per_cpu_s": per_cpu(count, srv_s),
            "gen_cpu": 100 * gen_s / wall,
            "server_cpu": 100 * srv_s / wall,
        }

    async def paced(rate: float) -> list[float]:
        latencies: list[float] = []
        per_client = rate / conns
        tasks = []
        for c, f in zip(clients, frames, strict=True):
            times = SendTimes()
            c.on_messages = lambda n, now, t=times: t.delivered(n, now, latencies)

            async def pump(c: WsClient = c, f: bytes = f, times: SendTimes = times) -> int:
                interval = 1 / per_client
                next_at = time.perf_counter()
                end = next_at + seconds
                sent = 0
                while next_at < end:
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    due = int((time.perf_counter() - next_at) / interval) + 1
                    for _ in range(due):
                        times.sent()
                    c.send(f * due)
                    sent += due
                    next_at += due * interval
                return sent

            tasks.append(pump())
        sent = sum(await asyncio.gather(*tasks))
        # Every send is acked: wait for the last ones, so the next phase starts empty.
        for _ in range(3000):
            if len(latencies) >= sent:
                break
            await asyncio.sleep(0.01)
        return latencies

    row = await closed_loop()
    for frac in fractions:
        pct = percentiles(await paced(row["max_acks_per_s"] * frac))
        for p in ("p50", "p99", "p99.9"):
            row[f"{p}@{int(frac * 100)}%"] = pct[p]
    close_all(clients)
    return [({"conns": conns, "size": size}, row)]


async def resume(target: Target, run: Running, *, messages: int, size: int) -> Rows:
    """Fill a room with ``messages``, then time a client catching up from seq 0."""
    assert isinstance(target, Nexus)
    [writer] = await open_clients(target, run, 1, prefix=ACK_PREFIX)
    writer.send(client_frame(target.join("backlog")))
    frame = client_frame(target.send("backlog", body_of(size)))
    chunk = 1000
    for start in range(0, messages, chunk):
        target_acks = start + min(chunk, messages - start)
        writer.send(frame * (target_acks - start))
        while writer.messages < target_acks:
            await asyncio.sleep(0.002)
    [reader] = await open_clients(target, run, 1, first_user=1)
    clock = CpuClock(run.proc.pid)
    t0 = time.perf_counter()
    reader.send(client_frame(b'{"type":"room.join","room":"backlog","since":0}'))
    while reader.messages < messages:
        await asyncio.sleep(0.001)
    took = time.perf_counter() - t0
    _, gen_cpu, srv_cpu = clock.read()
    close_all([writer, reader])
    row = {
        "catch_up_s": took,
        "msgs_per_s": messages / took,
        "gen_cpu": gen_cpu,
        "server_cpu": srv_cpu,
    }
    return [({"messages": messages, "size": size}, row)]

"""The scenarios. Each takes a running target and returns one result row (a dict)."""

from __future__ import annotations

import asyncio
import time
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


async def settle(clients: list[WsClient], target: Target, rooms: list[str]) -> None:
    """Make sure every client is in its room: one message round trip per room."""
    for client, room in zip(clients, rooms, strict=False):
        client.send(client_frame(target.join(room)))
    await asyncio.sleep(0.05)
    for client, room in zip(clients, rooms, strict=False):
        before = client.messages
        client.send(client_frame(target.send(room, b"warmup")))
        for _ in range(500):
            if client.messages > before:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError(f"{target.name}: no warm-up delivery in room {room}")


def close_all(clients: list[WsClient]) -> None:
    for c in clients:
        c.close()


async def echo(
    target: Target, run: Running, *, conns: int, size: int, seconds: float, window: int = 8
) -> dict[str, Any]:
    """N connections, each alone in its room, keep ``window`` messages in flight."""
    clients = await open_clients(target, run, conns)
    rooms = [f"echo-{i}" for i in range(conns)]
    await settle(clients, target, rooms)
    latencies: list[float] = []
    stop = False
    delivered = 0

    def wire(client: WsClient, frame: bytes) -> None:
        times = SendTimes()

        def on_messages(n: int, now: float) -> None:
            nonlocal delivered
            delivered += n
            times.delivered(n, now, latencies)
            if not stop:
                for _ in range(n):
                    times.sent()
                client.send(frame * n)

        client.on_messages = on_messages
        for _ in range(window):
            times.sent()
        client.send(frame * window)

    for client, room in zip(clients, rooms, strict=False):
        wire(client, client_frame(target.send(room, body_of(size))))
    clock = CpuClock(run.proc.pid)
    latencies.clear()
    await asyncio.sleep(seconds)
    wall, gen_cpu, srv_cpu = clock.read()
    count = delivered
    stop = True
    close_all(clients)
    return {
        "msgs_per_s": count / wall,
        **percentiles(latencies),
        "gen_cpu": gen_cpu,
        "server_cpu": srv_cpu,
    }


async def fanout(
    target: Target,
    run: Running,
    *,
    members: int,
    size: int,
    seconds: float,
    window: int = 16,
    sampled: int = 20,
) -> dict[str, Any]:
    """One publisher into a room of ``members``; deliveries/s and delivery latency."""
    clients = await open_clients(target, run, members)
    room = "fan"
    await settle(clients[:1], target, [room])
    for c in clients[1:]:
        c.send(client_frame(target.join(room)))
    await asyncio.sleep(0.2 + members / 5000)
    publisher = clients[0]
    frame = client_frame(target.send(room, body_of(size)))
    send_times: list[float] = []
    base = {id(c): c.messages for c in clients}
    latencies: list[float] = []
    stop = False

    def track(client: WsClient) -> None:
        seen = 0

        def on_messages(n: int, now: float) -> None:
            nonlocal seen
            for k in range(seen, min(seen + n, len(send_times))):
                latencies.append(now - send_times[k])
            seen += n

        client.on_messages = on_messages

    for c in clients[1 : 1 + sampled]:
        track(c)

    def on_own(n: int, now: float) -> None:
        if stop:
            return
        for _ in range(n):
            send_times.append(time.perf_counter())
        publisher.send(frame * n)

    publisher.on_messages = on_own
    clock = CpuClock(run.proc.pid)
    for _ in range(window):
        send_times.append(time.perf_counter())
    publisher.send(frame * window)
    await asyncio.sleep(seconds)
    wall, gen_cpu, srv_cpu = clock.read()
    total = sum(c.messages - base[id(c)] for c in clients)
    stop = True
    close_all(clients)
    return {
        "deliveries_per_s": total / wall,
        **percentiles(latencies),
        "gen_cpu": gen_cpu,
        "server_cpu": srv_cpu,
    }


async def capacity(target: Target, run: Running, *, conns: int, idle: float) -> dict[str, Any]:
    """Open and authenticate ``conns`` idle connections: memory, connect time, idle CPU."""
    before = rss(run.proc.pid)
    t0 = time.perf_counter()
    clients = await open_clients(target, run, conns, batch=500)
    # A round trip on the last one shows the server has processed every handshake.
    await settle(clients[-1:], target, ["cap"])
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(0.5)
    after = rss(run.proc.pid)
    clock = CpuClock(run.proc.pid)
    await asyncio.sleep(idle)
    _, gen_cpu, srv_cpu = clock.read()
    close_all(clients)
    return {
        "bytes_per_conn": (after - before) / conns,
        "connect_s": connect_s,
        "idle_server_cpu": srv_cpu,
        "gen_cpu": gen_cpu,
    }


async def durable(
    target: Target, run: Running, *, conns: int, size: int, seconds: float
) -> dict[str, Any]:
    """Sends acknowledged after the group commit: max acks/s, then latency at fractions."""
    assert isinstance(target, Nexus)
    clients = await open_clients(target, run, conns, prefix=ACK_PREFIX)
    rooms = [f"d-{i}" for i in range(conns)]
    for c, room in zip(clients, rooms, strict=False):
        c.send(client_frame(target.join(room)))
    await asyncio.sleep(0.2)
    frames = [client_frame(target.send(room, body_of(size))) for room in rooms]

    async def closed_loop() -> float:
        stop = False
        acked = 0

        def wire(client: WsClient, frame: bytes) -> None:
            def on_acks(n: int, now: float) -> None:
                nonlocal acked
                acked += n
                if not stop:
                    client.send(frame * n)

            client.on_messages = on_acks
            client.send(frame * 16)

        for c, f in zip(clients, frames, strict=False):
            wire(c, f)
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        rate = acked / (time.perf_counter() - t0)
        stop = True
        await asyncio.sleep(0.3)
        return rate

    async def paced(rate: float) -> list[float]:
        latencies: list[float] = []
        per_client = rate / conns
        tasks = []
        for c, f in zip(clients, frames, strict=False):
            times = SendTimes()
            c.on_messages = lambda n, now, t=times: t.delivered(n, now, latencies)

            async def pump(c: WsClient = c, f: bytes = f, times: SendTimes = times) -> None:
                interval = 1 / per_client
                next_at = time.perf_counter()
                end = next_at + seconds
                while next_at < end:
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    due = int((time.perf_counter() - next_at) / interval) + 1
                    for _ in range(due):
                        times.sent()
                    c.send(f * due)
                    next_at += due * interval

            tasks.append(pump())
        await asyncio.gather(*tasks)
        await asyncio.sleep(0.3)
        return latencies

    clock = CpuClock(run.proc.pid)
    top = await closed_loop()
    row: dict[str, Any] = {"max_acks_per_s": top}
    for frac in (0.25, 0.5, 0.9):
        lat = await paced(top * frac)
        pct = percentiles(lat)
        row[f"p50@{int(frac * 100)}%"] = pct["p50"]
        row[f"p99@{int(frac * 100)}%"] = pct["p99"]
    _, row["gen_cpu"], row["server_cpu"] = clock.read()
    close_all(clients)
    return row


async def resume(target: Target, run: Running, *, messages: int, size: int) -> dict[str, Any]:
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
    return {
        "catch_up_s": took,
        "msgs_per_s": messages / took,
        "gen_cpu": gen_cpu,
        "server_cpu": srv_cpu,
    }

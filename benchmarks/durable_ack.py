"""Durable send -> ack: maximum acknowledged messages/s with full-sync group commit, then
latency percentiles at fractions of that maximum. Rough figures; the full suite is
`python -m benchmarks` (issue 5)."""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import uvloop
from picows import WSListener, WSMsgType, WSTransport, ws_connect

from nexus.auth import mint_token

from . import server as bench_server


class AckClient(WSListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.acks = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.window = asyncio.Event()

    def on_ws_frame(self, transport: WSTransport, frame) -> None:  # type: ignore[no-untyped-def]
        if frame.msg_type != WSMsgType.TEXT:
            return
        event = orjson.loads(frame.get_payload_as_bytes())
        kind = event["type"]
        if kind == "ack":
            t0 = self.sent_at.pop(event["id"], None)
            if t0 is not None:
                self.latencies.append(time.perf_counter() - t0)
            self.acks += 1
            self.window.set()
        elif kind == "room.joined" and not self.ready.done():
            self.ready.set_result(None)


async def connect(url: str, i: int) -> tuple[WSTransport, AckClient]:
    tok = mint_token(
        bench_server.SECRET,
        user=f"u{i}",
        tenant="bench",
        roles=["member"],
        issuer="nexus",
        audience="nexus",
    )
    transport, client = await ws_connect(
        AckClient, url, extra_headers={"Authorization": f"Bearer {tok}"}
    )
    transport.send(WSMsgType.TEXT, orjson.dumps({"type": "room.join", "room": f"r{i}"}))
    await client.ready
    return transport, client


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000 if s else float("nan")


async def max_rate(
    conns: list[tuple[WSTransport, AckClient]], seconds: float, window: int, body: bytes
) -> float:
    seq = 0
    stop = time.perf_counter() + seconds

    async def pump(t: WSTransport, c: AckClient) -> None:
        nonlocal seq
        while time.perf_counter() < stop:
            while len(c.sent_at) < window:
                seq += 1
                c.sent_at[seq] = time.perf_counter()
                t.send(
                    WSMsgType.TEXT,
                    b'{"type":"message.send","room":"r%d","id":%d,"body":"%s"}'
                    % (conns.index((t, c)), seq, body),
                )
            c.window.clear()
            await c.window.wait()

    before = sum(c.acks for _, c in conns)
    t0 = time.perf_counter()
    await asyncio.gather(*(pump(t, c) for t, c in conns))
    return (sum(c.acks for _, c in conns) - before) / (time.perf_counter() - t0)


async def paced(
    conns: list[tuple[WSTransport, AckClient]], rate: float, seconds: float, body: bytes
) -> list[float]:
    for _, c in conns:
        c.latencies.clear()
    interval = len(conns) / rate
    seq = 10**9

    async def pump(idx: int, t: WSTransport, c: AckClient) -> None:
        nonlocal seq
        next_at = time.perf_counter() + interval * idx / len(conns)
        stop = time.perf_counter() + seconds
        while next_at < stop:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            seq += 1
            c.sent_at[seq] = time.perf_counter()
            t.send(
                WSMsgType.TEXT,
                b'{"type":"message.send","room":"r%d","id":%d,"body":"%s"}' % (idx, seq, body),
            )
            next_at += interval

    await asyncio.gather(*(pump(i, t, c) for i, (t, c) in enumerate(conns)))
    await asyncio.sleep(0.2)
    return [x for _, c in conns for x in c.latencies]


async def main(args: argparse.Namespace) -> None:
    srv = bench_server.start(
        store_durability=args.durability,
        rate_conn_per_s=1e6,
        rate_conn_burst=1_000_000,
        rate_user_per_s=1e6,
        rate_user_burst=1_000_000,
    )
    try:
        conns = [await connect(srv.url, i) for i in range(args.connections)]
        body = b"x" * args.size
        top = await max_rate(conns, args.seconds, args.window, body)
        print(f"durability={args.durability} connections={args.connections} size={args.size}B")
        print(f"max acknowledged: {top:,.0f} msg/s")
        for frac in (0.25, 0.5, 0.9):
            lat = await paced(conns, top * frac, args.seconds, body)
            print(
                f"at {int(frac * 100)}% ({top * frac:,.0f} msg/s): send->ack "
                f"p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms  (n={len(lat)})"
            )
        for t, _ in conns:
            t.disconnect()
    finally:
        srv.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--durability", default="full", choices=("full", "data", "none"))
    uvloop.run(main(p.parse_args()))

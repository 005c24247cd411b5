"""Cluster mode's cost: fan-out and echo on one LMDB node (standalone), on one node and
on three nodes sharing rooms through NATS JetStream, per server CPU-second summed over the
nodes; and the time to resume a room on another node.

    python -m benchmarks.cluster            # 3 rounds, about 3 minutes on 2 cores
    python -m benchmarks.cluster --smoke    # 1 round of tiny runs (what the tests run)

Every configuration gets fresh processes per round (a nats-server on a temp store, the
nodes on temp data dirs); the rounds rotate the configurations' order. Figures are medians
over the rounds. See benchmarks/README.md, "Cluster mode".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from .loadgen import SendTimes, WsClient, client_frame, connect, percentiles
from .natsd import NatsServer, NatsServerMissing
from .scenarios import ACK_PREFIX, FanoutRoom, body_of, close_all, join_all, settle
from .targets import Nexus, Running

RESULTS = Path(__file__).parent / "results"
HOST = "127.0.0.1"
CONFIGS = ("lmdb", "nats-1", "nats-3")
SCENARIOS = ("echo", "ack", "fanout-1", "fanout-16", "resume")


@dataclass
class NatsProcess:
    """The shared runner (benchmarks/natsd.py) on a temporary store."""

    server: NatsServer
    store: tempfile.TemporaryDirectory[str]

    @classmethod
    def start(cls) -> NatsProcess:
        store = tempfile.TemporaryDirectory(prefix="nexus-bench-js-")
        try:
            server = NatsServer(Path(store.name) / "jetstream")
        except NatsServerMissing as exc:
            store.cleanup()
            raise SystemExit(str(exc)) from None
        server.start()
        return cls(server, store)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int:
        return self.server.pid

    def stop(self) -> None:
        self.server.stop()
        self.store.cleanup()


@dataclass
class Deployment:
    """One configuration's processes: the nodes (and the nats-server, if any)."""

    name: str
    target: Nexus
    nodes: list[Running]
    nats: NatsProcess | None = None

    @classmethod
    def start(cls, name: str, durability: str) -> Deployment:
        settings = {"store_durability": durability}
        if name == "lmdb":
            target = Nexus(name, settings=settings)
            return cls(name, target, [target.start()])
        nats = NatsProcess.start()
        count = int(name.split("-")[1])
        nodes = []
        target = Nexus(name, settings=settings)
        try:
            for i in range(1, count + 1):
                node = Nexus(
                    name,
                    settings={
                        **settings,
                        "cluster_engine": "nats",
                        "cluster_nats_url": nats.url,
                        "cluster_node_id": f"n{i}",
                    },
                )
                nodes.append(node.start())
        except BaseException:
            for running in nodes:
                running.stop()
            nats.stop()
            raise
        return cls(name, target, nodes, nats)

    def node_pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.nats is not None:
            self.nats.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (/proc/<pid>/stat, clock ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clock:
    """Wall time, CPU of the nodes (summed) and of the nats-server, since creation."""

    def __init__(self, deployment: Deployment) -> None:
        self.nodes = deployment.node_pids()
        self.nats = deployment.nats.pid if deployment.nats else None
        self._t0 = time.perf_counter()
        self._nodes0 = sum(map(cpu_seconds, self.nodes))
        self._nats0 = cpu_seconds(self.nats) if self.nats else 0.0

    def read(self) -> tuple[float, float, float]:
        """(wall s, nodes' CPU s, nats-server CPU s)."""
        return (
            time.perf_counter() - self._t0,
            sum(map(cpu_seconds, self.nodes)) - self._nodes0,
            (cpu_seconds(self.nats) - self._nats0) if self.nats else 0.0,
        )


def per(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


async def open_spread(dep: Deployment, count: int, first_user: int = 0) -> list[WsClient]:
    """``count`` connections, round-robin over the nodes."""
    clients = []
    for start in range(0, count, 200):
        batch = range(start, min(count, start + 200))
        clients += await asyncio.gather(
            *(
                connect(
                    HOST,
                    dep.nodes[i % len(dep.nodes)].port,
                    dep.target.path,
                    dep.target.headers(first_user + i),
                    dep.target.prefix,
                )
                for i in batch
            )
        )
    return clients


def figures(count: int, clock: Clock, unit: str) -> dict[str, float]:
    wall, nodes_s, nats_s = clock.read()
    return {
        f"{unit}_per_s": count / wall,
        f"{unit}_per_node_cpu_s": per(count, nodes_s),
        f"{unit}_per_cpu_s_with_nats": per(count, nodes_s + nats_s),
        "nodes_cpu": 100 * nodes_s / wall,
        "nats_cpu": 100 * nats_s / wall,
    }


async def echo(dep: Deployment, conns: int, seconds: float, window: int = 8) -> dict[str, Any]:
    """``conns`` connections spread over the nodes, each alone in its room, ``window``
    messages in flight each: a message goes through the store (LMDB or JetStream) and back."""
    clients = await open_spread(dep, conns)
    rooms = [f"echo-{i}" for i in range(conns)]
    await settle(clients, dep.target, rooms)
    frames = [client_frame(dep.target.send(r, body_of(64))) for r in rooms]
    delivered = 0
    stop = False
    in_flight = 0
    drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wire(client: WsClient, frame: bytes) -> Callable[[int, float], None]:
        def on_messages(n: int, now: float) -> None:
            nonlocal delivered, in_flight
            delivered += n
            if not stop:
                client.send(frame * n)
            else:
                in_flight -= n
                if in_flight <= 0 and not drained.done():
                    drained.set_result(None)

        return on_messages

    for client, frame in zip(clients, frames, strict=True):
        client.on_messages = wire(client, frame)
        client.send(frame * window)
    clock = Clock(dep)
    await asyncio.sleep(seconds)
    row = figures(delivered, clock, "msgs")
    stop, in_flight = True, conns * window
    await asyncio.wait_for(drained, 60)
    close_all(clients)
    return row


async def fanout(
    dep: Deployment, members: int, seconds: float, window: int, room_name: str = "fan"
) -> dict[str, Any]:
    """A publisher on the first node, ``members`` (itself included) spread over the nodes,
    ``window`` messages in flight (paced by its own copies)."""
    clients = await open_spread(dep, members)
    await join_all(clients, dep.target, [room_name] * members)
    room = FanoutRoom(clients, sampled=10)
    publisher = clients[0]
    room.start()
    room.sent(1)
    publisher.send(client_frame(dep.target.send(room_name, b"warmup")))
    await room.drain()
    frame = client_frame(dep.target.send(room_name, body_of(64)))
    room.start()
    clock = Clock(dep)
    room.keep_sending(publisher, frame, window)
    await asyncio.sleep(seconds)
    row = figures(room.received, clock, "deliveries")
    row.update(percentiles(room.latencies))
    await room.stop_sending()
    close_all(clients)
    return row


async def ack(dep: Deployment, seconds: float) -> dict[str, Any]:
    """One writer on the first node, one message in flight, members of the room on every
    other node: send->ack latency (in cluster mode the ack waits for JetStream's)."""
    writer, *others = [
        await connect(HOST, node.port, dep.target.path, dep.target.headers(i), ACK_PREFIX)
        for i, node in enumerate(dep.nodes)
    ]
    await join_all([writer, *others], dep.target, ["acked"] * len(dep.nodes), then=ACK_PREFIX)
    frame = client_frame(dep.target.send("acked", body_of(64)))
    latencies: list[float] = []
    times = SendTimes()
    stop = False
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ack(n: int, now: float) -> None:
        times.delivered(n, now, latencies)
        if not stop:
            times.sent()
            writer.send(frame)
        elif not done.done():
            done.set_result(None)

    writer.on_messages = on_ack
    clock = Clock(dep)  # wall time only: one message in flight says little per CPU-second
    times.sent()
    writer.send(frame)
    await asyncio.sleep(seconds)
    wall = clock.read()[0]
    stop = True
    await asyncio.wait_for(done, 30)
    close_all([writer, *others])
    return {"acks_per_s": len(latencies) / wall, **percentiles(latencies)}


async def resume(dep: Deployment, messages: int, tail: int) -> dict[str, Any]:
    """Write ``messages`` through the first node, then time a client joining on the last
    node with ``since: 0`` (the whole room) and with ``since`` = ``messages - tail``."""
    writer = await connect(
        HOST, dep.nodes[0].port, dep.target.path, dep.target.headers(0), ACK_PREFIX
    )
    await join_all([writer], dep.target, ["backlog"], then=ACK_PREFIX)
    frame = client_frame(dep.target.send("backlog", body_of(64)))
    for start in range(0, messages, 500):
        goal = start + min(500, messages - start)
        writer.send(frame * (goal - start))
        while writer.messages < goal:
            await asyncio.sleep(0.002)
    row: dict[str, Any] = {}
    last = dep.nodes[-1]
    for label, since in (("full", 0), ("tail", messages - tail)):
        reader = await connect(
            HOST, last.port, dep.target.path, dep.target.headers(1), dep.target.prefix
        )
        want = messages - since
        t0 = time.perf_counter()
        reader.send(client_frame(b'{"type":"room.join","room":"backlog","since":%d}' % since))
        while reader.messages < want:
            await asyncio.sleep(0.0005)
        took = time.perf_counter() - t0
        row[f"resume_{label}_ms"] = 1000 * took
        row[f"resume_{label}_msgs_per_s"] = want / took
        reader.close()
    writer.close()
    return row


async def measure(name: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """One round of every scenario on configuration ``name``: fresh processes for each
    scenario (smoke: one set for all of them, in different rooms, to stay quick)."""
    out: dict[str, dict[str, Any]] = {}
    shared = Deployment.start(name, args.durability) if args.smoke else None
    try:
        for scenario in SCENARIOS:
            dep = shared or Deployment.start(name, args.durability)
            try:
                if scenario == "echo":
                    out[scenario] = await echo(dep, args.echo_conns, args.seconds)
                elif scenario == "ack":
                    out[scenario] = await ack(dep, args.seconds)
                elif scenario.startswith("fanout"):
                    window = int(scenario.split("-")[1])
                    room = scenario if shared else "fan"
                    out[scenario] = await fanout(dep, args.members, args.seconds, window, room)
                else:
                    out[scenario] = await resume(dep, args.resume, args.tail)
            finally:
                if shared is None:
                    dep.stop()
    finally:
        if shared is not None:
            shared.stop()
    return out


HEADLINE = {
    "echo": "msgs_per_node_cpu_s",
    "ack": "p50",
    "fanout-1": "deliveries_per_node_cpu_s",
    "fanout-16": "deliveries_per_node_cpu_s",
    "resume": "resume_full_ms",
}


def summarise(rounds: list[dict[str, dict[str, dict[str, Any]]]]) -> dict[str, Any]:
    """Medians over the rounds, per configuration and scenario."""
    summary: dict[str, Any] = {}
    for name in rounds[0]:
        summary[name] = {}
        for scenario, row in rounds[0][name].items():
            summary[name][scenario] = {
                key: statistics.median(r[name][scenario][key] for r in rounds) for key in row
            }
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = []
    for scenario, key in HEADLINE.items():
        lines.append(f"## {scenario}")
        row0 = next(iter(summary.values()))[scenario]
        cols = list(row0)
        widths = [max(len(c), 10) for c in cols]
        lines.append(
            "config   "
            + "  ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))
            + "   vs lmdb"
        )
        base = summary.get("lmdb", {}).get(scenario, {}).get(key)
        for name, rows in summary.items():
            row = rows[scenario]
            ratio = row[key] / base if base else float("nan")
            lines.append(
                f"{name:8} "
                + "  ".join(f"{row[c]:>{w},.1f}" for c, w in zip(cols, widths, strict=True))
                + f"   {ratio:.2f}x"
            )
        lines.append("")
    lines.append(
        "vs lmdb: the configuration's headline figure (per node CPU-second; ack: p50 ms;"
        " resume: ms) over the standalone LMDB node's."
    )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, dict[str, dict[str, Any]]]] = []
    configs = list(args.configs)
    for k in range(args.rounds):
        order = configs[k % len(configs) :] + configs[: k % len(configs)]
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for name in order:
            print(f"round {k + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            result[name] = await measure(name, args)
        rounds.append({name: result[name] for name in configs})
    summary = summarise(rounds)
    print(table(summary))
    record = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "summary": summary,
        "rounds": rounds,
    }
    return record


def save(record: dict[str, Any], args: argparse.Namespace) -> Path:
    """Write the run as JSON under ``args.out``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    path = out / f"{stamp}-cluster{'-smoke' if args.smoke else ''}.json"
    path.write_text(json.dumps(record, indent=1))
    return path


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="1 round, tiny sizes (under 20 s)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.5, help="measurement window")
    p.add_argument("--members", type=int, default=300, help="fan-out room size")
    p.add_argument("--echo-conns", type=int, default=16)
    p.add_argument("--resume", type=int, default=5000, help="messages in the resumed room")
    p.add_argument("--tail", type=int, default=100, help="messages missed in the tail resume")
    p.add_argument("--durability", default="full", choices=("full", "data", "none"))
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.members = 1, 0.3, 20
        args.echo_conns, args.resume, args.tail = 2, 200, 20
    return args


if __name__ == "__main__":
    arguments = parse()
    print(f"written: {save(uvloop.run(main(arguments)), arguments)}", file=sys.stderr)

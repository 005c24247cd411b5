"""The agent scenarios: what an agent's turn adds to the server, and what streaming its
reply to a large room costs. Run with `python -m benchmarks --scenarios agents`.

1. **agent-turn** — two members and an agent in a room holding ``history`` entries, the
   number the agent reads for each turn; the model answers at once (``benchmarks.fake_llm``
   behind the ``openai`` provider type, or the built-in offline provider with no delay,
   which ranks every history entry in the server's process). One at a time, in
   alternating blocks: an ordinary message (send -> ack at the sender, send -> delivery at
   the other member: the baseline), and a trigger ``@bench ...`` (its ack, then at the
   other member ``message.started``, the first ``message.delta`` and
   ``message.completed``). Percentiles of trigger-ack -> first delta and -> completed,
   their ratio to the baseline's send -> delivery, and server CPU per turn against CPU
   per ordinary message, from /proc.
2. **agent-fanout** — one agent streaming long replies (about 4 KB in ~125 parts a few ms
   apart) into a room of N connected members, with the deltas coalesced every 40 ms
   (``agent_delta_interval`` 0.04, the default) and sent part by part (0): deltas received
   across all members per second and per server CPU-second, deltas and delta bytes per
   reply per member, server CPU per reply, each against the other mode and against a plain
   fan-out (one message in flight) measured on the same server and connections.

Each variant (delta interval, history length) gets its own server, started here rather
than by the suite: the model has to be listening before the server that uses it starts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from nexus.auth import mint_token

from . import scenarios
from .fake_llm import Reply
from .loadgen import CpuClock, client_frame, percentiles
from .scenarios import HOST, Rows, close_all, join_all, open_clients
from .server import SECRET
from .targets import HERE, MESSAGE_PREFIX, Nexus, Running, Target, _wait_port

SCENARIOS = ("agent-turn", "agent-fanout")
PROVIDERS = ("openai", "offline")
AGENT = "bench"
TENANT = "bench"  # the tenant of the target's tokens
DELTA_PREFIX = b'{"type":"message.delta"'
COALESCED = 0.04  # the server's default agent_delta_interval
# agent-turn: the model's whole answer, at once.
SHORT_REPLY = Reply(chunks=3, chunk_chars=8, delay=0.0)
# agent-fanout: long replies in many parts, a few ms apart (a fast model streams a part
# every 5-20 ms). The offline provider's reply to FANOUT_TRIGGER quotes the seeded
# passages, cut at max_output_tokens x 4 characters, in parts of 6 words (~33 characters):
# about the same text in about the same number of parts as the fake model's.
PART_DELAY = 0.003
LONG_REPLY_TOKENS = 1024  # -> 4096 characters
LONG_REPLY = Reply(chunks=125, chunk_chars=33, delay=PART_DELAY)
# A one-word question: the seeded passages, long and saying "deploy" 90 times each, outscore
# the earlier (short) triggers in the offline provider's BM25 ranking.
FANOUT_TRIGGER = "@bench deploy?"
SEED = [
    f"deploy runbook part {i}: "
    + " ".join(f"deploy step {j}: deploy the key, deploy the build" for j in range(30))
    for i in range(3)
]


def admin_headers() -> dict[str, str]:
    tok = mint_token(SECRET, user="bench-admin", tenant=TENANT, roles=["admin", "member"])
    return {"Authorization": f"Bearer {tok}"}


# -- servers -------------------------------------------------------------------------------


@dataclass
class AgentRunning(Running):
    """A nexus server set up for agents, and the fake model it calls (openai provider)."""

    fake: subprocess.Popen[str] | None = None
    provider: str = "offline"  # the provider name agents are created with

    def stop(self) -> None:
        super().stop()
        if self.fake is not None:
            self.fake.terminate()
            self.fake.wait(10)


def start(
    target: Target,
    provider: str,
    interval: float,
    reply: Reply,
    part_delay: float = 0.0,
    **settings: str,
) -> AgentRunning:
    """``target`` (a nexus) with ``agent_delta_interval`` = ``interval`` (and ``settings``)
    and, for ``provider`` "openai", a fake model answering ``reply`` configured as provider
    "fake" (``type = "openai"``); for "offline", the built-in provider with ``part_delay``."""
    assert isinstance(target, Nexus), "the agent scenarios run on nexus targets"
    fake = None
    table: dict[str, object] = {"type": "offline", "part_delay": part_delay}
    name = "offline"
    if provider == "openai":
        shape = {"chunks": reply.chunks, "chunk-chars": reply.chunk_chars, "delay": reply.delay}
        fake = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fake_llm"]
            + [arg for k, v in shape.items() for arg in (f"--{k}", str(v))],
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE.parent,
        )
        port = _wait_port(fake, "fake llm listening")
        base_url = f"http://{HOST}:{port}/v1"
        name, table = "fake", {"type": "openai", "base_url": base_url, "api_key": "x"}
        table["model"] = "fake"
    settings = {
        **target.settings,
        **settings,
        "agent_delta_interval": str(interval),
        "ai_providers": orjson.dumps({name: table}).decode(),
    }
    try:
        run = dataclasses.replace(target, settings=settings).start()
    except BaseException:
        if fake is not None:
            fake.terminate()
            fake.wait(10)
        raise
    return AgentRunning(run.proc, run.port, run.tmp, run.http_port, fake=fake, provider=name)


async def setup_room(run: AgentRunning, room: str, **agent_fields: Any) -> None:
    """Create the agent (answering mentions only) and ``room`` with the agent as a member,
    over the HTTP API as a tenant admin."""
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{run.http_port}", headers=admin_headers(), timeout=10
    ) as http:
        triggers = {"mention": True, "direct": False, "rooms": []}
        steps = [
            ("post", "/v1/agents", {"name": AGENT, "provider": run.provider, "triggers": triggers}
             | agent_fields, (201, 409)),
            ("post", "/v1/rooms", {"name": room}, (201,)),
            ("put", f"/v1/rooms/{room}/members/{AGENT}", {"role": "member"}, (200,)),
        ]  # fmt: skip
        for method, path, body, ok in steps:
            r = await http.request(method, path, json=body)
            if r.status_code not in ok:
                raise RuntimeError(f"{method.upper()} {path}: {r.status_code} {r.text[:200]}")


# -- a member that reads every event -------------------------------------------------------


class Member(WSListener):
    """A connection that parses every event: futures wait for the first event matching a
    predicate (registered before the request that causes it), and ``on_event`` sees them
    all with their arrival time and payload size."""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.on_event: Callable[[dict[str, Any], float, int], None] | None = None
        self._waiting: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[Any]]] = []
        self._ids = iter(range(1, 1 << 62))

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        now = time.perf_counter()
        payload = frame.get_payload_as_bytes()
        event = orjson.loads(payload)
        if self.on_event is not None:
            self.on_event(event, now, len(payload))
        for item in list(self._waiting):
            matches, future = item
            if matches(event):
                self._waiting.remove(item)
                if not future.done():
                    future.set_result((event, now))

    def expect(self, matches: Callable[[dict[str, Any]], bool]) -> asyncio.Future[Any]:
        """A future of (event, arrival time) for the next event ``matches`` accepts."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((matches, future))
        return future

    def send(self, request: dict[str, Any]) -> int:
        """Send ``request`` with a fresh ``id``; returns the id."""
        assert self.transport is not None
        rid = next(self._ids)
        self.transport.send(WSMsgType.TEXT, orjson.dumps({**request, "id": rid}))
        return rid

    def acked(self, rid: int) -> asyncio.Future[Any]:
        return self.expect(lambda e: e["type"] in ("ack", "error") and e.get("id") == rid)

    async def say(self, room: str, body: str, timeout: float = 10.0) -> None:
        """Send a message and wait for its ack."""
        rid = self.send({"type": "message.send", "room": room, "body": body})
        event, _ = await asyncio.wait_for(self.acked(rid), timeout)
        _check_ack(event, rid)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.disconnect(graceful=False)


def _check_ack(event: dict[str, Any], rid: int) -> None:
    if event["type"] != "ack":
        raise RuntimeError(f"request {rid} refused: {event}")


async def connect_member(target: Target, run: Running, user: int, room: str) -> Member:
    _, member = await ws_connect(
        Member,
        f"ws://{HOST}:{run.port}{target.path}",
        websocket_handshake_timeout=10,
        extra_headers=target.headers(user),
    )
    assert isinstance(member, Member)
    joined = member.expect(lambda e: e["type"] in ("room.joined", "error"))
    member.send({"type": "room.join", "room": room})
    event, _ = await asyncio.wait_for(joined, 10)
    if event["type"] != "room.joined":
        raise RuntimeError(f"join {room}: {event}")
    return member


def _is(*kinds: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] in kinds


def _ended(event: dict[str, Any]) -> None:
    if event["type"] == "message.failed":
        raise RuntimeError(f"the agent's reply failed: {event.get('error')}")


async def one_turn(sender: Member, other: Member, room: str, body: str) -> dict[str, float]:
    """Send the trigger ``body`` and wait for the reply to end at ``other``: seconds from the
    trigger's ack to ``message.started``, the first delta and the end at ``other``."""
    started = other.expect(_is("message.started"))
    first = other.expect(_is("message.delta"))
    ended = other.expect(_is("message.completed", "message.failed"))
    rid = sender.send({"type": "message.send", "room": room, "body": body})
    ack_event, t_ack = await asyncio.wait_for(sender.acked(rid), 10)
    _check_ack(ack_event, rid)
    end_event, t_end = await asyncio.wait_for(ended, 30)
    _ended(end_event)
    _, t_started = await asyncio.wait_for(started, 1)
    _, t_first = await asyncio.wait_for(first, 1)
    return {"started": t_started - t_ack, "first": t_first - t_ack, "end": t_end - t_ack}


# -- which provider ------------------------------------------------------------------------


async def usable_provider(wanted: str) -> tuple[str, str | None]:
    """(the provider to measure with, why not ``wanted`` or None). "openai" is tried once:
    a server with a provider of type openai pointed at the fake model must start and answer
    one mention with the fake model's text; otherwise the offline provider is used."""
    if wanted != "openai":
        return wanted, None
    print("agents: checking that provider type openai works ...", file=sys.stderr, flush=True)
    try:
        run = start(Nexus("nexus-nosync", settings={"store_durability": "none"}), wanted, 0.0,
                    SHORT_REPLY)  # fmt: skip
    except Exception as exc:  # _wait_port's RuntimeError: the server exited at start
        why = "the server exited at start with a provider of type openai (its error is above)"
        if not isinstance(exc, RuntimeError):
            why = f"could not start the fake model or the server: {type(exc).__name__}: {exc}"
    else:
        try:
            await setup_room(run, "probe")
            members = [await connect_member(Nexus("nexus"), run, u, "probe") for u in (0, 1)]
            text = members[1].expect(_is("message.completed", "message.failed"))
            await one_turn(members[0], members[1], "probe", f"@{AGENT} hello")
            event, _ = await text
            if event.get("text") != SHORT_REPLY.text():
                raise RuntimeError(f"reply {event.get('text')!r}, expected the fake model's")
            for m in members:
                m.close()
            return wanted, None
        except Exception as exc:
            why = f"the server started but a turn with type openai failed: {exc}"
        finally:
            run.stop()
    print(f"agents: provider openai unusable: {why}; measuring with the offline provider "
          "(part_delay 0) instead", file=sys.stderr)  # fmt: skip
    return "offline", why


def thread_cpu(pid: int) -> float:
    """CPU seconds of the process' live threads, from /proc/PID/task/*/schedstat (ns):
    fine enough to split a run's CPU between blocks of sub-millisecond messages, where
    ``CpuClock``'s clock ticks (10 ms) are not. A thread that exits drops out; the server's
    (event loop, commit writer) live as long as it does."""
    total = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(path.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread exited
    return total / 1e9


# -- 1. turn overhead ----------------------------------------------------------------------


async def turn(
    target: Target,
    run: Running | None,
    *,
    provider: str,
    intervals: list[float],
    histories: list[int],
    turns: int,
    block: int = 10,
) -> Rows:
    """Per delta interval and history length, a fresh server reading that many entries of
    the room for each turn (``agent_history_max``) and a room holding them before the first
    turn: ``turns`` turns and as many ordinary messages, in alternating blocks of
    ``block``, one at a time."""
    rows = []
    for interval in intervals:
        for history in histories:
            server = start(target, provider, interval, SHORT_REPLY, agent_history_max=str(history))
            try:
                row = await _turns_on(target, server, history, turns, block)
            finally:
                server.stop()
            rows.append(({"provider": provider, "interval": interval, "history": history}, row))
    return rows


async def _turns_on(
    target: Target, run: AgentRunning, history: int, turns: int, block: int
) -> dict[str, Any]:
    room = "turns"
    await setup_room(run, room)
    sender = await connect_member(target, run, 0, room)
    other = await connect_member(target, run, 1, room)
    # A full history from the first turn on (the offline provider ranks every entry).
    acks = []
    for i in range(history):
        rid = sender.send({"type": "message.send", "room": room, "body": f"note {i}: all green"})
        acks.append(sender.acked(rid))
    for event, _ in await asyncio.wait_for(asyncio.gather(*acks), 30):
        _check_ack(event, event.get("id", 0))
    ack: list[float] = []
    delivery: list[float] = []
    reply: dict[str, list[float]] = {"started": [], "first": [], "end": []}
    n = 0

    async def plain() -> None:
        nonlocal n
        n += 1
        body = f"plain {n}"
        delivered = other.expect(lambda e: e["type"] == "message" and e.get("body") == body)
        t0 = time.perf_counter()
        rid = sender.send({"type": "message.send", "room": room, "body": body})
        ack_event, t_ack = await asyncio.wait_for(sender.acked(rid), 10)
        _check_ack(ack_event, rid)
        ack.append(t_ack - t0)
        _, t_delivered = await asyncio.wait_for(delivered, 10)
        delivery.append(t_delivered - t0)

    async def trigger() -> None:
        nonlocal n
        n += 1
        for name, seconds in (await one_turn(sender, other, room, f"@{AGENT} ping {n}")).items():
            reply[name].append(seconds)

    for _ in range(3):  # warm-up: connections to the model, caches, the first commits
        await plain()
        await trigger()
    ack.clear()
    delivery.clear()
    for values in reply.values():
        values.clear()
    cpu = {"plain": 0.0, "turn": 0.0}
    clock = CpuClock(run.proc.pid)
    for _ in range(max(1, turns // block)):
        for kind, step in (("plain", plain), ("turn", trigger)):
            before = thread_cpu(run.proc.pid)
            for _ in range(block):
                await step()
            cpu[kind] += thread_cpu(run.proc.pid) - before
    wall, gen_s, srv_s = clock.seconds()
    sender.close()
    other.close()
    done = len(reply["end"])
    figures = {f"first_delta_{k}": v for k, v in percentiles(reply["first"]).items()}
    figures |= {f"started_{k}": v for k, v in percentiles(reply["started"], (0.5,)).items()}
    figures |= {f"completed_{k}": v for k, v in percentiles(reply["end"]).items()}
    figures |= {f"plain_ack_{k}": v for k, v in percentiles(ack, (0.5, 0.99)).items()}
    figures |= {f"plain_delivery_{k}": v for k, v in percentiles(delivery, (0.5, 0.99)).items()}
    figures["delta_vs_delivery"] = figures["first_delta_p50"] / figures["plain_delivery_p50"]
    figures["srv_ms_per_turn"] = 1000 * cpu["turn"] / done
    figures["srv_ms_per_msg"] = 1000 * cpu["plain"] / len(delivery)
    figures["cpu_turn_vs_msg"] = (
        cpu["turn"] / done / (cpu["plain"] / len(delivery)) if cpu["plain"] > 0 else float("nan")
    )
    figures["turns"] = done
    figures["gen_cpu"] = 100 * gen_s / wall
    figures["server_cpu"] = 100 * srv_s / wall
    return figures


# -- 2. delta fan-out ----------------------------------------------------------------------


async def fanout(
    target: Target,
    run: Running | None,
    *,
    members: int,
    provider: str,
    intervals: list[float],
    replies: int,
    seconds: float,
) -> Rows:
    """Per delta interval, a fresh server and ``members`` connections: ``replies`` long
    replies streamed to all of them, then a plain fan-out for ``seconds``. Each row also
    compares itself with the coalesced mode measured in the same round."""
    rows = []
    for interval in intervals:
        server = start(target, provider, interval, LONG_REPLY, PART_DELAY)
        try:
            row = await _stream_on(target, server, members, replies, seconds)
        finally:
            server.stop()
        rows.append(({"members": members, "provider": provider, "interval": interval}, row))
    base = next((row for params, row in rows if params["interval"] == COALESCED), None)
    for _, row in rows:
        for name, metric in (("cpu_vs_coalesced", "srv_ms_per_reply"),
                             ("deliveries_vs_coalesced", "deliveries_per_s")):  # fmt: skip
            row[name] = row[metric] / base[metric] if base and base[metric] else float("nan")
    return rows


class ReplyTally:
    """What one member sees of the agent's replies: deltas and their payload bytes, and
    each reply's time from ``message.started`` to its end."""

    def __init__(self) -> None:
        self.deltas = 0
        self.delta_bytes = 0
        self.ended = 0
        self.failed: str | None = None  # the error of a reply that failed
        self.reply_s: list[float] = []
        self.on_end: Callable[[], None] | None = None
        self._started = 0.0

    def __call__(self, event: dict[str, Any], now: float, size: int) -> None:
        kind = event["type"]
        if kind == "message.delta":
            self.deltas += 1
            self.delta_bytes += size
        elif kind == "message.started":
            self._started = now
        elif kind in ("message.completed", "message.failed"):
            if kind == "message.failed":  # not raised here: it would cut the connection
                self.failed = f"the agent's reply failed: {event.get('error')}"
            self.ended += 1
            self.reply_s.append(now - self._started)
            if self.on_end is not None:
                self.on_end()


async def _stream_on(
    target: Target, run: AgentRunning, members: int, replies: int, seconds: float
) -> dict[str, Any]:
    room = "stream"
    await setup_room(run, room, max_output_tokens=LONG_REPLY_TOKENS)
    # The member that triggers and reads every event; the others only count deltas.
    sender = await connect_member(target, run, 0, room)
    for passage in SEED:
        await sender.say(room, passage)
    others = await open_clients(target, run, members - 1, prefix=DELTA_PREFIX, first_user=1)
    await join_all(others, target, [room] * len(others), then=DELTA_PREFIX)
    tally = ReplyTally()
    sender.on_event = tally

    async def stream(n: int) -> None:
        """``n`` replies, two triggers waiting at any time (the agent is never idle), until
        the last delta has reached every member."""
        finished = asyncio.get_running_loop().create_future()
        sent = ended = 0
        deltas_before = tally.deltas
        others_before = sum(c.messages for c in others)

        def trigger() -> None:
            nonlocal sent
            sent += 1
            sender.send({"type": "message.send", "room": room, "body": FANOUT_TRIGGER})

        def on_end() -> None:
            nonlocal ended
            if tally.failed is not None and not finished.done():
                finished.set_exception(RuntimeError(tally.failed))
            ended += 1
            if sent < n:
                trigger()
            if ended == n and not finished.done():
                finished.set_result(None)

        tally.on_end = on_end
        for _ in range(min(2, n)):
            trigger()
        await asyncio.wait_for(finished, 60 + 10 * n)
        expected = (tally.deltas - deltas_before) * len(others)
        deadline = time.perf_counter() + 30
        while sum(c.messages for c in others) - others_before < expected:
            if time.perf_counter() > deadline:
                raise RuntimeError("agent-fanout: deltas missing at some members after 30 s")
            await asyncio.sleep(0.005)
        tally.on_end = None

    await stream(1)  # warm-up
    deltas, delta_bytes, reply_s = tally.deltas, tally.delta_bytes, len(tally.reply_s)
    others_before = sum(c.messages for c in others)
    clock = CpuClock(run.proc.pid)
    await stream(replies)
    wall, gen_s, srv_s = clock.seconds()
    per_member = tally.deltas - deltas
    delivered = per_member + sum(c.messages for c in others) - others_before
    figures: dict[str, Any] = {
        "deliveries_per_s": delivered / wall,
        "deliveries_per_cpu_s": scenarios.per_cpu(delivered, srv_s),
        "deltas_per_reply": per_member / replies,
        "delta_bytes_per_reply": (tally.delta_bytes - delta_bytes) / replies,
        "reply_s": percentiles(tally.reply_s[reply_s:], (0.5,))["p50"] / 1000,
        "srv_ms_per_reply": 1000 * srv_s / replies,
        "gen_cpu": 100 * gen_s / wall,
        "server_cpu": 100 * srv_s / wall,
    }
    # Baseline on the same server and connections: plain messages, one in flight.
    for c in others:
        c.count(MESSAGE_PREFIX)
    plain = scenarios.FanoutRoom(others, sampled=0)
    plain.start()
    plain.sent(1)
    others[0].send(client_frame(target.send(room, b"warmup")))
    await plain.drain()
    frame = client_frame(target.send(room, scenarios.body_of(64)))
    measured = await scenarios._fanout_once(plain, others[0], frame, 1, seconds, run.proc.pid)
    figures["plain_deliveries_per_s"] = measured["deliveries_per_s"]
    figures["plain_deliveries_per_cpu_s"] = measured["deliveries_per_cpu_s"]
    figures["cpu_s_vs_plain"] = (
        figures["deliveries_per_cpu_s"] / measured["deliveries_per_cpu_s"]
        if measured["deliveries_per_cpu_s"] > 0
        else float("nan")
    )
    sender.close()
    close_all(others)
    return figures

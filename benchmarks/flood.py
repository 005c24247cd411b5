"""`python -m benchmarks.flood [--seconds 10] [--out DIR]`: what hostile clients cost the
server. Figures only, no pass/fail; every measurement gets a fresh `nexus serve` on its own
default settings (the limits a deployment would have).

1. Ping flood: a raw-socket client sends masked WebSocket PING frames as fast as it can and
   never reads, once right after the upgrade (not authenticated) and once authenticated.
   Server RSS is sampled every 100 ms before, during and after; the flooder then reads what
   piled up to see whether and how the server closed it.
2. Frame floods vs a bystander: an authenticated bystander sends a `ping` request at a fixed
   interval and times each `pong`, first with no flood, then while another connection floods
   binary frames, invalid JSON, or `message.send` far past the rate limit (reading and
   discarding what comes back). Bystander p50/p99 quiet vs during, and the flooder's fate.

Each flooder is its own process (`benchmarks.flooder`), so its work does not delay the
bystander's or the sampler's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvloop
import websockets
from websockets.asyncio.client import ClientConnection, connect

from nexus.config import Settings

from . import report
from .flooder import HOST, TARGET
from .loadgen import CpuClock, percentiles
from .scenarios import rss
from .targets import Nexus, Running

RESULTS = Path(__file__).parent / "results"
MB = 1 << 20
RSS_EVERY_S = 0.1
AFTER_S = 1.0  # RSS sampling goes on this long after the flooder has gone
BYSTANDER_USER = 0
FRAME_FLOODS = {
    "binary": "binary frames",
    "bad-json": "text frames of invalid JSON",
    "send": "message.send past the rate limit",
}
# The bystander's own pings are charged to the default per-connection limit; stay under it.
DEFAULT_INTERVAL_S = 1 / (0.8 * Settings().rate_conn_per_s)


def start_server(**settings: str) -> Running:
    """A fresh `nexus serve` on the server's own defaults (rate and buffer limits included),
    with ``settings`` changed."""
    return Nexus("nexus", capacity_limits=False, settings=settings).start()


class Flooder:
    """A ``benchmarks.flooder`` process; the times it starts and stops flooding are taken on
    this process's monotonic clock as its lines arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.started_at = self.stopped_at = 0.0
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.result: asyncio.Task[dict[str, Any]] = asyncio.create_task(self._follow())

    @classmethod
    async def start(
        cls,
        kind: str,
        port: int,
        seconds: float,
        *,
        auth: bool,
        read: bool,
        reconnect: bool = False,
    ) -> Flooder:
        args = [kind, str(port), str(seconds)] + ["--auth"] * auth + ["--no-read"] * (not read)
        args += ["--reconnect"] * reconnect
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.flooder",
            *args,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
        )
        flooder = cls(proc)
        await asyncio.wait(
            [asyncio.create_task(flooder.started.wait()), flooder.result],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not flooder.started.is_set():
            raise RuntimeError(f"flooder {kind} did not start: {flooder.result.result()}")
        return flooder

    async def _follow(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        result: dict[str, Any] = {}
        async for raw in self.proc.stdout:
            line = raw.decode().strip()
            if line == "flooding":
                self.started_at = time.monotonic()
                self.started.set()
            elif line == "flooded":
                self.stopped_at = time.monotonic()
                self.stopped.set()
            elif line.startswith("{"):
                result = json.loads(line)
        code = await self.proc.wait()
        return result or {"error": f"flooder exited with status {code}"}

    def stop_early(self) -> None:
        if self.proc.returncode is None and not self.stopped.is_set():
            self.proc.send_signal(signal.SIGUSR1)


class RssTrace:
    """The server's RSS every 100 ms, as (monotonic time, MB); ``on_sample`` sees each one."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.on_sample: Callable[[float], None] | None = None
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                mb = rss(self.pid) / MB
            except OSError:  # the server is gone
                return
            self.samples.append((time.monotonic(), mb))
            if self.on_sample is not None:
                self.on_sample(mb)
            await asyncio.sleep(RSS_EVERY_S)

    def between(self, start: float, end: float) -> list[float]:
        return [mb for t, mb in self.samples if start <= t <= end]

    def stop(self) -> None:
        self._task.cancel()


async def ping_flood(seconds: float, *, auth: bool, max_rss_mb: float) -> dict[str, Any]:
    """PING frames as fast as possible, never reading: the server's RSS over time."""
    run = start_server()
    try:
        trace = RssTrace(run.proc.pid)
        await asyncio.sleep(0.5)
        before = trace.samples[-1][1]
        flooder = await Flooder.start("ping", run.port, seconds, auth=auth, read=False)
        capped_at: float | None = None

        def guard(mb: float) -> None:
            nonlocal capped_at
            if mb > max_rss_mb and capped_at is None and not flooder.stopped.is_set():
                capped_at = time.monotonic() - flooder.started_at
                flooder.stop_early()

        trace.on_sample = guard
        result = await flooder.result
        await asyncio.sleep(AFTER_S)
        trace.stop()
        alive = run.proc.poll() is None
    finally:
        run.stop()
    t0, t1 = flooder.started_at, flooder.stopped_at or time.monotonic()
    during = trace.between(t0, t1) or [before]
    after = trace.between(t1, float("inf")) or [before]
    return {
        "when": "after auth" if auth else "before auth",
        "rss_before_mb": before,
        "rss_max_during_mb": max(during),
        "rss_max_after_mb": max(after),
        "rss_end_mb": after[-1],
        "growth_mb": max(during + after) - before,
        "capped_at_s": capped_at,
        "server_alive": alive,
        "flooder": result,
        "trace": [(t - t0, mb) for t, mb in trace.samples],
    }


@dataclass
class Bystander:
    """An authenticated client sending a `ping` request every ``interval`` seconds, on
    schedule whatever the replies do, and timing each answer."""

    ws: ClientConnection
    interval: float
    sent: dict[int, float] = field(default_factory=dict)
    rtts: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    errors: dict[str, int] = field(default_factory=dict)
    closed: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def connect(cls, port: int, interval: float) -> Bystander:
        ws = await connect(
            f"ws://{HOST}:{port}{TARGET.path}",
            max_size=None,
            additional_headers=TARGET.headers(BYSTANDER_USER),
        )
        first = orjson.loads(await ws.recv())
        if first["type"] != "auth.ok":
            raise RuntimeError(f"bystander not authenticated: {first}")
        bystander = cls(ws, interval)
        bystander.tasks = [
            asyncio.create_task(bystander._send()),
            asyncio.create_task(bystander._receive()),
        ]
        return bystander

    async def _send(self) -> None:
        n = 0
        next_at = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            n += 1
            self.sent[n] = time.monotonic()
            await self.ws.send(f'{{"type":"ping","id":{n}}}')
            next_at += self.interval

    async def _receive(self) -> None:
        try:
            async for raw in self.ws:
                now = time.monotonic()
                event = orjson.loads(raw)
                sent_at = self.sent.pop(event.get("id"), None)
                # A `pong` or an `error` (e.g. rate_limited when a stall released a burst of
                # pings at once): either way the server's answer, and its round trip.
                if sent_at is not None:
                    self.rtts.append((sent_at, now - sent_at))
                if event["type"] == "error":
                    code = event["code"]
                    self.errors[code] = self.errors.get(code, 0) + 1
        except websockets.ConnectionClosed as exc:
            self.closed = f"{exc.rcvd.code} {exc.rcvd.reason}" if exc.rcvd else "no close frame"

    async def stop(self, grace: float = 2.0) -> None:
        """Stop sending; give the outstanding pings ``grace`` seconds to come back."""
        self.tasks[0].cancel()
        deadline = time.monotonic() + grace
        while self.sent and time.monotonic() < deadline and not self.tasks[1].done():
            await asyncio.sleep(0.01)
        await self.ws.close()
        for task in self.tasks:
            task.cancel()

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Latency percentiles (ms) of the pings sent in [start, end), and how many were lost."""
        rtts = [rtt for at, rtt in self.rtts if start <= at < end]
        lost = sum(1 for at in self.sent.values() if start <= at < end)
        return {**percentiles(rtts, (0.5, 0.99)), "pings": len(rtts) + lost, "lost": lost}


async def frame_flood(
    kind: str, seconds: float, *, quiet: float, interval: float, budget_only: bool = False
) -> dict[str, Any]:
    """The bystander's latency with no flood, then while ``kind`` floods. The flooder
    reconnects whenever it is cut (a persistent attacker), so the bystander is measured
    through the whole flood. ``budget_only``: the refused-frame close is switched off, so
    only the per-iteration work budget stands between the flooder and the bystander."""
    run = start_server(**({"refused_burst": "1000000000"} if budget_only else {}))
    try:
        bystander = await Bystander.connect(run.port, interval)
        await asyncio.sleep(0.5)  # the bystander's first round trips warm things up
        q0, clock = time.monotonic(), CpuClock(run.proc.pid)
        await asyncio.sleep(quiet)
        q1, (_, _, quiet_cpu) = time.monotonic(), clock.read()
        flooder = await Flooder.start(kind, run.port, seconds, auth=True, read=True, reconnect=True)
        clock = CpuClock(run.proc.pid)
        await flooder.stopped.wait()
        _, _, flood_cpu = clock.read()
        result = await flooder.result
        await bystander.stop()
        alive = run.proc.poll() is None
    finally:
        run.stop()
    quiet_w = bystander.window(q0, q1)
    flood_w = bystander.window(flooder.started_at, flooder.stopped_at)
    what = FRAME_FLOODS[kind] + (" (refused-frame close off)" if budget_only else "")
    return {
        "kind": kind,
        "what": what,
        "interval_ms": interval * 1000,
        "quiet": quiet_w,
        "flood": flood_w,
        "p99_ratio": flood_w["p99"] / quiet_w["p99"] if quiet_w["p99"] else float("nan"),
        "server_cpu_quiet": quiet_cpu,
        "server_cpu_flood": flood_cpu,
        "bystander_errors": bystander.errors,
        "bystander_closed": bystander.closed,
        "server_alive": alive,
        "flooder": result,
    }


def fate(flooder: dict[str, Any]) -> str:
    """How the flooding connection ended, in words."""
    if "error" in flooder:
        return f"ERROR {flooder['error']}"
    end, at = flooder["end"], flooder["ended_at_s"]
    when = f" at {at:.1f} s" if at is not None else ""
    if flooder.get("write_failed_at_s") is not None:
        when += f" (writes failed at {flooder['write_failed_at_s']:.1f} s)"
    if flooder.get("connections", 1) > 1:
        when += f"; reconnected, {flooder['connections']} connections in all"
    if end == "close":
        return f"closed {flooder['close_code']} {flooder['close_reason']!r}{when}"
    if end == "open":
        return f"not closed ({flooder['linger_s']:g} s after the flood)"
    return {"reset": "reset by the server", "eof": "closed without a close frame"}[end] + when


def tables(data: dict[str, Any]) -> str:
    f = report.fmt
    lines = [f"Nexus flood measurements, {data['date']}, {data['seconds']:g} s floods"]
    lines += [
        "",
        (
            "## 1. ping flood: masked PING frames as fast as possible, never reading "
            "(server RSS in MB)"
        ),
    ]
    rows = [
        [
            "when",
            "before",
            "max during",
            "max after",
            "end",
            "growth",
            "MB/s flooded",
            "pings sent",
            "flood s",
            "server alive",
            "flooding connection",
        ]
    ]
    for r in data["ping_flood"]:
        fl = r["flooder"]
        capped = f" (capped at {r['capped_at_s']:.1f} s)" if r["capped_at_s"] else ""
        flood_s = fl.get("flood_s", float("nan"))
        rows.append(
            [
                r["when"],
                f(r["rss_before_mb"]),
                f(r["rss_max_during_mb"]),
                f(r["rss_max_after_mb"]),
                f(r["rss_end_mb"]),
                f(r["growth_mb"]) + capped,
                f(r["growth_mb"] / flood_s if flood_s else float("nan")),
                f"{fl.get('frames_sent', 0):,}",
                f(flood_s),
                "yes" if r["server_alive"] else "NO",
                fate(fl),
            ]
        )
    lines += report.aligned(rows)
    interval = data["frame_flood"][0]["interval_ms"] if data["frame_flood"] else 0
    lines += [
        "",
        (
            f"## 2. frame floods vs a bystander (`ping` request every {interval:g} ms; "
            "latency in ms)"
        ),
    ]
    rows = [
        [
            "flood",
            "quiet p50",
            "quiet p99",
            "flood p50",
            "flood p99",
            "p99 ratio",
            "lost",
            "srv cpu% quiet",
            "srv cpu% flood",
            "frames sent",
            "frames back",
            "flooding connection",
        ]
    ]
    for r in data["frame_flood"]:
        fl, q, w = r["flooder"], r["quiet"], r["flood"]
        rows.append(
            [
                r["what"],
                f(q["p50"]),
                f(q["p99"]),
                f(w["p50"]),
                f(w["p99"]),
                f"{r['p99_ratio']:.1f}x",
                f"{w['lost']}/{w['pings']}",
                f(r["server_cpu_quiet"]),
                f(r["server_cpu_flood"]),
                f"{fl.get('frames_sent', 0):,}",
                f"{fl.get('frames_received', 0):,}",
                fate(fl),
            ]
        )
    lines += report.aligned(rows)
    for r in data["frame_flood"]:
        if r["bystander_errors"] or r["bystander_closed"]:
            lines.append(
                f"bystander during {r['kind']}: errors {r['bystander_errors']}, "
                f"closed: {r['bystander_closed']}"
            )
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> Path | None:
    plt = report.pyplot()
    if plt is None:
        return None
    fig, (rss_ax, lat_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in data["ping_flood"]:
        t, mb = zip(*r["trace"], strict=False) if r["trace"] else ((), ())
        [line] = rss_ax.plot(t, mb, label=r["when"])
        if "flood_s" in r["flooder"]:
            rss_ax.axvline(
                r["flooder"]["flood_s"], color=line.get_color(), linestyle="--", linewidth=1
            )
    rss_ax.set(
        title="ping flood, never reading: server RSS",
        xlabel="s since the flood started (dashed: it stopped)",
        ylabel="MB",
    )
    rss_ax.legend(fontsize=8)
    floods = data["frame_flood"]
    xs = range(len(floods))
    bars = [
        ("quiet p50", "quiet", "p50"),
        ("quiet p99", "quiet", "p99"),
        ("flood p50", "flood", "p50"),
        ("flood p99", "flood", "p99"),
    ]
    width = 0.8 / len(bars)
    for i, (label, phase, key) in enumerate(bars):
        lat_ax.bar([x + i * width for x in xs], [r[phase][key] for r in floods], width, label=label)
    lat_ax.set_xticks([x + width * (len(bars) - 1) / 2 for x in xs])
    lat_ax.set_xticklabels([r["kind"] for r in floods])
    lat_ax.set_yscale("log")
    lat_ax.set(title="bystander ping round trip", ylabel="ms (log)")
    lat_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


async def run(args: argparse.Namespace) -> dict[str, Any]:
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    pings = []
    for auth in (False, True):
        print(f"ping flood, {'after' if auth else 'before'} auth ...", file=sys.stderr)
        pings.append(await ping_flood(args.seconds, auth=auth, max_rss_mb=args.max_rss_mb))
    floods = []
    for kind in FRAME_FLOODS:
        print(f"{kind} flood vs bystander ...", file=sys.stderr)
        floods.append(
            await frame_flood(kind, args.seconds, quiet=args.quiet, interval=args.ping_interval)
        )
    print("binary flood vs bystander, budget only ...", file=sys.stderr)
    floods.append(
        await frame_flood(
            "binary", args.seconds, quiet=args.quiet, interval=args.ping_interval, budget_only=True
        )
    )
    return {
        "date": date,
        "seconds": args.seconds,
        "max_rss_mb": args.max_rss_mb,
        "ping_flood": pings,
        "frame_flood": floods,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.flood",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=10.0, help="length of each flood")
    p.add_argument(
        "--quiet",
        type=float,
        default=5.0,
        help="seconds of bystander latency measured before each frame flood",
    )
    p.add_argument(
        "--ping-interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help="seconds between the bystander's pings (default: 80%% of the "
        "server's default per-connection rate limit, %(default).3f)",
    )
    p.add_argument(
        "--max-rss-mb",
        type=float,
        default=4096.0,
        help="stop a ping flood early when the server's RSS passes this (protects the machine)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    data = uvloop.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{report.stamp(data['date'])}-flood"
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(data, indent=1))
    print(tables(data))
    print(f"\nresults: {path}")
    png = chart(data, args.out / f"{stem}.png")
    if png is not None:
        print(f"chart: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

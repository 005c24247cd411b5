"""`python -m benchmarks.soak [--minutes 10] [--conns 300] [--rate 200] [--out DIR]`: does the
server stay stable under steady traffic with churn? A measurement, not a test: it always
exits 0, and prints a GROWS / STABLE verdict for each series.

It starts `nexus serve` (fresh data dir, default settings but rate limits raised, so the
soak measures stability, not abuse protection) and drives ``--conns`` users
(``benchmarks.fleet``) at ``--rate`` messages a second in all across rooms of about ten,
with joins and leaves, `ping` requests, reconnect storms (a quarter of the connections
dropped and reconnected at once, every minute) and resumes (rejoin with ``since``; every
message must arrive once, in order). Every few seconds it samples the server's RSS, open
descriptors, CPU, connections and (when /metrics has it) event-loop lag, and the client's
send->ack and ping round-trip percentiles over the window.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvloop

from . import report
from .fleet import Fleet
from .loadgen import CpuClock, percentiles
from .scenarios import HOST, rss
from .targets import RAISED_RATE_LIMITS, Nexus, Running

RESULTS = Path(__file__).parent / "results"
LAG_GAUGE = "nexus_event_loop_lag_seconds"
MB = 1 << 20


@dataclass(frozen=True)
class Series:
    """A sampled quantity and how much change after warm-up counts as growth: more than
    ``abs_tol`` and more than ``rel_tol`` of its level."""

    key: str
    label: str
    unit: str
    abs_tol: float
    rel_tol: float


SERIES = [
    Series("rss_mb", "server RSS", "MB", 2.0, 0.05),
    Series("anon_mb", "server RSS anon", "MB", 2.0, 0.05),
    Series("fds", "server open fds", "", 3.0, 0.05),
    Series("server_cpu", "server CPU", "%", 3.0, 0.20),
    Series("server_conns", "server connections", "", 3.0, 0.02),
    # latency tails are noisy from one window to the next (fsync, storms): wider margins
    Series("ack_p99_ms", "send->ack p99", "ms", 5.0, 0.50),
    Series("ping_p99_ms", "ping p99", "ms", 5.0, 0.50),
    Series("loop_lag_ms", "server event-loop lag", "ms", 2.0, 0.50),
]


# -- probes ------------------------------------------------------------------------------
def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def scrape(http_port: int, timeout: float = 5.0) -> dict[str, float]:
    """The server's Prometheus samples, name (with labels) -> value; {} when unreachable."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, http_port), timeout)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" % HOST.encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except (OSError, TimeoutError):
        return {}
    values = {}
    for line in raw.partition(b"\r\n\r\n")[2].decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name and not line.startswith("#"):
            values[name] = float(value)
    return values


def gauge(values: dict[str, float], name: str) -> float | None:
    """A gauge's value (the largest, if it has labels), or None when absent."""
    found = [v for k, v in values.items() if k == name or k.startswith(name + "{")]
    return max(found) if found else None


def count(values: dict[str, float], name: str) -> int | None:
    value = gauge(values, name)
    return None if value is None else int(value)


# -- trend -------------------------------------------------------------------------------
def trend(times: list[float], values: list[float | None], series: Series) -> dict[str, Any]:
    """GROWS when, after the first third (warm-up), the median of the last third exceeds the
    median of the second third by more than the tolerance, and the least-squares slope over
    both thirds projects a rise above the tolerance too; STABLE otherwise."""
    points = [
        (t, v) for t, v in zip(times, values, strict=False) if v is not None and not math.isnan(v)
    ]
    if len(points) < 6:
        return {"verdict": "n/a", "why": f"{len(points)} samples"}
    third = len(points) // 3
    second = statistics.median(v for _, v in points[third : 2 * third])
    last = statistics.median(v for _, v in points[2 * third :])
    after = points[third:]
    minutes = [t / 60 for t, _ in after]
    slope = (
        statistics.linear_regression(minutes, [v for _, v in after]).slope
        if minutes[-1] > minutes[0]
        else 0.0
    )
    rise = slope * (minutes[-1] - minutes[0])
    tolerance = max(series.abs_tol, series.rel_tol * abs(second))
    grows = last - second > tolerance and rise > tolerance
    return {
        "verdict": "GROWS" if grows else "STABLE",
        "second_third": second,
        "last_third": last,
        "slope_per_min": slope,
        "tolerance": tolerance,
    }


# -- the run -----------------------------------------------------------------------------
@dataclass
class Plan:
    minutes: float
    conns: int
    rate: float
    rooms: int
    rooms_per_conn: int
    storm_every: float
    storm_fraction: float
    sample_every: float
    churn_period: float
    pings_per_s: float
    body_bytes: int
    seed: int


def plan_from(args: argparse.Namespace) -> Plan:
    seconds = args.minutes * 60
    return Plan(
        minutes=args.minutes,
        conns=args.conns,
        rate=args.rate,
        rooms=args.rooms or max(1, args.conns // 10),
        rooms_per_conn=args.rooms_per_conn,
        # short runs still see a few storms and a dozen samples
        storm_every=args.storm_every or min(60.0, seconds / 4),
        storm_fraction=args.storm_fraction,
        sample_every=args.sample_every or min(5.0, seconds / 12),
        churn_period=args.churn_period,
        pings_per_s=args.pings_per_s,
        body_bytes=args.body_bytes,
        seed=args.seed,
    )


async def sample(
    run: Running,
    fleet: Fleet,
    clock: CpuClock,
    t: float,
    last_acked: int,
    last_delivered: int,
    window: float,
) -> dict[str, Any]:
    pid = run.proc.pid
    _, client_cpu, server_cpu = clock.read()
    acks, pings = fleet.tally.take_window()
    metrics = await scrape(run.http_port)
    lag = gauge(metrics, LAG_GAUGE)
    ack = percentiles(acks, (0.5, 0.99))
    tally = fleet.tally
    return {
        "t": t,
        "rss_mb": rss(pid) / MB,
        "anon_mb": rss(pid, "RssAnon") / MB,
        "fds": open_fds(pid),
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "ack_p50_ms": ack["p50"],
        "ack_p99_ms": ack["p99"],
        "ping_p99_ms": percentiles(pings, (0.99,))["p99"],
        "loop_lag_ms": lag * 1000 if lag is not None else None,
        "server_conns": count(metrics, "nexus_connections_open"),
        "server_sessions": count(metrics, "nexus_sessions_authenticated"),
        "client_conns": len(fleet.live()),
        "acks_per_s": (tally.acked - last_acked) / window,
        "deliveries_per_s": (tally.delivered - last_delivered) / window,
        "violations": tally.violations,
    }


async def soak(plan: Plan) -> dict[str, Any]:
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    duration = plan.minutes * 60
    run = Nexus("nexus", capacity_limits=False, settings=RAISED_RATE_LIMITS).start()
    samples: list[dict[str, Any]] = []
    try:
        url = f"ws://{HOST}:{run.port}/ws"
        # The server's first HTTP request is slow (it stalls the event loop it shares with
        # the WebSocket gateway): make it before the clients, and report how long it took.
        t_scrape = time.perf_counter()
        await scrape(run.http_port)
        first_scrape_ms = (time.perf_counter() - t_scrape) * 1000
        fds_idle = open_fds(run.proc.pid)
        fleet = Fleet(
            url,
            plan.conns,
            plan.rooms,
            plan.rooms_per_conn,
            token_ttl=duration + 600,
            seed=plan.seed,
        )
        t_connect = time.perf_counter()
        await fleet.start()
        print(
            f"{plan.conns} users connected in {time.perf_counter() - t_connect:.1f} s; "
            f"soaking for {plan.minutes:g} min",
            file=sys.stderr,
        )
        started = time.perf_counter()
        body = "x" * plan.body_bytes
        tasks = [
            asyncio.create_task(c)
            for c in (
                fleet.send_messages(plan.rate, body),
                fleet.send_pings(plan.pings_per_s),
                fleet.churn(plan.churn_period),
                # storms half a sample after a sample is taken, not on top of one
                fleet.storms_every(
                    plan.storm_every, plan.storm_fraction, started, offset=plan.sample_every / 2
                ),
            )
        ]
        acked = delivered = 0
        clock = CpuClock(run.proc.pid)
        next_at = started + plan.sample_every
        while next_at <= started + duration + 1e-6:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            row = await sample(
                run,
                fleet,
                clock,
                time.perf_counter() - started,
                acked,
                delivered,
                plan.sample_every,
            )
            clock = CpuClock(run.proc.pid)
            acked, delivered = fleet.tally.acked, fleet.tally.delivered
            samples.append(row)
            print(
                f"  t={row['t']:5.0f} s  rss {row['rss_mb']:.1f} MB  fds {row['fds']}  "
                f"cpu {row['server_cpu']:.0f}%  ack p99 {row['ack_p99_ms']:.1f} ms  "
                f"violations {row['violations']}",
                file=sys.stderr,
            )
            next_at += plan.sample_every
        for task in tasks:
            task.cancel()
        await asyncio.sleep(1.0)  # the last acks
        unanswered = sum(len(u.pending) for u in fleet.users)
        await fleet.close()
        await asyncio.sleep(2.0)  # let the server notice every close
        metrics = await scrape(run.http_port)
        pid = run.proc.pid
        after = {
            "first_scrape_ms": first_scrape_ms,
            "server_conns": count(metrics, "nexus_connections_open"),
            "server_sessions": count(metrics, "nexus_sessions_authenticated"),
            "fds": open_fds(pid),
            "fds_before_clients": fds_idle,
            "rss_mb": rss(pid) / MB,
            "anon_mb": rss(pid, "RssAnon") / MB,
        }
        alive = run.proc.poll() is None
    finally:
        run.stop()
    totals = {k: v for k, v in asdict(fleet.tally).items() if not k.endswith("_window")}
    totals["unanswered_sends_at_end"] = unanswered
    times = [s["t"] for s in samples]
    verdicts = {s.key: trend(times, [row[s.key] for row in samples], s) for s in SERIES}
    return {
        "date": date,
        "plan": asdict(plan),
        "samples": samples,
        "storms": fleet.storms,
        "totals": totals,
        "after_close": after,
        "server_alive": alive,
        "verdicts": verdicts,
    }


# -- output ------------------------------------------------------------------------------
def table(data: dict[str, Any]) -> str:
    plan = data["plan"]
    f = report.fmt
    lines = [
        (
            f"Nexus soak, {data['date']}: {plan['minutes']:g} min, {plan['conns']} "
            f"connections, {plan['rate']:g} msg/s over {plan['rooms']} rooms, storms every "
            f"{plan['storm_every']:g} s ({plan['storm_fraction']:.0%} of connections)"
        ),
        "",
    ]
    head = [
        "t s",
        "rss MB",
        "anon MB",
        "fds",
        "srv cpu%",
        "cli cpu%",
        "ack p50",
        "ack p99",
        "ping p99",
        "loop lag",
        "conns srv/cli",
        "acks/s",
        "deliv/s",
        "violations",
    ]
    rows = [head] + [
        [
            f"{s['t']:.0f}",
            f(s["rss_mb"]),
            f(s["anon_mb"]),
            str(s["fds"]),
            f(s["server_cpu"]),
            f(s["client_cpu"]),
            f(s["ack_p50_ms"]),
            f(s["ack_p99_ms"]),
            f(s["ping_p99_ms"]),
            f(s["loop_lag_ms"]),
            f"{f(s['server_conns'])}/{s['client_conns']}",
            f(s["acks_per_s"]),
            f(s["deliveries_per_s"]),
            str(s["violations"]),
        ]
        for s in data["samples"]
    ]
    lines += report.aligned(rows, left=0)
    t = data["totals"]
    lines.append("")
    lines.append(
        f"sent {t['sent']:,}, acked {t['acked']:,}, delivered {t['delivered']:,}, "
        f"pings {t['pings']:,}; joins {t['joins']:,} (resumes with since "
        f"{t['resumes']:,}), leaves {t['leaves']:,}"
    )
    lines.append(
        f"order: gaps {t['gaps']}, duplicates {t['duplicates']}, strays "
        f"{t['strays']}; in flight at a drop {t['in_flight_at_drop']}, unanswered "
        f"at the end {t['unanswered_sends_at_end']}"
    )
    lines.append(
        f"errors {t['errors'] or 'none'}; unexpected closes "
        f"{t['unexpected_closes'] or 'none'}; reconnect failures "
        f"{t['reconnect_failures']}"
    )
    storms = data["storms"]
    if storms:
        took = ", ".join(f"{s['reconnect_s']:.2f}" for s in storms)
        lines.append(
            f"storms: {len(storms)}, each dropping ~{storms[0]['dropped']} "
            f"connections; all back in (s) {took}"
        )
    a = data["after_close"]
    lines.append(
        f"after every client closed: server connections {f(a['server_conns'])}, "
        f"sessions {f(a['server_sessions'])}, fds {a['fds']} (before the clients "
        f"{a['fds_before_clients']}), rss {a['rss_mb']:.1f} MB (anon "
        f"{a['anon_mb']:.1f}); server {'alive' if data['server_alive'] else 'DEAD'}"
    )
    lines.append(
        f"the server's first /metrics request (made before the clients) took "
        f"{a['first_scrape_ms']:.0f} ms"
    )
    rule = "=" * 78
    lines += [
        "",
        rule,
        "VERDICTS (warm-up = first third of the samples; GROWS = the median of the last",
        "third exceeds the second third's, and the regression slope after warm-up",
        "projects a rise, both by more than the tolerance)",
        rule,
    ]
    rows = []
    for s in SERIES:
        v = data["verdicts"][s.key]
        if v["verdict"] == "n/a":
            rows.append([s.label, "n/a", f"({v['why']})"])
            continue
        change = v["last_third"] - v["second_third"]
        pct = f" ({change / v['second_third']:+.0%})" if v["second_third"] else ""
        rows.append(
            [
                s.label,
                v["verdict"],
                f"{f(v['second_third'])} -> {f(v['last_third'])} {s.unit}{pct}",
                f"slope {v['slope_per_min']:+.3g} {s.unit}/min",
                f"tolerance {f(v['tolerance'])}",
            ]
        )
    lines += report.aligned(rows, left=3)
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> Path | None:
    plt = report.pyplot()
    if plt is None:
        return None
    samples = data["samples"]
    panels: list[tuple[str, list[tuple[str, str]]]] = [
        ("server RSS (MB)", [("rss_mb", "VmRSS"), ("anon_mb", "RssAnon")]),
        ("server open fds", [("fds", "fds")]),
        ("CPU (%)", [("server_cpu", "server"), ("client_cpu", "client")]),
        ("connections", [("server_conns", "server"), ("client_conns", "client")]),
        ("send->ack (ms)", [("ack_p50_ms", "p50"), ("ack_p99_ms", "p99")]),
        ("ping round trip p99 (ms)", [("ping_p99_ms", "p99")]),
        ("event-loop lag (ms)", [("loop_lag_ms", "lag")]),
        ("order violations (cumulative)", [("violations", "gaps+dups+strays")]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.0 * len(panels)), sharex=True)
    times = [s["t"] for s in samples]
    warm = times[len(times) // 3] if times else 0
    for ax, (title, lines) in zip(axes, panels, strict=False):
        for key, label in lines:
            ys = [s[key] if s[key] is not None else float("nan") for s in samples]
            ax.plot(times, ys, marker=".", label=label)
        ax.axvspan(0, warm, color="grey", alpha=0.12)
        for storm in data["storms"]:
            ax.axvline(storm["t"], color="red", alpha=0.3, linewidth=1)
        verdicts = [
            (label, data["verdicts"][key]["verdict"])
            for key, label in lines
            if key in data["verdicts"]
        ]
        said = verdicts[0][1] if len(verdicts) == 1 else ", ".join(map(" ".join, verdicts))
        ax.set_title(f"{title}  {said}".strip(), fontsize=9, loc="left")
        if len(lines) > 1:
            ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("s (grey: warm-up; red: reconnect storms)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=10.0, help="0.5 for a quick try")
    p.add_argument("--conns", type=int, default=300, help="users, one connection each")
    p.add_argument("--rate", type=float, default=200.0, help="messages a second, in all")
    p.add_argument("--rooms", type=int, default=0, help="default: conns / 10")
    p.add_argument("--rooms-per-conn", type=int, default=2)
    p.add_argument(
        "--storm-every",
        type=float,
        default=0.0,
        help="seconds between reconnect storms (default 60, or a quarter of a shorter run)",
    )
    p.add_argument("--storm-fraction", type=float, default=0.25)
    p.add_argument(
        "--sample-every",
        type=float,
        default=0.0,
        help="seconds between samples (default 5, or 1/12 of a shorter run)",
    )
    p.add_argument(
        "--churn-period",
        type=float,
        default=30.0,
        help="each user leaves a room and joins another about this often (s)",
    )
    p.add_argument("--pings-per-s", type=float, default=20.0)
    p.add_argument("--body-bytes", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    data = uvloop.run(soak(plan_from(args)))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{report.stamp(data['date'])}-soak"
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(data, indent=1))
    print(table(data))
    print(f"\nresults: {path}")
    png = chart(data, args.out / f"{stem}.png")
    if png is not None:
        print(f"chart: {png}")
    return 0  # a measurement: the verdicts above are the result


if __name__ == "__main__":
    raise SystemExit(main())

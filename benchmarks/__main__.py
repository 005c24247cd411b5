"""`python -m benchmarks [--quick | --full | --smoke]`: run the scenarios against Nexus and
its peers, print a table with ratios, write JSON and PNG charts to benchmarks/results/."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from . import agents, report, scenarios
from .targets import Unavailable, all_targets

RESULTS = Path(__file__).parent / "results"

# scenario -> (function, parameter groups, which targets). A group is measured on one
# fresh server per target and round; its list values are variants measured one after the
# other on that server (same connections), each giving its own row.
Plan = list[tuple[str, Callable[..., Awaitable[scenarios.Rows]], list[dict[str, Any]], str]]
ROUNDS = {"smoke": 1, "quick": 3, "full": 5}
# Left out of quick and smoke runs unless named with --targets: the seams' and plugins' cost.
FULL_ONLY = (
    "nexus-hooks",
    "nexus-plugin-trivial",
    "nexus-plugin-redactor",
    "nexus-plugin-events",
)
# Run only when named with --scenarios ("agents" names both); they start their own servers
# (the model first, then nexus configured to use it), one per variant.
OPT_IN = agents.SCENARIOS


def mode_default(target: str, mode: str) -> bool:
    return mode == "full" or target not in FULL_ONLY


def plan(mode: str, provider: str = "offline") -> Plan:
    secs = {"smoke": 0.3, "quick": 0.8, "full": 2.0}[mode]
    sizes = [64, 1024] if mode == "full" else [64]
    echo_n = {"smoke": [2], "quick": [16], "full": [1, 16, 256]}[mode]
    fan_n = {"smoke": [10], "quick": [1000], "full": [10, 100, 1000, 10000]}[mode]
    if os.environ.get("NEXUS_BENCH_FANOUT"):  # e.g. "10000": only these room sizes
        fan_n = [int(n) for n in os.environ["NEXUS_BENCH_FANOUT"].split(",")]
    cap_n = {"smoke": [50], "quick": [1000], "full": [10000]}[mode]
    idle = {"smoke": 0.3, "quick": 0.2, "full": 2.0}[mode]  # idle CPU: a side figure
    backlog = {"smoke": 500, "quick": 10000, "full": 100000}[mode]
    fractions = [0.25, 0.5, 0.9] if mode == "full" else [0.5]
    # Storage scenarios: the server with and without fsync (all nexus-* targets in full).
    storage = "nexus" if mode == "full" else "nexus,nexus-nosync"
    turns = {"smoke": 20, "quick": 100, "full": 300}[mode]
    turn_intervals = [0.0, agents.COALESCED] if mode == "full" else [0.0]
    replies = {"smoke": 2, "quick": 3, "full": 10}[mode]
    stream_n = {"smoke": [50], "quick": [1000], "full": [1000]}[mode]
    return [
        (
            "echo",
            scenarios.echo,
            [{"conns": n, "sizes": sizes, "seconds": secs} for n in echo_n],
            "all",
        ),
        (
            "fanout",
            scenarios.fanout,
            [{"members": n, "sizes": sizes, "windows": [1, 16], "seconds": secs} for n in fan_n],
            "all",
        ),
        ("capacity", scenarios.capacity, [{"conns": n, "idle": idle} for n in cap_n], "all"),
        (
            "durable",
            scenarios.durable,
            [
                {"conns": 16, "size": s, "seconds": secs, "fractions": fractions}
                for s in ([64, 1024] if mode == "full" else [64])
            ],
            storage,
        ),
        ("resume", scenarios.resume, [{"messages": backlog, "size": 64}], storage),
        (
            "agent-turn",
            agents.turn,
            [
                {
                    "provider": provider,
                    "intervals": turn_intervals,
                    "histories": [20, 200],
                    "turns": turns,
                }
            ],
            storage,
        ),
        (
            "agent-fanout",
            agents.fanout,
            [
                {
                    "members": n,
                    "provider": provider,
                    "intervals": [agents.COALESCED, 0.0],
                    "replies": replies,
                    "seconds": secs,
                }
                for n in stream_n
            ],
            "nexus-nosync" if mode != "full" else "nexus",
        ),
    ]


def selected(name: str, wanted: list[str] | None) -> bool:
    """Every scenario but the opt-in ones by default, else those named ("agents": both
    agent scenarios)."""
    if not wanted:
        return name not in OPT_IN
    return name in wanted or ("agents" in wanted and name in OPT_IN)


def eligible(target: str, which: str) -> bool:
    """``which``: "all", a name prefix ("nexus": every nexus-* target) or exact names
    separated by commas."""
    if which == "all":
        return True
    names = which.split(",")
    return target in names if len(names) > 1 else target.startswith(which)


def rotated(items: list[Any], k: int) -> list[Any]:
    """``items`` starting at item ``k`` (mod its length)."""
    k %= len(items) or 1
    return items[k:] + items[:k]


# A group's list parameters, by the name each variant's row gives its value; and the
# settings that are not part of a row's parameters.
VARIANTS = {
    "sizes": "size",
    "windows": "in_flight",
    "intervals": "interval",
    "histories": "history",
}
SETTINGS = ("seconds", "idle", "fractions", "turns", "replies")


def variants(group: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameters of the rows a group gives (what a failed run is recorded under)."""
    rows: list[dict[str, Any]] = [{}]
    for name, value in group.items():
        if name in VARIANTS:
            rows = [{**r, VARIANTS[name]: v} for r in rows for v in value]
        elif name not in SETTINGS:
            rows = [{**r, name: value} for r in rows]
    return rows


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _label(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if k not in ("seconds", "fractions"))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    targets = [
        t
        for t in all_targets()
        if (t.name in args.targets if args.targets else mode_default(t.name, args.mode))
    ]
    rounds = args.rounds or ROUNDS[args.mode]
    skipped: dict[str, str] = {}
    provider = args.provider
    if any(selected(name, args.scenarios) for name in OPT_IN):
        # Checked once: a provider type the server cannot run falls back to the offline one.
        provider, why = await agents.usable_provider(provider)
        if why:
            skipped[f"provider {args.provider}"] = why
    work = [
        (name, fn, group, [t for t in targets if eligible(t.name, which)])
        for name, fn, groups, which in plan(args.mode, provider)
        if selected(name, args.scenarios)
        for group in groups
    ]
    total = sum(rounds * len(ts) for *_, ts in work)
    fd_limit = raise_fd_limit()
    measured: list[dict[str, Any]] = []
    started = time.perf_counter()
    i = 0
    for name, fn, group, group_targets in work:
        need = group.get("conns", group.get("members", 0))
        if need * 1.1 + 100 > fd_limit:
            i += rounds * len(group_targets)
            print(
                f"{name} {_label(group)}: skipped, needs {need} descriptors, limit {fd_limit}",
                file=sys.stderr,
            )
            continue
        # Round k starts with target k (mod their number) and measures a group's variants
        # from the k-th, so a target's place in the run, and what the machine did just
        # before, change from round to round.
        for k in range(rounds):
            params = {key: rotated(v, k) if isinstance(v, list) else v for key, v in group.items()}
            for target in rotated(group_targets, k):
                i += 1
                if target.name in skipped:
                    continue
                label = f"[{i}/{total}] round {k + 1}/{rounds} {name} {target.name} "
                print(f"{label}{_label(params)} ...", end="", file=sys.stderr, flush=True)
                # A fresh server per group and round keeps one run's state out of the next.
                t0 = time.perf_counter()
                try:
                    run_ = None if name in OPT_IN else target.start()
                except Unavailable as exc:
                    skipped[target.name] = str(exc)
                    print(f" SKIPPED: {exc}", file=sys.stderr)
                    continue
                try:
                    rows = await asyncio.wait_for(fn(target, run_, **params), 600)
                except Exception as exc:  # a failing peer must not hide the other results
                    error = {"error": f"{type(exc).__name__}: {exc}"}
                    rows = [(row_params, error) for row_params in variants(group)]
                finally:
                    if run_ is not None:
                        run_.stop()
                for row_params, row in rows:
                    measured.append(
                        {
                            "scenario": name,
                            "target": target.name,
                            "params": row_params,
                            "round": k,
                            **row,
                        }
                    )
                took = time.perf_counter() - t0
                figures = "; ".join(report.short(name, row) for _, row in rows)
                print(f" {figures} ({took:.1f} s)", file=sys.stderr)
    order = [t.name for t in targets]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": args.mode,
        "rounds": rounds,
        "machine": {
            "cpus": _cpus(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "seconds": time.perf_counter() - started,
        "skipped": skipped,
        "results": report.aggregate(measured, order),
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="about 4 minutes (default)",
    )
    mode.add_argument("--full", dest="mode", action="store_const", const="full")
    mode.add_argument(
        "--smoke",
        dest="mode",
        action="store_const",
        const="smoke",
        help="seconds; checks the suite works (CI)",
    )
    p.add_argument(
        "--targets",
        nargs="*",
        help="subset: nexus nexus-nosync nexus-hooks nexus-plugin-trivial nexus-plugin-redactor "
        "nexus-plugin-events picows-naive picows-coalesced "
        "picows-nexus-outbox websockets websockets-asyncio aiohttp node-ws",
    )
    p.add_argument(
        "--scenarios",
        nargs="*",
        help="subset: echo fanout capacity durable resume; agent-turn agent-fanout (or agents:"
        " both) only when named",
    )
    p.add_argument(
        "--provider",
        choices=agents.PROVIDERS,
        default="openai",
        help="model behind the agent scenarios: openai (benchmarks/fake_llm.py behind a"
        " provider of type openai; falls back to offline, saying why, if the server cannot"
        " run that type) or offline (the built-in provider)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        help="rounds per measurement (default: smoke 1, quick 3, full 5)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-charts", action="store_true")
    p.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="print the table of a saved run (its JSON file) instead of running",
    )
    p.set_defaults(mode="quick")
    args = p.parse_args()
    if args.report:
        print(report.table(json.loads(args.report.read_text())))
        return 0
    data = uvloop.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = report.stamp(data["date"])
    path = args.out / f"{stamp}-{args.mode}.json"
    path.write_text(json.dumps(data, indent=1))
    print(report.table(data))
    print(f"\nresults: {path}")
    if not args.no_charts:
        for chart in report.charts(data, args.out, f"{stamp}-{args.mode}"):
            print(f"chart: {chart}")
    return 1 if any("error" in r or "errors" in r for r in data["results"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())

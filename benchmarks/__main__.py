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

from . import report, scenarios
from .targets import Unavailable, all_targets

RESULTS = Path(__file__).parent / "results"

# scenario -> (function, list of parameter sets, which targets)
Plan = list[tuple[str, Callable[..., Awaitable[dict[str, Any]]], list[dict[str, Any]], str]]


def plan(mode: str) -> Plan:
    secs = {"smoke": 0.3, "quick": 1.0, "full": 5.0}[mode]
    sizes = [64] if mode == "smoke" else [64, 1024]
    echo_n = {"smoke": [2], "quick": [16], "full": [1, 16, 256]}[mode]
    fan_n = {"smoke": [10], "quick": [1000], "full": [10, 100, 1000, 10000]}[mode]
    if os.environ.get("NEXUS_BENCH_FANOUT"):  # e.g. "10000": only these room sizes
        fan_n = [int(n) for n in os.environ["NEXUS_BENCH_FANOUT"].split(",")]
    cap_n = {"smoke": [50], "quick": [1000], "full": [10000]}[mode]
    backlog = {"smoke": 500, "quick": 10000, "full": 100000}[mode]
    return [
        (
            "echo",
            scenarios.echo,
            [{"conns": n, "size": s, "seconds": secs} for n in echo_n for s in sizes],
            "all",
        ),
        (
            "fanout",
            scenarios.fanout,
            [{"members": n, "size": s, "seconds": secs} for n in fan_n for s in sizes],
            "all",
        ),
        ("capacity", scenarios.capacity, [{"conns": n, "idle": secs} for n in cap_n], "all"),
        (
            "durable",
            scenarios.durable,
            [{"conns": 16, "size": s, "seconds": secs} for s in sizes],
            "nexus",
        ),
        ("resume", scenarios.resume, [{"messages": backlog, "size": 64}], "nexus"),
    ]


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def run(args: argparse.Namespace) -> dict[str, Any]:
    targets = [t for t in all_targets() if not args.targets or t.name in args.targets]
    steps = [
        (name, fn, params, t)
        for name, fn, param_sets, which in plan(args.mode)
        if not args.scenarios or name in args.scenarios
        for params in param_sets
        for t in targets
        if which == "all" or t.name.startswith(which)
    ]
    fd_limit = raise_fd_limit()
    results: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    started = time.perf_counter()
    for i, (name, fn, params, target) in enumerate(steps, 1):
        label = f"[{i}/{len(steps)}] {name} {target.name} " + " ".join(
            f"{k}={v}" for k, v in params.items() if k != "seconds"
        )
        if target.name in skipped:
            continue
        need = params.get("conns", params.get("members", 0))
        if need * 1.1 + 100 > fd_limit:
            print(f"{label}: skipped, needs {need} descriptors, limit {fd_limit}", file=sys.stderr)
            continue
        print(f"{label} ...", end="", file=sys.stderr, flush=True)
        # A fresh server per run of a scenario keeps one run's state out of the next.
        try:
            run_ = target.start()
        except Unavailable as exc:
            skipped[target.name] = str(exc)
            print(f" SKIPPED: {exc}", file=sys.stderr)
            continue
        try:
            row = await asyncio.wait_for(fn(target, run_, **params), 600)
        except Exception as exc:  # a failing peer must not hide the other results
            row = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            run_.stop()
        results.append({"scenario": name, "target": target.name, "params": params, **row})
        print(" " + report.short(name, row), file=sys.stderr)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": args.mode,
        "machine": {
            "cpus": _cpus(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "seconds": time.perf_counter() - started,
        "skipped": skipped,
        "results": results,
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
        help="under 2 minutes (default)",
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
        help="subset: nexus nexus-nosync nexus-hooks picows-raw websockets aiohttp node-ws",
    )
    p.add_argument("--scenarios", nargs="*", help="subset: echo fanout capacity durable resume")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-charts", action="store_true")
    p.set_defaults(mode="quick")
    args = p.parse_args()
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
    return 1 if any("error" in r for r in data["results"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())

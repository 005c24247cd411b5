"""Medians over rounds, tables with ratios and noise flags, the targets block, charts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADLINE = {  # scenario -> (metric, unit, higher is better)
    "echo": ("msgs_per_s", "msg/s", True),
    "fanout": ("deliveries_per_s", "deliveries/s", True),
    "capacity": ("bytes_per_conn", "B/conn", False),
    "durable": ("max_acks_per_s", "acks/s", True),
    "resume": ("catch_up_s", "s", False),
    "agent-turn": ("first_delta_p50", "ms to 1st delta", False),
    "agent-fanout": ("deliveries_per_s", "deltas/s", True),
}
PER_CPU = {  # scenario -> the headline count per second of server CPU (user + sys)
    "echo": "msgs_per_cpu_s",
    "fanout": "deliveries_per_cpu_s",
    "durable": "acks_per_cpu_s",
    "agent-fanout": "deliveries_per_cpu_s",
}
EXTRA = {
    "echo": ("srv_us_per_msg", "p50", "p99", "p99.9"),
    "fanout": ("p50", "p99", "p99.9"),
    "capacity": ("connect_s", "idle_server_cpu"),
    "durable": (),  # its p50/p99/p99.9 at each pacing fraction, as measured
    "resume": ("msgs_per_s",),
    "agent-turn": (
        "first_delta_p99",
        "completed_p50",
        "completed_p99",
        "plain_ack_p50",
        "plain_delivery_p50",
        "plain_delivery_p99",
        "delta_vs_delivery",
        "srv_ms_per_turn",
        "srv_ms_per_msg",
        "cpu_turn_vs_msg",
    ),
    "agent-fanout": (
        "deltas_per_reply",
        "delta_bytes_per_reply",
        "reply_s",
        "srv_ms_per_reply",
        "cpu_vs_coalesced",
        "deliveries_vs_coalesced",
        "plain_deliveries_per_cpu_s",
        "cpu_s_vs_plain",
    ),
}
# Nexus rows are compared with these peers on this metric (the targets).
COMPARE = {
    "echo": ("msgs_per_cpu_s", ("picows-coalesced", "websockets", "node-ws")),
    "fanout": ("deliveries_per_cpu_s", ("picows-coalesced", "websockets", "node-ws")),
    "capacity": ("bytes_per_conn", ("picows-naive", "websockets", "node-ws")),
}
OURS = ("nexus", "nexus-nosync")
LABELS = {
    "srv_us_per_msg": "srv us/msg",
    "idle_server_cpu": "idle srv cpu%",
    # agent-turn: ms from the trigger's ack; the plain message's from its send
    "first_delta_p99": "1st delta p99",
    "completed_p50": "done p50",
    "completed_p99": "done p99",
    "plain_ack_p50": "msg ack p50",
    "plain_delivery_p50": "msg deliv p50",
    "plain_delivery_p99": "msg deliv p99",
    "delta_vs_delivery": "1st delta/deliv",
    "srv_ms_per_turn": "srv ms/turn",
    "srv_ms_per_msg": "srv ms/msg",
    "cpu_turn_vs_msg": "cpu turn/msg",
    # agent-fanout: per reply and member; ratios to the coalesced mode and a plain fan-out
    "deltas_per_reply": "deltas/reply",
    "delta_bytes_per_reply": "B/reply",
    "reply_s": "reply s",
    "srv_ms_per_reply": "srv ms/reply",
    "cpu_vs_coalesced": "cpu vs 0.04",
    "deliveries_vs_coalesced": "deltas/s vs 0.04",
    "plain_deliveries_per_cpu_s": "plain/cpu-s",
    "cpu_s_vs_plain": "per cpu-s vs plain",
}
NOT_AVERAGED = ("scenario", "target", "params", "round", "error")


def stamp(iso_date: str) -> str:
    """A run's file name stem from its ISO date: 20261125T192732."""
    return iso_date.replace(":", "").replace("-", "")[:15]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def short(scenario: str, row: dict[str, Any]) -> str:
    if "error" in row:
        return f"ERROR {row['error']}"
    metric, unit, _ = HEADLINE[scenario]
    text = f"{fmt(row[metric])} {unit}"
    if scenario in PER_CPU:
        text += f" ({fmt(row[PER_CPU[scenario]])}/cpu-s)"
    return text


def key(r: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in r["params"].items())


# -- aggregation over rounds -------------------------------------------------------------


def aggregate(measured: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """One row per (scenario, parameters, target): the median of each figure over the
    rounds, its ``[min, max]`` in ``range``, and the rounds themselves in ``per_round``. A
    row whose rounds all failed has ``error``; one with some failed rounds, ``errors``."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for m in measured:
        groups.setdefault((m["scenario"], key(m), m["target"]), []).append(m)
    keys = list(dict.fromkeys((s, k) for s, k, _ in groups))
    rows = []
    for scenario, params_key in keys:
        for target in order:
            rounds = groups.get((scenario, params_key, target))
            if not rounds:
                continue
            ok = [r for r in rounds if "error" not in r]
            row: dict[str, Any] = {
                "scenario": scenario,
                "target": target,
                "params": rounds[0]["params"],
                "rounds": len(ok),
                "per_round": rounds,
            }
            failed = [r["error"] for r in rounds if "error" in r]
            if not ok:
                row["error"] = failed[0]
                rows.append(row)
                continue
            if failed:
                row["errors"] = failed
            ranges = {}
            for name in ok[0]:
                if name in NOT_AVERAGED:
                    continue
                values = [r[name] for r in ok if isinstance(r.get(name), int | float)]
                values = [v for v in values if v == v]  # NaN: not measured that round
                if not values:
                    row[name] = float("nan")
                    continue
                row[name] = statistics.median(values)
                ranges[name] = [min(values), max(values)]
            row["range"] = ranges
            rows.append(row)
    return rows


def has(row: dict[str, Any], metric: str) -> bool:
    """``row`` has a measured (numeric, not NaN) ``metric``."""
    value = row.get(metric)
    return isinstance(value, int | float) and value == value


def spread(row: dict[str, Any], metric: str) -> float:
    lo, hi = row.get("range", {}).get(metric, (row[metric], row[metric]))
    return float(hi - lo)


def range_pct(row: dict[str, Any], metric: str) -> str:
    value = row.get(metric)
    if not isinstance(value, int | float) or value != value or value == 0:
        return "-"
    return f"{100 * spread(row, metric) / abs(value):.0f}"


def noisy(a: dict[str, Any], b: dict[str, Any], metric: str, factor: float = 1.0) -> bool:
    """The comparison ``a`` vs ``factor`` x ``b`` is not supported by the data: the spread
    (max - min over the rounds) of either side exceeds the difference of the medians."""
    diff = abs(a[metric] - factor * b[metric])
    return max(spread(a, metric), factor * spread(b, metric)) > diff


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, metric: str) -> str:
    """``a/b`` of the medians, ``~`` appended when the comparison is noisy."""
    if a is None or b is None or a is b or "error" in a or "error" in b:
        return "-"
    x, y = a.get(metric), b.get(metric)
    if not x or not y or x != x or y != y:
        return "-"
    return f"{x / y:.2f}x" + ("~" if noisy(a, b, metric) else "")


# -- tables ------------------------------------------------------------------------------


def table(data: dict[str, Any]) -> str:
    rounds = data.get("rounds", 1)
    lines = [
        f"Nexus benchmarks, {data['mode']} mode, {data['date']}, "
        f"{data['machine']['cpus']} CPUs, Python {data['machine']['python']}",
        f"Every figure is the median of {rounds} round(s), the targets' order rotated each "
        "round; range% = (max - min) / median over the rounds; ratios are of medians, "
        "marked ~ (noisy) when the range of either side exceeds the difference between "
        "them. per cpu-s = per second of server CPU (user + sys).",
    ]
    for name, why in data["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for r in data["results"]:
        by_scenario.setdefault(r["scenario"], []).append(r)
    for scenario, rows in by_scenario.items():
        lines.append("")
        lines += scenario_table(scenario, rows)
    targets = targets_block(data["results"])
    if targets:
        lines += ["", *targets]
    return "\n".join(lines)


def scenario_table(scenario: str, rows: list[dict[str, Any]]) -> list[str]:
    metric, unit, higher = HEADLINE[scenario]
    cpu_metric = PER_CPU.get(scenario)
    extra = list(EXTRA[scenario])
    if scenario == "durable":
        extra = [k for k in next((r for r in rows if "error" not in r), {}) if "@" in k]
    compare_metric, peers = COMPARE.get(scenario, ("", ()))
    lines = [f"## {scenario} ({unit}{'' if higher else ', lower is better'}; latency in ms)"]
    head = ["params", "target", unit, "range%"]
    if cpu_metric:
        head += [f"{unit.split('/')[0]}/cpu-s", "range%"]
    head += [LABELS.get(e, e) for e in extra]
    head += ["gen cpu%", "srv cpu%", "nexus/this", "nosync/this"]
    vs = "cpu-s" if cpu_metric else "B"
    head += [f"{vs} vs {p}" for p in peers]
    body = []
    for r in rows:
        if "error" in r:
            body.append([key(r), r["target"], "ERROR: " + r["error"][:60]])
            continue
        same = {x["target"]: x for x in rows if key(x) == key(r) and "error" not in x}
        cells = [key(r), r["target"], fmt(r[metric]), range_pct(r, metric)]
        if cpu_metric:
            cells += [fmt(r.get(cpu_metric)), range_pct(r, cpu_metric)]
        cells += [fmt(r.get(e, float("nan"))) for e in extra]
        cells += [
            fmt(r.get("gen_cpu", float("nan"))),
            fmt(r.get("server_cpu", r.get("idle_server_cpu", float("nan")))),
        ]
        cells += [ratio(same.get(ours), r, metric) for ours in OURS]
        if r["target"].startswith("nexus"):
            cells += [ratio(r, same.get(p), compare_metric) for p in peers]
        else:
            cells += ["-"] * len(peers)
        if r.get("errors"):
            cells[1] += f" ({len(r['errors'])} round(s) failed)"
        body.append(cells)
    return lines + aligned([head, *body], left=2)


def aligned(rows: list[list[str]], left: int = 1) -> list[str]:
    """Rows as lines of columns: the first ``left`` columns left-aligned, the rest right."""
    widths = [max(len(str(row[i])) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    return [
        "  ".join(
            str(c).rjust(w) if i >= left else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ).rstrip()
        for row in rows
    ]


# -- the targets -----------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """``ours`` must reach ``factor`` x ``theirs`` on ``metric`` (at most, when ``higher``
    is False); with ``theirs`` None, ``factor`` is an absolute bound."""

    label: str
    scenario: str
    ours: str
    theirs: str | None
    metric: str
    factor: float
    higher: bool = True


GOALS = (
    Goal("echo nosync >= 0.5x picows-coalesced", "echo", "nexus-nosync", "picows-coalesced",
         "msgs_per_cpu_s", 0.5),
    Goal("echo nosync >= 2x websockets", "echo", "nexus-nosync", "websockets",
         "msgs_per_cpu_s", 2.0),
    Goal("echo nosync >= 1.2x node-ws", "echo", "nexus-nosync", "node-ws", "msgs_per_cpu_s", 1.2),
    Goal("echo fsync >= 0.35x picows-coalesced", "echo", "nexus", "picows-coalesced",
         "msgs_per_cpu_s", 0.35),
    Goal("fan-out >= 0.9x picows-coalesced", "fanout", "nexus", "picows-coalesced",
         "deliveries_per_cpu_s", 0.9),
    Goal("fan-out nosync >= 0.9x picows-coalesced", "fanout", "nexus-nosync", "picows-coalesced",
         "deliveries_per_cpu_s", 0.9),
    Goal("idle memory <= 1.1x picows-naive", "capacity", "nexus", "picows-naive",
         "bytes_per_conn", 1.1, higher=False),
    Goal("durable ack p99 @ 50% max <= 10 ms", "durable", "nexus", None, "p99@50%", 10.0,
         higher=False),
)  # fmt: skip


def judge(goal: Goal, ours: dict[str, Any], theirs: dict[str, Any] | None) -> tuple[str, str]:
    """(measured, verdict). The verdict is "met" or "not met" when the extremes agree with
    the median, else "noisy (median: ...)". The extremes pair each side's best round with
    the other side's worst (ours min / theirs max, ours max / theirs min); for a bound
    without a peer they are the rounds' min and max."""
    a = ours[goal.metric]
    alo, ahi = ours["range"].get(goal.metric, (a, a))
    if theirs is None:
        value, lo, hi = a, alo, ahi
        tail = ours.get(goal.metric.replace("p99", "p99.9"))
        measured = f"{fmt(a)} ms (rounds {fmt(lo)}-{fmt(hi)}; p99.9 {fmt(tail)} ms)"
    else:
        b = theirs[goal.metric]
        blo, bhi = theirs["range"].get(goal.metric, (b, b))
        value, lo, hi = a / b, alo / bhi, (ahi / blo if blo > 0 else float("inf"))
        measured = f"{value:.2f}x (extremes {lo:.2f}-{hi:.2f}x)"

    def ok(x: float) -> bool:
        return x >= goal.factor if goal.higher else x <= goal.factor

    verdict = "met" if ok(value) else "not met"
    if ok(lo) != ok(hi):
        verdict = f"noisy (median: {verdict})"
    return measured, verdict


def targets_block(results: list[dict[str, Any]]) -> list[str]:
    """The issue's targets against this run: one line per goal and parameter set."""
    rows = [["target", "params", "measured", "verdict"]]
    for goal in GOALS:
        for ours in results:
            if ours["scenario"] != goal.scenario or ours["target"] != goal.ours:
                continue
            if "error" in ours or not has(ours, goal.metric):
                continue
            theirs = None
            if goal.theirs is not None:
                theirs = next(
                    (
                        r
                        for r in results
                        if r["scenario"] == goal.scenario
                        and r["target"] == goal.theirs
                        and key(r) == key(ours)
                        and "error" not in r
                    ),
                    None,
                )
                if theirs is None or not has(theirs, goal.metric) or theirs[goal.metric] <= 0:
                    rows.append([goal.label, key(ours), f"{goal.theirs} not measured", "-"])
                    continue
            rows.append([goal.label, key(ours), *judge(goal, ours, theirs)])
    if len(rows) == 1:
        return []
    return [
        "## targets (per server CPU-second unless stated; ratios of medians, extremes from"
        " the rounds' min/max)",
        *aligned(rows, left=4),
    ]


# -- charts ------------------------------------------------------------------------------


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def charts(data: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """One PNG per scenario: grouped bars of the median headline metric (and per server
    CPU-second where measured), by parameters and target, whiskers from min to max."""
    plt = pyplot()
    if plt is None:
        return []
    paths = []
    for scenario in sorted({r["scenario"] for r in data["results"]}):
        rows = [r for r in data["results"] if r["scenario"] == scenario and "error" not in r]
        if not rows:
            continue
        metric, unit, higher = HEADLINE[scenario]
        panels = [(metric, unit)]
        if scenario in PER_CPU:
            panels.append((PER_CPU[scenario], unit.split("/")[0] + " per server CPU-s"))
        keys = list(dict.fromkeys(key(r) for r in rows))
        targets = list(dict.fromkeys(r["target"] for r in rows))
        fig, axes = plt.subplots(
            len(panels),
            1,
            figsize=(max(6, 1.6 * len(keys) * max(1, len(targets)) / 2), 4 * len(panels)),
            squeeze=False,
        )
        width = 0.8 / len(targets)
        for ax, (name, label) in zip(axes[:, 0], panels, strict=True):
            for i, t in enumerate(targets):
                found = [
                    next((r for r in rows if r["target"] == t and key(r) == k), None) for k in keys
                ]
                values = [r.get(name, 0) if r else 0 for r in found]
                lows = [
                    v - (r["range"].get(name, (v, v))[0] if r else v)
                    for r, v in zip(found, values, strict=True)
                ]
                highs = [
                    (r["range"].get(name, (v, v))[1] if r else v) - v
                    for r, v in zip(found, values, strict=True)
                ]
                ax.bar(
                    [x + i * width for x in range(len(keys))],
                    values,
                    width,
                    label=t,
                    yerr=[lows, highs],
                    capsize=2,
                )
            ax.set_xticks([x + width * (len(targets) - 1) / 2 for x in range(len(keys))])
            ax.set_xticklabels(keys, fontsize=8)
            ax.set_ylabel(label)
            better = "higher" if higher else "lower"
            ax.set_title(f"{scenario}: {name} ({better} is better; median, min-max)")
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{stem}-{scenario}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths

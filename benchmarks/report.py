"""Tables, ratios and charts from a run's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEADLINE = {  # scenario -> (metric, unit, higher is better)
    "echo": ("msgs_per_s", "msg/s", True),
    "fanout": ("deliveries_per_s", "deliveries/s", True),
    "capacity": ("bytes_per_conn", "B/conn", False),
    "durable": ("max_acks_per_s", "acks/s", True),
    "resume": ("catch_up_s", "s", False),
}
EXTRA = {
    "echo": ("p50", "p99", "p99.9"),
    "fanout": ("p50", "p99", "p99.9"),
    "capacity": ("connect_s", "idle_server_cpu"),
    "durable": ("p50@25%", "p99@25%", "p50@50%", "p99@50%", "p50@90%", "p99@90%"),
    "resume": ("msgs_per_s",),
}
BASELINE = "picows-raw"


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
    return f"{fmt(row[metric])} {unit}"


def _key(r: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in r["params"].items() if k not in ("seconds", "idle"))


def table(data: dict[str, Any]) -> str:
    lines = [
        f"Nexus benchmarks, {data['mode']} mode, {data['date']}, "
        f"{data['machine']['cpus']} CPUs, Python {data['machine']['python']}"
    ]
    for name, why in data["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for r in data["results"]:
        by_scenario.setdefault(r["scenario"], []).append(r)
    for scenario, rows in by_scenario.items():
        metric, unit, higher = HEADLINE[scenario]
        extra = EXTRA[scenario]
        lines.append("")
        lines.append(
            f"## {scenario} ({unit}{'' if higher else ', lower is better'}; latency in ms)"
        )
        head = [
            "params",
            "target",
            metric,
            *extra,
            "gen cpu%",
            "srv cpu%",
            "nexus/this",
            "nosync/this",
        ]
        body = []
        for r in rows:
            if "error" in r:
                body.append([_key(r), r["target"], "ERROR: " + r["error"][:60]])
                continue
            ratios = []
            for ours in ("nexus", "nexus-nosync"):
                mine = next(
                    (x for x in rows if x["target"] == ours and _key(x) == _key(r) and metric in x),
                    None,
                )
                ratios.append(
                    f"{mine[metric] / r[metric]:.2f}x"
                    if mine is not None and r["target"] != ours and r.get(metric)
                    else "-"
                )
            body.append(
                [
                    _key(r),
                    r["target"],
                    fmt(r[metric]),
                    *[fmt(r.get(e, float("nan"))) for e in extra],
                    fmt(r.get("gen_cpu", float("nan"))),
                    fmt(r.get("server_cpu", r.get("idle_server_cpu", float("nan")))),
                    *ratios,
                ]
            )
        lines += aligned([head, *body], left=2)
    return "\n".join(lines)


def aligned(rows: list[list[str]], left: int = 1) -> list[str]:
    """Rows as lines of columns: the first ``left`` columns left-aligned, the rest right."""
    widths = [max(len(str(row[i])) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    return [
        "  ".join(
            str(c).rjust(w) if i >= left else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        )
        for row in rows
    ]


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
    """One PNG per scenario: grouped bars of the headline metric, by parameters and target."""
    plt = pyplot()
    if plt is None:
        return []
    paths = []
    scenarios = sorted({r["scenario"] for r in data["results"]})
    for scenario in scenarios:
        rows = [r for r in data["results"] if r["scenario"] == scenario and "error" not in r]
        if not rows:
            continue
        metric, unit, higher = HEADLINE[scenario]
        keys = list(dict.fromkeys(_key(r) for r in rows))
        targets = list(dict.fromkeys(r["target"] for r in rows))
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(keys) * max(1, len(targets)) / 2), 4))
        width = 0.8 / len(targets)
        for i, t in enumerate(targets):
            values = [
                next((r[metric] for r in rows if r["target"] == t and _key(r) == k), 0)
                for k in keys
            ]
            ax.bar([x + i * width for x in range(len(keys))], values, width, label=t)
        ax.set_xticks([x + width * (len(targets) - 1) / 2 for x in range(len(keys))])
        ax.set_xticklabels(keys, fontsize=8)
        ax.set_ylabel(unit)
        ax.set_title(f"{scenario}: {metric} ({'higher' if higher else 'lower'} is better)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{stem}-{scenario}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths

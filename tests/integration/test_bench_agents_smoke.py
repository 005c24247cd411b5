"""The agent benchmarks run end to end (smoke mode, one target). No assertion on speed:
only that both scenarios produced their figures for every variant, the table was printed
and the JSON was written. With ``--provider openai`` they use the fake model through a
provider of type openai when the server has one, else the offline provider, saying why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_agent_benchmarks_smoke(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--scenarios",
            "agents",
            "--provider",
            "openai",
            "--targets",
            "nexus-nosync",
            "--no-charts",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "## agent-turn" in result.stdout and "## agent-fanout" in result.stdout
    [path] = tmp_path.glob("*-smoke.json")
    data = json.loads(path.read_text())
    rows = {(r["scenario"], tuple(sorted(r["params"].items()))): r for r in data["results"]}
    providers = {r["params"]["provider"] for r in data["results"]}
    assert providers in ({"openai"}, {"offline"})
    if providers == {"offline"}:  # the fallback says why
        assert "provider openai" in data["skipped"]
    turn = {r["params"]["history"] for r in data["results"] if r["scenario"] == "agent-turn"}
    assert turn == {20, 200}
    fan = {r["params"]["interval"] for r in data["results"] if r["scenario"] == "agent-fanout"}
    assert fan == {0.0, 0.04}
    assert len(rows) == 4
    for row in data["results"]:
        assert "error" not in row and "errors" not in row, row
        assert row["target"] == "nexus-nosync" and row["server_cpu"] > 0
        if row["scenario"] == "agent-turn":
            assert row["turns"] == 20
            for figure in ("first_delta_p50", "completed_p50", "plain_delivery_p50"):
                assert row[figure] > 0
            assert row["srv_ms_per_turn"] > 0 and row["delta_vs_delivery"] > 0
        else:
            assert row["deltas_per_reply"] >= 1 and row["delta_bytes_per_reply"] > 0
            assert row["deliveries_per_s"] > 0 and row["plain_deliveries_per_s"] > 0
    coalesced, each_part = (
        next(
            r
            for r in data["results"]
            if r["params"].get("interval") == i and "members" in r["params"]
        )
        for i in (0.04, 0.0)
    )
    # Structure, not speed: coalescing sends fewer, larger deltas of the same replies.
    assert coalesced["deltas_per_reply"] < each_part["deltas_per_reply"]
    assert coalesced["cpu_vs_coalesced"] == 1.0

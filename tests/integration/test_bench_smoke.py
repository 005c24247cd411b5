"""The benchmark suite runs end to end (smoke mode). No assertion on speed: only that every
scenario produced its figures, the table was printed and the JSON was written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_suite_smoke(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--targets",
            "nexus",
            "picows-coalesced",
            "picows-nexus-outbox",
            "websockets",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "## echo" in result.stdout and "## fanout" in result.stdout
    assert "## targets" in result.stdout
    [path] = tmp_path.glob("*-smoke.json")
    data = json.loads(path.read_text())
    scenarios = {(r["scenario"], r["target"]) for r in data["results"]}
    for target in ("nexus", "picows-coalesced", "picows-nexus-outbox", "websockets"):
        for scenario in ("echo", "fanout", "capacity"):
            assert (scenario, target) in scenarios
    windows = {r["params"]["in_flight"] for r in data["results"] if r["scenario"] == "fanout"}
    assert windows == {1, 16}
    assert ("durable", "nexus") in scenarios and ("resume", "nexus") in scenarios
    for row in data["results"]:
        assert "error" not in row and "errors" not in row, row
        assert row["gen_cpu"] >= 0
        if row["scenario"] in ("echo", "fanout"):
            assert row["server_cpu"] > 0 and len(row["per_round"]) == data["rounds"]
    assert sorted(p.name.rsplit("-", 1)[1] for p in tmp_path.glob("*.png")) == [
        "capacity.png",
        "durable.png",
        "echo.png",
        "fanout.png",
        "resume.png",
    ]

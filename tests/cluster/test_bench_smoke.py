"""The cluster benchmark runs end to end in smoke mode (standalone LMDB, one node and three
nodes on NATS). No assertion on speed: only that every configuration produced every
scenario's figures and the JSON was written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_cluster_benchmark_smoke(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for scenario in ("echo", "ack", "fanout-1", "fanout-16", "resume"):
        assert f"## {scenario}" in result.stdout
    [path] = tmp_path.glob("*-cluster-smoke.json")
    summary = json.loads(path.read_text())["summary"]
    assert sorted(summary) == ["lmdb", "nats-1", "nats-3"]
    for config, scenarios in summary.items():
        assert scenarios["echo"]["msgs_per_s"] > 0, config
        for fan in ("fanout-1", "fanout-16"):
            assert scenarios[fan]["deliveries_per_s"] > 0, config
            assert math.isfinite(scenarios[fan]["deliveries_per_node_cpu_s"]), config
        assert scenarios["resume"]["resume_full_ms"] > 0, config
        assert "p99" in scenarios["ack"], config
        # the nats-server's CPU is read (and only where there is one)
        nats_cpu = sum(scenarios[s]["nats_cpu"] for s in ("echo", "fanout-1", "fanout-16"))
        assert (nats_cpu > 0) == (config != "lmdb"), config

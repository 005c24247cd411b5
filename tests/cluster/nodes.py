"""N `nexus serve` nodes sharing rooms through one nats-server, each with its own data dir
and ports, started with the integration harness (same JWT settings, so one token works on
every node). A node can be killed with SIGKILL, frozen with SIGSTOP and thawed, and
restarted on its data dir."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.natsd import NatsServer
from integration.harness import ServerProcess, start_server

# The cluster tests measure guarantees, not the abuse limits: writers pipeline hundreds of
# messages, which the default buckets (50/s a connection) would refuse.
RAISED_LIMITS = {
    "rate_conn_per_s": 1e6,
    "rate_conn_burst": 1_000_000,
    "rate_user_per_s": 1e6,
    "rate_user_burst": 1_000_000,
}


class ClusterModeMissing(RuntimeError):
    """The server refused the cluster settings: its cluster mode is not there."""


class Cluster:
    """Nexus nodes ``n1``, ``n2``… in cluster mode on ``nats``; data dirs under ``root``."""

    def __init__(self, nats: NatsServer, root: Path, stream: str = "NEXUS_ROOMS", **settings: Any):
        self.nats = nats
        self.root = root
        self.stream = stream
        self.settings = {**RAISED_LIMITS, **settings}
        self.nodes: dict[str, ServerProcess] = {}
        self._stopped: set[str] = set()

    def node_settings(self, node_id: str) -> dict[str, Any]:
        return {
            **self.settings,
            "cluster_engine": "nats",
            "cluster_nats_url": self.nats.url,
            "cluster_nats_stream": self.stream,
            "cluster_node_id": node_id,
        }

    def start(self, count: int) -> list[ServerProcess]:
        """Start nodes ``n1``..``n<count>`` one after the other."""
        return [self.start_node(f"n{i}") for i in range(1, count + 1)]

    def start_node(self, node_id: str) -> ServerProcess:
        """Start (or restart, on the same data dir) node ``node_id``."""
        old = self.nodes.get(node_id)
        assert old is None or old.proc.poll() is not None, f"{node_id} is running"
        data_dir = self.root / node_id
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            node = start_server(data_dir, **self.node_settings(node_id))
        except RuntimeError as exc:
            if "unknown setting" in str(exc) and "CLUSTER_" in str(exc):
                raise ClusterModeMissing(
                    f"this nexus has no cluster mode (issue 17): {str(exc).strip()}"
                ) from exc
            raise
        self.nodes[node_id] = node
        return node

    def __getitem__(self, node_id: str) -> ServerProcess:
        return self.nodes[node_id]

    def kill9(self, node_id: str) -> None:
        """SIGKILL: the node's connections drop, nothing is flushed or said goodbye."""
        node = self.nodes[node_id]
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()
        self._stopped.discard(node_id)

    def sigstop(self, node_id: str) -> None:
        """Freeze the node: its sockets stay open but nothing is read or written."""
        os.kill(self.nodes[node_id].proc.pid, signal.SIGSTOP)
        self._stopped.add(node_id)

    def sigcont(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].proc.pid, signal.SIGCONT)
        self._stopped.discard(node_id)

    def restart(self, node_id: str) -> ServerProcess:
        """Start a killed (or stopped) node again on its data dir: new ports."""
        node = self.nodes[node_id]
        if node.proc.poll() is None:
            node.stop()
        return self.start_node(node_id)

    def output(self) -> str:
        """Every node's output, for a failure message."""
        return "\n".join(f"--- {nid}\n{''.join(node.output)}" for nid, node in self.nodes.items())

    def stop(self) -> None:
        """SIGCONT what is frozen, then SIGTERM every node still running."""
        for node_id in list(self._stopped):
            self.sigcont(node_id)
        for node in self.nodes.values():
            if node.proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.stop(timeout=15)
